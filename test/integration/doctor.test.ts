import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmod, chown, mkdir, mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/core/config/load.js';
import { connectClient } from '../../src/db/pool.js';
import { appendAudit, SYSTEM_TENANT } from '../../src/db/queries/audit.js';
import { backupFull } from '../../src/core/backup/full.js';
import { doctor, runChecks, type Check, type DoctorEnv } from '../../src/core/doctor/index.js';
import * as cfg from '../../src/core/doctor/config.js';
import * as dbc from '../../src/core/doctor/database.js';
import * as bk from '../../src/core/doctor/backups.js';
import * as srv from '../../src/core/doctor/server.js';
import * as host from '../../src/core/doctor/host.js';
import { ageKeygen } from '../helpers/backup.js';
import { createTestDatabase, TEST_PASSWORD, type TestDatabase } from '../helpers/db.js';
import { createTestInstall, type TestInstall } from '../helpers/server.js';
import { freePort } from '../helpers/global-setup.js';

let db: TestDatabase;
let ti: TestInstall;
let recipient: string;

// Tests poke at arbitrary config keys; the loader validates what they write.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type LooseConfig = Record<string, any>;
async function patch(fn: (c: LooseConfig) => void) {
  const c = JSON.parse(await readFile(ti.configPath, 'utf8')) as LooseConfig;
  fn(c);
  await writeFile(ti.configPath, JSON.stringify(c));
}
async function env(extra: Partial<DoctorEnv> = {}): Promise<DoctorEnv> {
  return {
    loaded: await loadConfig({ configPath: ti.configPath }),
    install: ti.install,
    now: new Date(),
    ...extra,
  };
}
async function status(check: Check, e?: Partial<DoctorEnv>) {
  return (await runChecks(await env(e), [check]))[0]!;
}
async function asSuperuser(sql: string) {
  const su = await connectClient(db.superuserUrl.replace(/\/[^/]*$/, `/${db.name}`));
  try {
    await su.query(sql);
  } finally {
    await su.end();
  }
}

beforeAll(async () => {
  db = await createTestDatabase('doctor');
  ti = await createTestInstall(db);
  recipient = ageKeygen(join(ti.dir, 'id.txt')).recipient;
  await appendAudit(ti.install.admin, { tenantId: SYSTEM_TENANT, actor: 'cli:t', action: 'x' });
});
afterAll(async () => {
  await ti.cleanup();
  await db.drop();
});

describe('doctor: config checks', () => {
  it('config.valid', async () => {
    expect((await status(cfg.configValid)).status).toBe('pass');
    expect(
      (
        await runChecks({ now: new Date(), configError: new Error('server.port: bad') }, [cfg.configValid])
      )[0]!.status,
    ).toBe('fail');
  });
  it('config.secrets-mode (and --fix makes it 0600)', async () => {
    expect((await status(cfg.secretsMode)).status).toBe('pass');
    await chmod(ti.secretsPath, 0o644);
    const r = await status(cfg.secretsMode);
    expect(r).toMatchObject({ status: 'fail', fix: `chmod 600 ${ti.secretsPath}` });
    await r.apply!();
    expect((await stat(ti.secretsPath)).mode & 0o777).toBe(0o600);
  });
  it('config.secrets-owner (and --fix chowns it back, as root)', async () => {
    expect((await status(cfg.secretsOwner)).status).toBe('pass');
    if (process.getuid?.() === 0) {
      await chown(ti.secretsPath, 12345, 12345);
      const r = await status(cfg.secretsOwner);
      expect(r.status).toBe('fail');
      await r.apply!();
      expect((await status(cfg.secretsOwner)).status).toBe('pass');
    } else {
      // not root: a data dir owned by someone else (root's /) makes this user not the service user
      await patch((c) => (c.dataDir = '/'));
      const r = await status(cfg.secretsOwner);
      await patch((c) => (c.dataDir = 'data'));
      expect(r.status).toBe('fail');
    }
  });
  it('config.no-secret-in-config', async () => {
    // The test install's URLs carry the password: exactly what the check must flag.
    const withPw = await status(cfg.noSecretInConfig);
    expect(withPw.status).toBe('fail');
    expect(withPw.message).toMatch(/database\.adminUrl \(a database URL with a password\)/);
    // Moved to the secrets file (database.adminPassword/appPassword): pass.
    const strip = (u: string) => {
      const x = new URL(u);
      x.password = '';
      return x.toString();
    };
    await patch((c) => {
      c.database.adminUrl = strip(c.database.adminUrl);
      c.database.url = strip(c.database.url);
    });
    const secrets = JSON.parse(await readFile(ti.secretsPath, 'utf8'));
    secrets.database = { adminPassword: TEST_PASSWORD, appPassword: TEST_PASSWORD };
    await writeFile(ti.secretsPath, JSON.stringify(secrets), { mode: 0o600 });
    expect((await status(cfg.noSecretInConfig)).status).toBe('pass');
  });
  it('config.key-length', async () => {
    expect((await status(cfg.keyLength)).status).toBe('pass');
    const orig = await readFile(ti.secretsPath, 'utf8');
    await writeFile(
      ti.secretsPath,
      JSON.stringify({ ...JSON.parse(orig), sessionKey: Buffer.alloc(8).toString('base64') }),
      { mode: 0o600 },
    );
    const r = await status(cfg.keyLength);
    await writeFile(ti.secretsPath, orig, { mode: 0o600 });
    expect(r).toMatchObject({ status: 'fail' });
    expect(r.message).toMatch(/sessionKey/);
  });
  it('config.public-url', async () => {
    expect((await status(cfg.publicUrl)).status).toBe('pass');
    await patch((c) => (c.server.host = '0.0.0.0'));
    expect((await status(cfg.publicUrl)).status).toBe('fail');
    await patch((c) => (c.server.publicUrl = 'https://attendance.example.com'));
    expect((await status(cfg.publicUrl)).status).toBe('pass');
    await patch((c) => {
      c.server.host = '127.0.0.1';
      delete c.server.publicUrl;
    });
  });
  it('config.security-contact', async () => {
    expect((await status(cfg.securityContact)).status).toBe('warn');
    await patch((c) => (c.server.securityContact = 'mailto:security@acme.example'));
    expect((await status(cfg.securityContact)).status).toBe('pass');
  });
});

