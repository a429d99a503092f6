import { mkdir, readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedReference } from '../../bench/seed.js';
import { backupFull } from '../../src/core/backup/full.js';
import { backupIncremental } from '../../src/core/backup/incremental.js';
import { backupConfig } from '../../src/core/backup/config.js';
import { readCatalog } from '../../src/core/archive/catalog.js';
import { openBackup } from '../../src/core/archive/reader.js';
import { applyPrune, planBackupPrune, pruneBackups } from '../../src/core/backup/prune.js';
import { backupStatus, prometheusText } from '../../src/core/backup/status.js';
import { BACKUP_ADVISORY_KEY } from '../../src/core/backup/lock.js';
import { connectClient, createPool, withTenant, type Pool } from '../../src/db/pool.js';
import { makeInstall, patchConfig, type TestInstall } from '../helpers/backup.js';
import { auditKeyFor, createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { appendAudit } from '../../src/db/queries/audit.js';
import { registerAuditKey } from '../../src/core/audit/mac.js';

let db: TestDatabase;
let admin: Pool;
let app: Pool;
const installs: TestInstall[] = [];

async function install(opts: Parameters<typeof makeInstall>[1] = {}): Promise<TestInstall> {
  const i = await makeInstall(db, opts);
  installs.push(i);
  return i;
}

beforeAll(async () => {
  db = await createTestDatabase('bops');
  admin = createPool(db.adminUrl, 4);
  app = createPool(db.appUrl, 2);
  registerAuditKey(app, auditKeyFor(db));
  await seedReference(admin, { companies: 2, employees: 20, events: 40_000 });
});

afterAll(async () => {
  await app.end();
  await admin.end();
  await db.drop();
  for (const i of installs) await i.cleanup();
});

describe('change capture', () => {
  it('records the app role’s writes, audit entries included, while the app role cannot read the log', async () => {
    const { rows } = await admin.query<{ id: string }>('SELECT id FROM tenants LIMIT 1');
    const t = rows[0]!.id;
    const before =
      (await admin.query<{ n: number }>('SELECT max(id)::int AS n FROM change_log')).rows[0]!.n ?? 0;
    await withTenant(app, t, async (c) => {
      await c.query(
        `INSERT INTO tenant_settings (tenant_id, key, value) VALUES ($1, 'week.start', '"monday"')`,
        [t],
      );
      await appendAudit(c, { tenantId: t, actor: 'user:x', action: 'settings.change' });
    });
    const { rows: ch } = await admin.query<{ table_name: string; op: string; tenant_id: string }>(
      'SELECT table_name, op, tenant_id FROM change_log WHERE id > $1 ORDER BY id',
      [before],
    );
    expect(ch).toEqual([
      { table_name: 'tenant_settings', op: 'I', tenant_id: t },
      { table_name: 'audit_log', op: 'I', tenant_id: t },
    ]);
    await expect(app.query('SELECT * FROM change_log')).rejects.toThrow(/permission denied/);
    await expect(
      app.query(`INSERT INTO change_log (table_name, op) VALUES ('tenants', 'T')`),
    ).rejects.toThrow(/permission denied/);
  });
});

describe('backup error paths', () => {
  it('refuses to run without recipients, with a hint, and records the failed run', async () => {
    const i = await install({ recipients: false });
    await expect(backupFull({ configPath: i.configPath })).rejects.toMatchObject({
      code: 'BACKUP_NO_RECIPIENTS',
      exitCode: 1,
      message: expect.stringMatching(/no backup recipients configured/),
    });
    const st = await backupStatus({ configPath: i.configPath });
    expect(st.kinds.find((k) => k.kind === 'full')!.problem).toMatch(/last run failed/);
    const { rows } = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM audit_log
        WHERE action = 'backup.full' AND details->>'error' = 'BACKUP_NO_RECIPIENTS' AND actor LIKE 'cli:%'`,
    );
    expect(rows[0]!.n).toBe(1);
  });

  it('names an unwritable backup directory', async () => {
    const i = await install();
    await writeFile(join(i.dir, 'a-file'), 'x');
    await patchConfig(i, (c) => (c.backup.dir = join(i.dir, 'a-file', 'backups')));
    await expect(backupFull({ configPath: i.configPath })).rejects.toMatchObject({
      code: 'BACKUP_DIR_UNWRITABLE',
      exitCode: 1,
      message: expect.stringMatching(/a-file\/backups is not writable/),
    });
  });

  it('says there is no full backup for an incremental, and takes one with fullIfNeeded', async () => {
    const i = await install();
    await expect(backupIncremental({ configPath: i.configPath })).rejects.toMatchObject({
      code: 'BACKUP_NO_FULL',
      exitCode: 1,
      message: expect.stringMatching(/there is no full backup yet/),
    });
    const r = await backupIncremental({ configPath: i.configPath, fullIfNeeded: true });
    expect(r.sidecar.kind).toBe('full');
    expect(r.note).toMatch(/took a full backup instead/);
  });

  it('fails cleanly when the database connection is killed mid-stream, leaving no backup and no leftovers', async () => {
    const i = await install();
    const su = await connectClient(db.superuserUrl);
    try {
      const err = await backupFull({
        configPath: i.configPath,
        onCopyStarted: async (table, pid) => {
          if (table === 'attendance_events') await su.query('SELECT pg_terminate_backend($1)', [pid]);
        },
      }).catch((e: unknown) => e);
      expect(err).toMatchObject({
        code: 'BACKUP_FAILED',
        exitCode: 1,
        message: expect.stringMatching(/database connection was lost while copying table attendance_events/),
      });
    } finally {
      await su.end();
    }
    expect((await readCatalog(i.backupDir)).backups).toEqual([]);
    expect((await readdir(i.backupDir)).filter((n) => !n.startsWith('last-run-'))).toEqual([]);
    const { rows } = await admin.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM audit_log WHERE action = 'backup.full' AND details->>'outcome' = 'failure'",
    );
    expect(rows[0]!.n).toBeGreaterThan(0);
  });

  it('refuses an incremental whose parent was taken from another database', async () => {
    const i = await install();
    await backupFull({ configPath: i.configPath });
    const sidecars = (await readdir(i.backupDir)).filter((n) => /^full-.*\.json$/.test(n));
    const p = join(i.backupDir, sidecars[0]!);
    const s = JSON.parse(await readFile(p, 'utf8')) as Record<string, unknown>;
    await writeFile(p, JSON.stringify({ ...s, databaseId: '11111111-1111-1111-1111-111111111111' }));
    await expect(backupIncremental({ configPath: i.configPath })).rejects.toMatchObject({
      code: 'BACKUP_CHAIN_BROKEN',
      message: expect.stringMatching(/taken from another database/),
    });
  });
  it('refuses an incremental on an older parent once a newer backup trimmed the changes it needs', async () => {
    const i = await install();
    await backupFull({ configPath: i.configPath });
    const newer = (await backupFull({ configPath: i.configPath })).sidecar;
    await unlink(join(i.backupDir, `${newer.id}.json`));
    await unlink(join(i.backupDir, `${newer.id}.tar.age`));
    // Other sessions on the shared test cluster may hold the global xmin back so that the real trim
    // removed nothing the older parent needs; move the horizon as a newer backup on a quiet server would.
    const { rows } = await admin.query<{ t: string }>('SELECT trimmed_before::text AS t FROM backup_meta');
    await admin.query('UPDATE backup_meta SET trimmed_before = pg_current_xact_id()');
    try {
      await expect(backupIncremental({ configPath: i.configPath })).rejects.toMatchObject({
        code: 'BACKUP_CHAIN_BROKEN',
        message: expect.stringMatching(/already trimmed by a newer backup that is not in this backup dir/),
      });
      const r = await backupIncremental({ configPath: i.configPath, fullIfNeeded: true });
      expect(r.sidecar.kind).toBe('full');
    } finally {
      // The other tests share this database; leave the horizon where real backups put it.
      await admin.query('UPDATE backup_meta SET trimmed_before = $1::xid8', [rows[0]!.t]);
    }
  });
});

describe('one backup at a time', () => {
  it('lets only one of two concurrent runs through; the other names the running one', async () => {
    const i = await install();
    const results = await Promise.allSettled([
      backupFull({ configPath: i.configPath }),
      backupFull({ configPath: i.configPath }),
    ]);
    const ok = results.filter((r) => r.status === 'fulfilled');
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(ok).toHaveLength(1);
    expect(failed).toHaveLength(1);
    expect(failed[0]!.reason).toMatchObject({
      code: 'BACKUP_LOCKED',
      exitCode: 75,
      message: expect.stringMatching(new RegExp(`another backup is running: pid ${process.pid} on `)),
    });
  });

  it('refuses while another host holds the database advisory lock', async () => {
    const i = await install();
    const other = await connectClient(db.adminUrl, 'other-host-backup');
    try {
      await other.query('SELECT pg_advisory_lock($1)', [BACKUP_ADVISORY_KEY]);
      await expect(backupFull({ configPath: i.configPath })).rejects.toMatchObject({
        code: 'BACKUP_LOCKED',
        message: expect.stringMatching(
          /another backup of this database is running: database session \d+ \(other-host-backup/,
        ),
      });
    } finally {
      await other.end();
    }
  });

  it('takes over a stale lock file left by a dead process', async () => {
    const i = await install();
    await mkdir(i.dataDir, { recursive: true });
    await writeFile(
      join(i.dataDir, 'backup.lock'),
      JSON.stringify({
        pid: 2 ** 22 + 12345,
        host: hostname(),
        startedAt: '2026-01-01T00:00:00Z',
        command: 'backup full',
      }),
    );
    const r = await backupFull({ configPath: i.configPath });
    expect(r.sidecar.kind).toBe('full');
    expect(await readdir(i.dataDir)).not.toContain('backup.lock');
  });
});

describe('config backups', () => {
  it('backs up config and secrets, and with ifChanged writes nothing until a file changes', async () => {
    const i = await install();
    const first = await backupConfig({ configPath: i.configPath, serviceFiles: [] });
    expect(first.written).toBe(true);
    expect(first.files).toEqual([i.configPath, i.secretsPath]);
    const again = await backupConfig({ configPath: i.configPath, ifChanged: true, serviceFiles: [] });
    expect(again).toMatchObject({ written: false, previous: first.sidecar!.id });
    await patchConfig(i, (c) => (c.server = { port: 9090 }));
    const changed = await backupConfig({ configPath: i.configPath, ifChanged: true, serviceFiles: [] });
    expect(changed.written).toBe(true);
    expect(changed.contentHash).not.toBe(first.contentHash);
  });
});

describe('config backups of company settings', () => {
  it('takes a new config backup holding the settings when a company setting changed', async () => {
    const i = await install();
    const first = await backupConfig({ configPath: i.configPath, serviceFiles: [] });
    const same = await backupConfig({ configPath: i.configPath, ifChanged: true, serviceFiles: [] });
    expect(same.written).toBe(false);
    const { rows } = await admin.query<{ id: string }>('SELECT id FROM tenants ORDER BY slug LIMIT 1');
    await admin.query(
      `INSERT INTO tenant_settings (tenant_id, key, value) VALUES ($1, 'geofence.mode', '"reject"')
       ON CONFLICT (tenant_id, key) DO UPDATE SET value = '"flag"'`,
      [rows[0]!.id],
    );
    const changed = await backupConfig({ configPath: i.configPath, ifChanged: true, serviceFiles: [] });
    expect(changed.written).toBe(true);
    expect(changed.contentHash).not.toBe(first.contentHash);
    const opened = await openBackup({
      backupDir: i.backupDir,
      id: changed.sidecar!.id,
      identities: [i.identity],
    });
    try {
      const settings = JSON.parse(await readFile(join(opened.dir, 'settings/tenant-settings.json'), 'utf8'));
      expect(settings).toContainEqual(expect.objectContaining({ key: 'geofence.mode' }));
    } finally {
      await opened.cleanup();
    }
  });
});

describe('prune and status', () => {
  it('keeps a full that a kept incremental needs and deletes the chain once it expires', async () => {
    const i = await install({ backup: { retention: { fullDays: 1, incrementalDays: 30, configDays: 90 } } });
    const f1 = (await backupFull({ configPath: i.configPath })).sidecar.id;
    const i1 = (await backupIncremental({ configPath: i.configPath })).sidecar.id;
    const f2 = (await backupFull({ configPath: i.configPath })).sidecar.id;
    const later = new Date(Date.now() + 2 * 86_400_000);
    const kept = await pruneBackups({ configPath: i.configPath, now: later });
    expect(kept.delete).toEqual([]);
    expect(kept.keep.find((k) => k.id === f1)).toMatchObject({ protected: true });

    await patchConfig(i, (c) => (c.backup.retention.incrementalDays = 1));
    const dry = await pruneBackups({ configPath: i.configPath, now: later, dryRun: true });
    expect(dry.delete.map((d) => d.id)).toEqual([i1, f1]);
    expect((await readCatalog(i.backupDir)).backups).toHaveLength(3);
    await pruneBackups({ configPath: i.configPath, now: later });
    expect((await readCatalog(i.backupDir)).backups.map((b) => b.id)).toEqual([f2]);
    expect((await readdir(i.backupDir)).filter((n) => n.endsWith('.tar.age'))).toEqual([`${f2}.tar.age`]);
  });

  it('applies the plan it showed: deletes what it listed and nothing newly expired, refuses a stale plan', async () => {
    const i = await install({ backup: { retention: { fullDays: 1, incrementalDays: 1, configDays: 90 } } });
    const f1 = (await backupFull({ configPath: i.configPath })).sidecar.id;
    const i1 = (await backupIncremental({ configPath: i.configPath })).sidecar.id;
    const f2 = (await backupFull({ configPath: i.configPath })).sidecar.id;
    const later = new Date(Date.now() + 2 * 86_400_000);
    const plan = await planBackupPrune({ configPath: i.configPath, now: later });
    expect(plan.delete.map((d) => d.id)).toEqual([i1, f1]);
    // Only what the plan lists goes, even though f1 is just as expired.
    const shown = { ...plan, delete: plan.delete.filter((d) => d.id === i1) };
    const r = await applyPrune({ configPath: i.configPath }, shown);
    expect(r.delete.map((d) => d.id)).toEqual([i1]);
    expect((await readCatalog(i.backupDir)).backups.map((b) => b.id)).toEqual([f1, f2]);

    // A plan deleting what retention now keeps (f2, the newest full, which a new incremental builds on) is refused.
    const stale = { ...plan, delete: [{ ...plan.delete[1]!, id: f2 }] };
    await backupIncremental({ configPath: i.configPath });
    await expect(applyPrune({ configPath: i.configPath }, stale)).rejects.toMatchObject({ code: 'CONFLICT' });
    expect((await readCatalog(i.backupDir)).backups.map((b) => b.id)).toContain(f2);
  });

  it('calls a kind stale past its threshold and exports Prometheus metrics', async () => {
    const i = await install();
    await backupFull({ configPath: i.configPath });
    await backupIncremental({ configPath: i.configPath });
    await backupConfig({ configPath: i.configPath, serviceFiles: [] });
    const fresh = await backupStatus({ configPath: i.configPath });
    expect(fresh.ok).toBe(true);
    const in8h = await backupStatus({ configPath: i.configPath, now: new Date(Date.now() + 8 * 3_600_000) });
    expect(in8h.ok).toBe(false);
    expect(in8h.kinds.map((k) => [k.kind, k.ok])).toEqual([
      ['full', true],
      ['incremental', false],
      ['config', true],
    ]);
    expect(in8h.kinds[1]!.problem).toMatch(/stale after 7 h/);
    const in27h = await backupStatus({
      configPath: i.configPath,
      now: new Date(Date.now() + 27 * 3_600_000),
    });
    expect(in27h.kinds[0]!.ok).toBe(false);
    const text = await prometheusText(fresh);
    expect(text).toMatch(/^# TYPE attendux_backup_last_success_timestamp_seconds gauge$/m);
    expect(text).toMatch(/^attendux_backup_last_size_bytes\{kind="full"\} \d+$/m);
    expect(text).toMatch(/^attendux_backup_last_duration_seconds\{kind="incremental"\} [\d.]+$/m);
    expect(text).toMatch(/^attendux_backup_ok\{kind="full"\} 1$/m);
  });
});
