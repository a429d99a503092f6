import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/core/config/load.js';
import { sshFingerprint } from '../../src/core/offsite/sftp.js';
import { isTempName, tempName, targetCredentials } from '../../src/core/offsite/target.js';
import { randomKey } from '../../src/crypto/random.js';
import { runCli } from '../helpers/cli.js';

const sftp = {
  name: 'offsite',
  type: 'sftp',
  host: 'backup.example.org',
  user: 'attendux',
  path: '/srv/backups/attendux',
  hostKeyFingerprint: 'SHA256:' + 'A'.repeat(43),
  privateKeyFile: '/etc/attendux/offsite_ed25519',
};
const s3 = { name: 'b2', type: 's3', bucket: 'attendux-backups', endpoint: 'https://s3.example.com' };
const cfg = (targets: unknown[]) => ({ backup: { targets } });

function issue(fn: () => unknown): { message: string; paths: string[] } {
  try {
    fn();
  } catch (err) {
    const e = err as { message: string; details?: { issues: { path: string }[] } };
    return { message: e.message, paths: (e.details?.issues ?? []).map((i) => i.path) };
  }
  throw new Error('expected a validation error');
}

describe('backup.targets in the config', () => {
  it('parses the three kinds with their defaults', () => {
    const c = validateConfig(cfg([sftp, s3, { name: 'usb', type: 'dir', path: '/mnt/usb' }]), 'x.json');
    expect(c.backup.targets[0]).toMatchObject({ port: 22, retries: 3, connectTimeoutSeconds: 20 });
    expect(c.backup.targets[1]).toMatchObject({
      region: 'us-east-1',
      pathStyle: false,
      prefix: '',
      partSizeMiB: 16,
    });
    expect(validateConfig({}, 'x.json').backup.targets).toEqual([]);
  });

  it('refuses credentials in the config and says where they belong', () => {
    const a = issue(() => validateConfig(cfg([{ ...s3, secretAccessKey: 'x' }]), 'x.json'));
    expect(a.paths).toContain('backup.targets.0.secretAccessKey');
    expect(a.message).toMatch(
      /credentials do not belong in the config.*backupTargets\.b2\.secretAccessKey.*AWS_/,
    );
    const b = issue(() => validateConfig(cfg([{ ...sftp, password: 'hunter2' }]), 'x.json'));
    expect(b.message).toMatch(/backupTargets\.offsite\.password.*ATTENDUX_TARGET_OFFSITE_PASSWORD/);
    const c = issue(() => validateConfig(cfg([{ ...sftp, privateKey: '-----BEGIN' }]), 'x.json'));
    expect(c.message).toMatch(/privateKeyFile/);
  });

  it('requires the host key fingerprint (no trust on first use) and unique names', () => {
    const noKey: Record<string, unknown> = { ...sftp };
    delete noKey.hostKeyFingerprint;
    expect(issue(() => validateConfig(cfg([noKey]), 'x.json')).paths).toContain(
      'backup.targets.0.hostKeyFingerprint',
    );
    expect(
      issue(() => validateConfig(cfg([{ ...sftp, hostKeyFingerprint: 'MD5:aa:bb' }]), 'x.json')).message,
    ).toMatch(/SHA256/);
    expect(issue(() => validateConfig(cfg([sftp, { ...s3, name: 'offsite' }]), 'x.json')).message).toMatch(
      /used twice/,
    );
    expect(issue(() => validateConfig(cfg([{ ...s3, prefix: 'a/../b' }]), 'x.json')).message).toMatch(/\.\./);
  });

  it('takes credentials from the secrets file, then ATTENDUX_TARGET_<NAME>_*', () => {
    const t = validateConfig(cfg([s3]), 'x.json').backup.targets[0]!;
    expect(targetCredentials(t, { b2: { accessKeyId: 'A', secretAccessKey: 'S' } }, {})).toMatchObject({
      accessKeyId: 'A',
      secretAccessKey: 'S',
    });
    expect(
      targetCredentials(t, undefined, {
        ATTENDUX_TARGET_B2_ACCESS_KEY_ID: 'EA',
        ATTENDUX_TARGET_B2_SECRET_ACCESS_KEY: 'ES',
      }),
    ).toMatchObject({ accessKeyId: 'EA', secretAccessKey: 'ES' });
  });

  it('temporary upload names never look like a backup file', () => {
    const n = tempName('full-20261123T020000123Z.tar.age');
    expect(isTempName(n)).toBe(true);
    expect(n.startsWith('.')).toBe(true);
    expect(n.endsWith('.tar.age')).toBe(false);
    expect(isTempName('full-20261123T020000123Z.tar.age')).toBe(false);
  });
});

