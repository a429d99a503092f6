import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { runCli, writeTestInstall } from '../helpers/cli.js';

let db: TestDatabase;
let config: string;

beforeAll(async () => {
  db = await createTestDatabase('e2e_cli');
  config = await writeTestInstall(db);
});

afterAll(async () => {
  await db.drop();
});

const cli = (...args: string[]) => runCli(['--config', config, ...args]);

describe('exit codes and errors', () => {
  it('prints help and exits 0', async () => {
    const r = await runCli(['--help']);
    expect(r.exitCode).toBe(0);
    for (const c of ['init', 'migrate', 'config', 'tenant', 'user', 'apikey', 'quickstart'])
      expect(r.stdout).toContain(c);
  });

  it('exits 2 on an unknown command, an unknown flag and a missing required flag', async () => {
    expect((await runCli(['frobnicate'])).exitCode).toBe(2);
    expect((await cli('tenant', 'list', '--colour')).exitCode).toBe(2);
    const missing = await cli('user', 'list');
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toContain("required option '-t, --tenant <company>'");
  });

  it('exits 2 with a hint when no config file exists', async () => {
    const r = await runCli(['tenant', 'list'], { cwd: '/' });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('no configuration file found');
    expect(r.stderr).toContain('hint: run `attendux init`');
  });

  it('exits 2 naming the bad key of an invalid config, without a stack trace', async () => {
    const bad = join(config, '..', 'bad.json');
    await writeFile(bad, JSON.stringify({ server: { port: 'x' } }));
    const r = await runCli(['--config', bad, 'tenant', 'list']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('key "server.port"');
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('prints the stack trace only with --debug', async () => {
    const bad = join(config, '..', 'bad2.json');
    await writeFile(bad, JSON.stringify({ nope: 1 }));
    const r = await runCli(['--debug', '--config', bad, 'tenant', 'list']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/\n\s+at /);
  });

  it('refuses a secrets file others can read, with the chmod to run', async () => {
    const secrets = join(config, '..', 'attendux.secrets.json');
    await chmod(secrets, 0o644);
    try {
      const r = await cli('tenant', 'list');
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toContain(`hint: run: chmod 600 ${secrets}`);
    } finally {
      await chmod(secrets, 0o600);
    }
  });

  it('prints a JSON error object with --json', async () => {
    const r = await cli('--json', 'user', 'list', '-t', 'nope');
    expect(r.exitCode).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({
      error: { code: 'NOT_FOUND', message: 'no company "nope"' },
    });
  });
});

describe('colour', () => {
  // The binary runs with pipes, not a terminal, so only FORCE_COLOR can turn colour on here.
  const ESC = '\x1b[';
  const failing = (env: Record<string, string>, ...flags: string[]) =>
    runCli([...flags, 'tenant', 'list'], { cwd: '/', env });

  it('prints the error in red with FORCE_COLOR=1 although stderr is no terminal', async () => {
    const r = await failing({ FORCE_COLOR: '1' });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`${ESC}31mattendux: no configuration file found`);
  });

  it('prints no escape codes with NO_COLOR=1, with --no-color, or into a pipe', async () => {
    for (const r of [
      await failing({ NO_COLOR: '1' }),
      await failing({ FORCE_COLOR: '1' }, '--no-color'),
      await failing({}),
    ]) {
      expect(r.stderr).toContain('attendux: no configuration file found');
      expect(r.stderr).not.toContain(ESC);
    }
  });
});

describe('companies, users and keys from the binary', () => {
  it('creates and lists a company', async () => {
    const created = await cli(
      '--json',
      'tenant',
      'create',
      'globex',
      '--name',
      'Globex',
      '--time-zone',
      'Europe/Paris',
    );
    expect(created.exitCode).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ slug: 'globex', timeZone: 'Europe/Paris' });
    const list = await cli('--json', 'tenant', 'list');
    expect(JSON.parse(list.stdout)).toEqual([expect.objectContaining({ slug: 'globex', users: 0 })]);
  });

  it('shows a generated password once on stderr and prints nothing with --quiet', async () => {
    const r = await cli('user', 'create', 'ann@globex.example', '-t', 'globex', '--role', 'admin');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('created admin ann@globex.example');
    expect(r.stderr).toMatch(/Password for ann@globex\.example \(shown once\): [A-Za-z0-9]{24}/);
    const q = await cli('--quiet', 'user', 'revoke-sessions', 'ann@globex.example', '-t', 'globex');
    expect(q.exitCode).toBe(0);
    expect(q.stdout).toBe('');
  });

  it('reads a password from a file', async () => {
    const file = join(config, '..', 'pw.txt');
    await writeFile(file, 'a-password-from-a-file\n');
    const r = await cli(
      '--json',
      'user',
      'create',
      'bob@globex.example',
      '-t',
      'globex',
      '--password-file',
      file,
    );
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout).generatedPassword).toBeUndefined();
  });

  it('refuses an unknown role as a usage error', async () => {
    const r = await cli('user', 'create', 'eve@globex.example', '-t', 'globex', '--role', 'root');
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('unknown role "root"');
  });

  it('creates, lists and revokes an API key, showing the secret only at creation', async () => {
    const created = JSON.parse(
      (await cli('--json', 'apikey', 'create', 'kiosk', '-t', 'globex', '--scope', 'check-in,read')).stdout,
    );
    expect(created.key).toMatch(/^atx_[a-z0-9]{12}_/);
    expect(created.scopes).toEqual(['check-in', 'read']);
    const list = await cli('--json', 'apikey', 'list', '-t', 'globex');
    expect(list.stdout).not.toContain(created.key.split('_')[2]);
    const revoked = await cli('--json', 'apikey', 'revoke', created.prefix, '-t', 'globex');
    expect(JSON.parse(revoked.stdout).revokedAt).not.toBeNull();
  });

  it('refuses an unknown API key scope', async () => {
    const r = await cli('apikey', 'create', 'x', '-t', 'globex', '--scope', 'superuser');
    expect(r.exitCode).toBe(2);
  });

  it('refuses an API key that has already expired', async () => {
    const r = await cli(
      'apikey',
      'create',
      'x',
      '-t',
      'globex',
      '--scope',
      'read',
      '--expires',
      '2020-01-01',
    );
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('is in the past');
  });

  it('unlocks a user (user unlock) and mirrors ledger entries to the data dir', async () => {
    const r = await cli('--json', 'user', 'unlock', 'ann@globex.example', '-t', 'globex');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ email: 'ann@globex.example', cleared: 0 });
    // ann's sessions were revoked above: the CLI wrote that ledger entry to the mirror file.
    const mirror = await readFile(join(config, '..', 'data', 'security-ledger.jsonl'), 'utf8');
    expect(mirror).toContain('"kind":"user.session_epoch"');
  });
});