describe('doctor: database checks', () => {
  it('db.reachable', async () => {
    expect((await status(dbc.dbReachable)).status).toBe('pass');
    expect(
      (await status(dbc.dbReachable, { install: undefined, installError: new Error('ECONNREFUSED') })).status,
    ).toBe('fail');
  });
  it('db.version', async () => {
    expect((await status(dbc.dbVersion)).status).toBe('pass');
    expect(dbc.versionVerdict(130011).status).toBe('fail');
    // The real server under a policy one major above it (no older PostgreSQL runs here to connect to).
    const { rows } = await ti.install.admin.query<{ v: string }>(
      "SELECT current_setting('server_version_num') AS v",
    );
    const major = Math.floor(Number(rows[0]!.v) / 10000);
    const r = await status(dbc.dbVersion, { minPostgres: major + 1 });
    expect(r).toMatchObject({
      status: 'fail',
      message: `PostgreSQL ${major} is not supported (${major + 1} or newer)`,
    });
  });
  it('db.tls (against a non-loopback address, plain and TLS: doctor-installs.test.ts)', async () => {
    expect((await status(dbc.dbTls)).status).toBe('pass'); // 127.0.0.1
    expect(dbc.tlsVerdict('db.internal.example', false).status).toBe('fail');
    expect(dbc.tlsVerdict('db.internal.example', true).status).toBe('pass');
  });
  it('db.app-role: a server connecting as the table owner fails', async () => {
    expect((await status(dbc.dbAppRole)).status).toBe('pass');
    const install = { ...ti.install, db: { ...ti.install.db, appUrl: db.adminUrl } };
    const r = await status(dbc.dbAppRole, { install });
    expect(r.status).toBe('fail');
    expect(r.message).toMatch(/owns \d+ table/);
  });
  it('db.rls', async () => {
    expect((await status(dbc.dbRls)).status).toBe('pass');
    await ti.install.admin.query('ALTER TABLE teams DISABLE ROW LEVEL SECURITY');
    const r = await status(dbc.dbRls);
    await ti.install.admin.query('ALTER TABLE teams ENABLE ROW LEVEL SECURITY');
    expect(r).toMatchObject({ status: 'fail' });
    expect(r.message).toMatch(/teams/);
  });
  it('db.audit-immutable', async () => {
    expect((await status(dbc.dbAuditImmutable)).status).toBe('pass');
    await ti.install.admin.query(`GRANT UPDATE ON audit_log TO ${db.appRole}`);
    const r = await status(dbc.dbAuditImmutable);
    await ti.install.admin.query(`REVOKE UPDATE ON audit_log FROM ${db.appRole}`);
    expect(r.status).toBe('fail');
    await ti.install.admin.query('ALTER TABLE audit_log DISABLE TRIGGER audit_log_immutable');
    const r2 = await status(dbc.dbAuditImmutable);
    await ti.install.admin.query('ALTER TABLE audit_log ENABLE TRIGGER audit_log_immutable');
    expect(r2.status).toBe('fail');
  });
  it('db.audit-verify', async () => {
    expect((await status(dbc.dbAuditVerify)).status).toBe('pass');
    await asSuperuser(
      "ALTER TABLE audit_log DISABLE TRIGGER USER; UPDATE audit_log SET actor = 'x' WHERE seq = 1; ALTER TABLE audit_log ENABLE TRIGGER USER",
    );
    expect((await status(dbc.dbAuditVerify)).status).toBe('fail');
    await asSuperuser(
      'ALTER TABLE audit_log DISABLE TRIGGER USER; DELETE FROM audit_log; ALTER TABLE audit_log ENABLE TRIGGER USER',
    );
    await appendAudit(ti.install.admin, { tenantId: SYSTEM_TENANT, actor: 'cli:t', action: 'x' });
  });
  it('db.migrations (last: it breaks the schema record)', async () => {
    expect((await status(dbc.dbMigrations)).status).toBe('pass');
    await ti.install.admin
      .query("DELETE FROM pgmigrations WHERE name = '0007_audit-hmac'")
      .catch(async () => asSuperuser("DELETE FROM pgmigrations WHERE name = '0007_audit-hmac'"));
    const r = await status(dbc.dbMigrations);
    await asSuperuser("INSERT INTO pgmigrations (name, run_on) VALUES ('0007_audit-hmac', now())");
    expect(r).toMatchObject({ status: 'fail', fix: 'attendux migrate up' });
  });
});