describe('SSH host key fingerprints', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'attendux-fp-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('are computed exactly as ssh-keygen -lf prints them', async () => {
    for (const type of ['ed25519', 'rsa', 'ecdsa']) {
      const f = join(dir, `k_${type}`);
      execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-f', f]);
      const printed = execFileSync('ssh-keygen', ['-lf', `${f}.pub`], { encoding: 'utf8' }).split(' ')[1];
      const blob = Buffer.from((await readFile(`${f}.pub`, 'utf8')).split(' ')[1]!, 'base64');
      expect(sshFingerprint(blob)).toBe(printed);
    }
  });
});

describe('attendux config validate (binary)', () => {
  let dir: string;
  const write = async (targets: unknown[], backupTargets?: unknown) => {
    await writeFile(join(dir, 'attendux.json'), JSON.stringify({ dataDir: 'data', ...cfg(targets) }));
    const secrets = {
      sessionKey: randomKey(),
      apiKeyHmacKey: randomKey(),
      auditPepper: randomKey(),
      dataKeys: { k1: randomKey() },
      activeDataKeyId: 'k1',
      ...(backupTargets ? { backupTargets } : {}),
    };
    await writeFile(join(dir, 'attendux.secrets.json'), JSON.stringify(secrets), { mode: 0o600 });
  };
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'attendux-validate-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));
  const validate = () =>
    runCli(['--config', join(dir, 'attendux.json'), 'config', 'validate', '--json'], {
      env: { AWS_ACCESS_KEY_ID: '', AWS_PROFILE: '' },
    });

  it('names a credential in the config (exit 2)', async () => {
    await write([{ ...s3, accessKeyId: 'AKIA...', secretAccessKey: 'x' }]);
    const r = await validate();
    expect(r.exitCode).toBe(2);
    expect(r.stdout + r.stderr).toMatch(/backup\.targets\.0\.accessKeyId.*secrets file/);
  });

  it('names missing SFTP credentials, and a key file that others can read', async () => {
    const noKey: Record<string, unknown> = { ...sftp };
    delete noKey.privateKeyFile;
    await write([noKey]);
    let r = await validate();
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toMatch(/no SFTP credentials.*backupTargets\.offsite\.password/);
    const key = join(dir, 'offsite_ed25519');
    await writeFile(key, 'not really a key', { mode: 0o644 });
    await write([{ ...sftp, privateKeyFile: 'offsite_ed25519' }]);
    r = await validate();
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toMatch(/readable by others/);
    await write([noKey], { offsite: { password: 'in-the-secrets-file' } });
    r = await validate();
    expect(r.exitCode, r.stderr).toBe(0);
  });

  it('warns when S3 credentials are left to the SDK chain, accepts them from the secrets file', async () => {
    await write([s3]);
    let r = await validate();
    expect(r.exitCode, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { warnings: string[] }).warnings[0]).toMatch(/no S3 credentials/);
    await write([s3], { b2: { accessKeyId: 'A', secretAccessKey: 'S' } });
    r = await validate();
    expect(r.exitCode).toBe(0);
    expect((JSON.parse(r.stdout) as { warnings?: string[] }).warnings).toBeUndefined();
  });
});
