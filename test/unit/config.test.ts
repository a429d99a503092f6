import { mkdtemp, writeFile, chmod, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  applyEnvOverrides,
  configCandidates,
  configLeaves,
  loadConfig,
  loadSecrets,
  validateConfig,
} from '../../src/core/config/load.js';
import { setConfigValue } from '../../src/core/config/edit.js';
import { AttenduxError } from '../../src/errors.js';
import { randomKey } from '../../src/crypto/random.js';

async function tempConfig(content: unknown): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'attendux-cfg-'));
  const path = join(dir, 'attendux.json');
  await writeFile(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

function errorOf(fn: () => unknown): AttenduxError {
  try {
    fn();
  } catch (err) {
    if (err instanceof AttenduxError) return err;
    throw err;
  }
  throw new Error('expected an error');
}

describe('config validation', () => {
  it('fills every default from an empty object', () => {
    const c = validateConfig({}, 'x');
    expect(c.server.port).toBe(8080);
    expect(c.backup.retention).toEqual({ fullDays: 30, incrementalDays: 7, configDays: 90 });
    expect(c.database.embedded.port).toBe(54329);
  });

  it('names an unknown key with its full path and exits 2', () => {
    const err = errorOf(() => validateConfig({ server: { prot: 80 } }, 'attendux.json'));
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.exitCode).toBe(2);
    expect(err.message).toContain('unknown key "server.prot"');
  });

  it('names a key of the wrong type', () => {
    const err = errorOf(() => validateConfig({ server: { port: 'eighty' } }, 'attendux.json'));
    expect(err.message).toMatch(/key "server\.port": /);
  });

  it('names the missing half of a database configuration', () => {
    const err = errorOf(() => validateConfig({ database: { url: 'postgres://a@h/d' } }, 'attendux.json'));
    expect(err.message).toContain('key "database.adminUrl": is required');
  });

  it('refuses a backup recipient that is not an age public key', () => {
    const err = errorOf(() => validateConfig({ backup: { recipients: ['ssh-ed25519 AAAA'] } }, 'f'));
    expect(err.message).toContain('backup.recipients.0');
  });

  it('reports malformed JSON as an invalid config', async () => {
    const path = await tempConfig('{ "server": ');
    await expect(loadConfig({ configPath: path, env: {} })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      exitCode: 2,
    });
  });
});

describe('config lookup and overrides', () => {
  it('looks in --config, then $ATTENDUX_CONFIG, then the cwd, the quickstart dir and /etc', () => {
    expect(configCandidates({ configPath: 'a.json', cwd: '/w' })).toEqual(['/w/a.json']);
    expect(configCandidates({ env: { ATTENDUX_CONFIG: '/x/b.json' }, cwd: '/w' })).toEqual(['/x/b.json']);
    expect(configCandidates({ env: {}, cwd: '/w' })).toEqual([
      '/w/attendux.json',
      '/w/attendux-data/attendux.json',
      '/etc/attendux/attendux.json',
    ]);
  });

  it('derives one environment variable per key from the schema', () => {
    const names = configLeaves().map((l) => l.env);
    expect(names).toContain('ATTENDUX_DATABASE_ADMIN_URL');
    expect(names).toContain('ATTENDUX_BACKUP_RETENTION_FULL_DAYS');
    expect(names).toContain('ATTENDUX_SERVER_TRUST_PROXY');
    expect(new Set(names).size).toBe(names.length);
  });

  it('applies typed overrides from the environment over the file', () => {
    const merged = applyEnvOverrides(
      { server: { port: 1 } },
      {
        ATTENDUX_SERVER_PORT: '9090',
        ATTENDUX_SERVER_TRUST_PROXY: 'true',
        ATTENDUX_SERVER_ALLOWED_ORIGINS: 'https://a,https://b',
      },
    );
    const c = validateConfig(merged, 'x');
    expect(c.server.port).toBe(9090);
    expect(c.server.trustProxy).toBe(true);
    expect(c.server.allowedOrigins).toEqual(['https://a', 'https://b']);
  });

  it('names the variable when an override is not of the key’s type', () => {
    const err = errorOf(() => applyEnvOverrides({}, { ATTENDUX_SERVER_PORT: 'x' }));
    expect(err.message).toContain('ATTENDUX_SERVER_PORT');
    expect(err.exitCode).toBe(2);
  });

  it('resolves relative paths against the config file’s directory', async () => {
    const path = await tempConfig({ dataDir: 'data' });
    const loaded = await loadConfig({ configPath: path, env: {} });
    expect(loaded.config.dataDir).toBe(join(path, '..', 'data'));
    expect(loaded.backupDir).toBe(join(path, '..', 'data', 'backups'));
    expect(loaded.secretsPath).toBe(join(path, '..', 'attendux.secrets.json'));
  });
});

describe('config set', () => {
  it('writes the new value atomically, keeps the mode and the previous version', async () => {
    const path = await tempConfig({ dataDir: 'data', server: { port: 8080 } });
    await chmod(path, 0o640);
    const r = await setConfigValue({ configPath: path, env: {} }, 'server.port', '9000');
    expect(r.changed).toBe(true);
    expect(JSON.parse(await readFile(path, 'utf8')).server.port).toBe(9000);
    expect(JSON.parse(await readFile(r.historyFile!, 'utf8')).server.port).toBe(8080);
    const { stat } = await import('node:fs/promises');
    expect((await stat(path)).mode & 0o777).toBe(0o640);
  });

  it('leaves the file untouched when the new value is invalid', async () => {
    const path = await tempConfig({ server: { port: 8080 } });
    const before = await readFile(path, 'utf8');
    await expect(setConfigValue({ configPath: path, env: {} }, 'server.port', '70000')).rejects.toMatchObject(
      {
        code: 'CONFIG_INVALID',
      },
    );
    expect(await readFile(path, 'utf8')).toBe(before);
  });

  it('refuses an unknown key as a usage error', async () => {
    const path = await tempConfig({});
    await expect(setConfigValue({ configPath: path, env: {} }, 'server.colour', 'red')).rejects.toMatchObject(
      {
        code: 'USAGE',
        exitCode: 2,
      },
    );
  });
});

describe('secrets file', () => {
  const secrets = () => ({
    sessionKey: randomKey(),
    apiKeyHmacKey: randomKey(),
    auditPepper: randomKey(),
    dataKeys: { k1: randomKey() },
    activeDataKeyId: 'k1',
  });

  it('is refused when group or others can read it, with the chmod to run', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'attendux-sec-'));
    const path = join(dir, 's.json');
    await writeFile(path, JSON.stringify(secrets()), { mode: 0o644 });
    await chmod(path, 0o644);
    const err = await loadSecrets(path).catch((e: unknown) => e as AttenduxError);
    expect(err).toBeInstanceOf(AttenduxError);
    expect((err as AttenduxError).code).toBe('SECRETS_INSECURE');
    expect((err as AttenduxError).hint).toBe(`run: chmod 600 ${path}`);
  });

  it('is read when only its owner can read it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'attendux-sec-'));
    const path = join(dir, 's.json');
    await writeFile(path, JSON.stringify(secrets()), { mode: 0o600 });
    const s = await loadSecrets(path);
    expect(s.activeDataKeyId).toBe('k1');
  });

  it('is refused when the active data key is missing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'attendux-sec-'));
    const path = join(dir, 's.json');
    await writeFile(path, JSON.stringify({ ...secrets(), activeDataKeyId: 'k9' }), { mode: 0o600 });
    await expect(loadSecrets(path)).rejects.toMatchObject({ code: 'SECRETS_INVALID' });
  });
});