describe('doctor: backup checks', () => {
  it('backup.recipients', async () => {
    expect((await status(bk.backupRecipients)).status).toBe('fail');
    await patch((c) => (c.backup = { recipients: [recipient] }));
    expect((await status(bk.backupRecipients)).status).toBe('pass');
  });
  it('backup.identity', async () => {
    expect((await status(bk.backupIdentity)).status).toBe('pass');
    await writeFile(join(ti.dir, 'attendux-backup-identity.txt'), 'AGE-SECRET-KEY-1X\n', { mode: 0o600 });
    const r = await status(bk.backupIdentity);
    expect(r.status).toBe('warn');
    expect(r.message).toMatch(/attendux-backup-identity\.txt/);
  });
  it('backup.fresh, backup.chain, backup.disk: fail/skip before a backup, pass after', async () => {
    expect((await status(bk.backupFresh)).status).toBe('fail');
    expect((await status(bk.backupChain)).status).toBe('skip');
    expect((await status(bk.backupDisk)).status).toBe('skip');
    await backupFull({ configPath: ti.configPath });
    await patch((c) => (c.backup.staleAfterHours = { full: 26, incremental: 10_000 }));
    // no incremental yet: still stale
    const fresh = await status(bk.backupFresh);
    expect(fresh.status).toBe('fail');
    expect(fresh.message).toMatch(/incremental/);
    expect((await status(bk.backupChain)).status).toBe('pass');
    expect((await status(bk.backupDisk)).status).toBe('pass');
    // the newest backup file damaged
    const { readdir } = await import('node:fs/promises');
    const dir = (await loadConfig({ configPath: ti.configPath })).backupDir;
    const file = (await readdir(dir)).find((n) => n.endsWith('.tar.age'))!;
    const buf = await readFile(join(dir, file));
    buf[buf.length - 1] = buf[buf.length - 1]! ^ 1;
    await writeFile(join(dir, file), buf);
    expect((await status(bk.backupChain)).status).toBe('fail');
    // disk: pretend the last full was enormous
    const sidecar = join(dir, file.replace('.tar.age', '.json'));
    const s = JSON.parse(await readFile(sidecar, 'utf8'));
    await writeFile(sidecar, JSON.stringify({ ...s, bytes: 1e16 }));
    expect((await status(bk.backupDisk)).status).toBe('fail');
  });
  it('backup.drill', async () => {
    expect((await status(bk.backupDrill)).status).toBe('warn');
    await appendAudit(ti.install.admin, {
      tenantId: SYSTEM_TENANT,
      actor: 'cli:t',
      action: 'restore.drill',
      details: { outcome: 'failure' },
    });
    expect((await status(bk.backupDrill)).status).toBe('fail');
    await appendAudit(ti.install.admin, {
      tenantId: SYSTEM_TENANT,
      actor: 'cli:t',
      action: 'restore.drill',
      details: { outcome: 'success' },
    });
    expect((await status(bk.backupDrill)).status).toBe('pass');
  });
  it('backup.offsite warns when no target is configured (pass and fail: wiring.test.ts)', async () => {
    expect(await status(bk.backupOffsite)).toMatchObject({
      status: 'warn',
      message: expect.stringMatching(/no off-site target/),
    });
  });
});