describe('migrate and config from the binary', () => {
  it('reports migration status as JSON', async () => {
    const r = await cli('--json', 'migrate', 'status');
    expect(r.exitCode).toBe(0);
    const state = JSON.parse(r.stdout);
    expect(state.pending).toEqual([]);
    expect(state.applied[0].name).toBe('0001_initial-schema');
  });

  it('gets, sets and validates config keys', async () => {
    expect((await cli('config', 'get', 'server.port')).stdout.trim()).toBe('8080');
    const set = await cli('config', 'set', 'server.port', '8443');
    expect(set.exitCode).toBe(0);
    expect(JSON.parse(await readFile(config, 'utf8')).server.port).toBe(8443);
    expect((await cli('config', 'set', 'server.port', 'many')).exitCode).toBe(2);
    expect((await cli('config', 'validate')).exitCode).toBe(0);
    const env = await runCli(['--config', config, 'config', 'get', 'server.port'], {
      env: { ATTENDUX_SERVER_PORT: '7000' },
    });
    expect(env.stdout.trim()).toBe('7000');
  });
});

describe('init from the binary', () => {
  it('exits 2 and names the flags when there is no terminal and no --yes', async () => {
    const r = await runCli(['init']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('--yes');
    expect(r.stderr).toContain('--company');
  });

  it('exits 2 when --yes lacks the company or the owner', async () => {
    const r = await runCli(['init', '--yes', '--company', 'x']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('--admin-email');
  });
});
