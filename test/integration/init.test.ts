import { mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it, inject } from 'vitest';
import { initInstall, type InitOptions } from '../../src/core/init.js';
import { dropInstall } from '../helpers/db.js';
import { withInstall } from '../../src/core/install.js';
import { generateAgeKeyPair } from '../../src/crypto/age.js';

const { superuserUrl } = inject('pg');
const created: string[] = [];

async function options(extra: Partial<InitOptions> = {}): Promise<InitOptions> {
  const dir = await mkdtemp(join(tmpdir(), 'attendux-init-'));
  const database = `attendux_init_${randomBytes(3).toString('hex')}`;
  created.push(database);
  return {
    configPath: join(dir, 'attendux.json'),
    dataDir: join(dir, 'data'),
    superuserUrl,
    databaseName: database,
    tenantSlug: 'acme',
    tenantName: 'Acme',
    adminEmail: 'Owner@Acme.example',
    adminPassword: 'a-long-owner-password',
    actor: 'cli:test@host',
    bcryptCost: 4,
    ...extra,
  };
}

afterAll(async () => {
  for (const d of created) await dropInstall(superuserUrl, d);
});

describe('attendux init against an existing PostgreSQL', () => {
  it('provisions config, 0600 secrets and identity, roles, schema, company and owner', async () => {
    const opts = await options();
    const r = await initInstall(opts);
    expect(r.alreadyInstalled).toBe(false);
    expect((await stat(r.secretsPath)).mode & 0o777).toBe(0o600);
    expect((await stat(r.identityPath!)).mode & 0o777).toBe(0o600);
    const identity = await readFile(r.identityPath!, 'utf8');
    expect(identity).toContain(`# public key: ${r.backupRecipient}`);
    // The install signing key's public half, kept with the identity and in the config (backup signatures).
    expect(r.signingPublicKey).toMatch(/^ed25519:/);
    expect(identity).toContain(`# attendux-signing-key: ${r.signingPublicKey}`);
    const config = JSON.parse(await readFile(opts.configPath, 'utf8'));
    expect(config.backup.recipients).toEqual([r.backupRecipient]);
    expect(JSON.stringify(config)).not.toMatch(/password|AGE-SECRET/i);

    await withInstall({ configPath: opts.configPath }, async (install) => {
      const users = await install.admin.query('SELECT email, role FROM users');
      expect(users.rows).toEqual([{ email: 'owner@acme.example', role: 'owner' }]);
      const audit = await install.admin.query<{ action: string }>('SELECT action FROM audit_log ORDER BY at');
      expect(audit.rows.map((a) => a.action)).toEqual(['tenant.create', 'tenant.create', 'user.create']);
      const roles = await install.admin.query<{ rolname: string; rolsuper: boolean; rolbypassrls: boolean }>(
        'SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = ANY($1) ORDER BY rolname',
        [[`${opts.databaseName}_app`, `${opts.databaseName}_owner`]],
      );
      expect(roles.rows.map((x) => [x.rolsuper, x.rolbypassrls])).toEqual([
        [false, false],
        [false, false],
      ]);
    });
  });

  it('changes nothing when run again, and says so', async () => {
    const opts = await options();
    await initInstall(opts);
    const before = [
      await readFile(opts.configPath, 'utf8'),
      await readFile(join(opts.configPath, '..', 'attendux.secrets.json'), 'utf8'),
    ];
    const again = await initInstall({ ...opts, adminPassword: undefined });
    expect(again.alreadyInstalled).toBe(true);
    expect(again.generatedPassword).toBeUndefined();
    const after = [
      await readFile(opts.configPath, 'utf8'),
      await readFile(join(opts.configPath, '..', 'attendux.secrets.json'), 'utf8'),
    ];
    expect(after).toEqual(before);
  });

  it('keeps every existing secret and the backup recipient when forced', async () => {
    const opts = await options();
    const first = await initInstall(opts);
    const secretsBefore = JSON.parse(await readFile(first.secretsPath, 'utf8'));
    const forced = await initInstall({ ...opts, force: true, serverPort: 9999 });
    expect(forced.alreadyInstalled).toBe(false);
    expect(JSON.parse(await readFile(first.secretsPath, 'utf8'))).toEqual(secretsBefore);
    const config = JSON.parse(await readFile(opts.configPath, 'utf8'));
    expect(config.server.port).toBe(9999);
    expect(config.backup.recipients).toEqual([first.backupRecipient]);
    expect(forced.identityPath).toBeUndefined();
  });

  it('uses a given backup recipient and writes no identity', async () => {
    const { recipient } = await generateAgeKeyPair();
    const opts = await options({ backupRecipient: recipient });
    const r = await initInstall(opts);
    expect(r.identityPath).toBeUndefined();
    expect(JSON.parse(await readFile(opts.configPath, 'utf8')).backup.recipients).toEqual([recipient]);
  });

  it('refuses a backup recipient that is not an age public key', async () => {
    const opts = await options({ backupRecipient: 'ssh-ed25519 AAAA' });
    await expect(initInstall(opts)).rejects.toMatchObject({ code: 'USAGE', exitCode: 2 });
  });

  it('returns a generated owner password once when none is given', async () => {
    const opts = await options({ adminPassword: undefined });
    const r = await initInstall(opts);
    expect(r.generatedPassword).toMatch(/^[A-Za-z0-9]{24}$/);
  });
});