describe('doctor: server checks', () => {
  it('server.probe: skip when not running, pass with the headers, fail without', async () => {
    const port = await freePort();
    await patch((c) => (c.server.port = port));
    expect((await status(srv.serverProbe)).status).toBe('skip');
    let headers: Record<string, string> = {};
    const s = createServer((_q, res) => {
      res.writeHead(200, headers);
      res.end('{}');
    });
    await new Promise<void>((r) => s.listen(port, '127.0.0.1', r));
    try {
      expect((await status(srv.serverProbe)).status).toBe('fail');
      headers = {
        'content-security-policy': "default-src 'none'",
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
      };
      expect((await status(srv.serverProbe)).status).toBe('pass');
    } finally {
      s.close();
    }
  });
  it('server.tls', async () => {
    expect((await status(srv.serverTls)).status).toBe('skip');
    const cert = join(ti.dir, 'cert.pem');
    const key = join(ti.dir, 'key.pem');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '30',
        '-subj',
        '/CN=localhost',
      ],
      { stdio: 'ignore' },
    );
    await patch((c) => {
      c.server.tlsCert = cert;
      c.server.tlsKey = key;
    });
    expect((await status(srv.serverTls)).status).toBe('pass');
    await patch((c) => (c.server.tlsCert = join(ti.dir, 'missing.pem')));
    await patch((c) => (c.server.tlsKey = join(ti.dir, 'missing.key')));
    expect((await status(srv.serverTls)).status).toBe('fail');
    await patch((c) => {
      delete c.server.tlsCert;
      delete c.server.tlsKey;
      c.server.host = '0.0.0.0';
      c.server.publicUrl = 'https://a.example.com';
    });
    expect((await status(srv.serverTls)).status).toBe('warn');
  });
  it('server.trust-proxy', async () => {
    await patch((c) => (c.server.trustProxy = true));
    expect((await status(srv.serverTrustProxy)).status).toBe('fail');
    await patch((c) => (c.server.host = '127.0.0.1'));
    expect((await status(srv.serverTrustProxy)).status).toBe('pass');
  });
  it('server.embedded-loopback: skip for a system PostgreSQL (real embedded installs: doctor-installs.test.ts)', async () => {
    expect((await status(srv.serverEmbeddedLoopback)).status).toBe('skip');
    expect(srv.listenVerdict('127.0.0.1').status).toBe('pass');
    expect(srv.listenVerdict('localhost, ::1').status).toBe('pass');
    expect(srv.listenVerdict('*').status).toBe('fail');
  });
});

describe('doctor: host checks', () => {
  async function fakeRoots(crypt: boolean) {
    const root = await mkdtemp(join(tmpdir(), 'doc-host-'));
    await mkdir(join(root, 'proc/self'), { recursive: true });
    await writeFile(
      join(root, 'proc/self/mountinfo'),
      `25 1 253:1 / / rw,relatime shared:1 - ext4 /dev/mapper/root rw\n`,
    );
    await mkdir(join(root, 'sys/dev/block/253:1/dm'), { recursive: true });
    await writeFile(
      join(root, 'sys/dev/block/253:1/dm/uuid'),
      crypt ? 'CRYPT-LUKS2-abc-root\n' : 'LVM-xyz\n',
    );
    return { procRoot: join(root, 'proc'), sysRoot: join(root, 'sys') };
  }
  it('host.encrypted', async () => {
    expect((await status(host.hostEncrypted, await fakeRoots(true))).status).toBe('pass');
    expect((await status(host.hostEncrypted, await fakeRoots(false))).status).toBe('warn');
  });
  it('host.clock', async () => {
    expect((await status(host.hostClock, { run: () => Promise.resolve('yes\n') })).status).toBe('pass');
    expect((await status(host.hostClock, { run: () => Promise.resolve('no\n') })).status).toBe('warn');
  });
  it('host.schedules warns when no schedule is installed (pass and fail: wiring.test.ts)', async () => {
    expect(await status(host.hostSchedules)).toMatchObject({
      status: 'warn',
      message: expect.stringMatching(/no schedule is installed/),
    });
  });
});

describe('doctor', () => {
  it('answers the stable JSON shape and is not ok when a check fails', async () => {
    await chmod(ti.secretsPath, 0o640);
    const r = await doctor({ configPath: ti.configPath });
    expect(Object.keys(r).sort()).toEqual(['checks', 'ok']);
    for (const c of r.checks) expect(Object.keys(c).sort()).toEqual(['fix', 'id', 'message', 'status']);
    expect(r.ok).toBe(false);
    const fixed: string[] = [];
    const after = await doctor({ configPath: ti.configPath }, { fix: true, onFix: (id) => fixed.push(id) });
    expect(fixed).toContain('config.secrets-mode');
    expect(after.checks.find((c) => c.id === 'config.secrets-mode')!.status).toBe('pass');
  });
});
