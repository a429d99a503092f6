import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedReference } from '../../bench/seed.js';
import { backupFull } from '../../src/core/backup/full.js';
import { backupIncremental } from '../../src/core/backup/incremental.js';
import { restoreInto } from '../../src/core/restore/execute.js';
import { AttenduxError } from '../../src/errors.js';
import { connectClient, createPool, withTenant, type Pool } from '../../src/db/pool.js';
import { ageKeygen, makeInstall, type TestInstall } from '../helpers/backup.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { databaseExists, dropDatabases, tableChecksums, urlOf } from '../helpers/restore.js';

let db: TestDatabase;
let admin: Pool;
let app: Pool;
let inst: TestInstall;
let tenants: string[];
const made: string[] = [];
/** Checksums of the source taken right before each backup (or point in time). */
const points: Record<string, Record<string, string>> = {};
const ids: Record<string, string> = {};
let between: string;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cfg = () => ({ configPath: inst.configPath, identityFile: inst.identityFile });

function target(label: string): string {
  const n = `${db.name}_${label}`.slice(0, 63);
  made.push(n);
  return n;
}

/** Inserts, updates and deletes across several tables, as the app (RLS) and as the owner. */
async function mutate(round: number): Promise<void> {
  const t = tenants[round % tenants.length]!;
  await withTenant(app, t, async (c) => {
    const { rows } = await c.query<{ id: string }>(
      'SELECT id FROM employees WHERE tenant_id = $1 ORDER BY id LIMIT 3',
      [t],
    );
    for (const [i, e] of rows.entries())
      await c.query(
        `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, geofence, method, device_id)
         VALUES ($1, $2, 'check_in', now(), 'unknown', 'manual', $3)`,
        [t, e.id, `r${round}-${i}`],
      );
    await c.query(`UPDATE attendance_events SET flagged = NOT flagged WHERE tenant_id = $1 AND id % 7 = $2`, [
      t,
      round % 7,
    ]);
    await c.query(
      `DELETE FROM attendance_events WHERE tenant_id = $1 AND id IN
                     (SELECT id FROM attendance_events WHERE tenant_id = $1 ORDER BY id LIMIT 5)`,
      [t],
    );
    await c.query(
      `UPDATE employees SET full_name = full_name || '+', updated_at = now() WHERE tenant_id = $1 AND id = $2`,
      [t, rows[0]!.id],
    );
    await c.query(
      `INSERT INTO tenant_settings (tenant_id, key, value) VALUES ($1, 'round', $2::jsonb)
       ON CONFLICT (tenant_id, key) DO UPDATE SET value = EXCLUDED.value`,
      [t, JSON.stringify({ round })],
    );
  });
  await admin.query(`UPDATE tenants SET name = name || '*' WHERE id = $1`, [t]);
}

beforeAll(async () => {
  db = await createTestDatabase('rinto');
  admin = createPool(db.adminUrl, 4);
  app = createPool(db.appUrl, 4);
  await seedReference(admin, { companies: 3, employees: 30, events: 20_000 });
  tenants = (await admin.query<{ id: string }>('SELECT id FROM tenants ORDER BY slug')).rows.map((r) => r.id);
  inst = await makeInstall(db);

  points.full = await tableChecksums(db.adminUrl);
  ids.full = (await backupFull({ configPath: inst.configPath })).sidecar.id;
  await mutate(1);
  points.inc1 = await tableChecksums(db.adminUrl);
  ids.inc1 = (await backupIncremental({ configPath: inst.configPath })).sidecar.id;
  await mutate(2);
  await sleep(50);
  between = new Date().toISOString();
  points.between = await tableChecksums(db.adminUrl);
  await sleep(50);
  await mutate(3);
  await mutate(4);
  points.inc2 = await tableChecksums(db.adminUrl);
  ids.inc2 = (await backupIncremental({ configPath: inst.configPath })).sidecar.id;
  await mutate(5);
  points.inc3 = await tableChecksums(db.adminUrl);
  ids.inc3 = (await backupIncremental({ configPath: inst.configPath })).sidecar.id;
});

afterAll(async () => {
  await app.end();
  await admin.end();
  await dropDatabases(db.superuserUrl, made);
  await db.drop();
  await inst.cleanup();
});

describe('restore into a new database', () => {
  it('restores the full backup alone to a copy equal to the source at that point', async () => {
    const into = target('full');
    const r = await restoreInto({ ...cfg(), backupId: ids.full, into });
    expect(r.plan.steps.map((s) => s.id)).toEqual([ids.full]);
    expect(r.rows.attendance_events).toBe(20_000);
    expect(await tableChecksums(urlOf(db, into))).toEqual(points.full);
  });

  it('restores a full plus one incremental to the state of that incremental', async () => {
    const into = target('inc1');
    await restoreInto({ ...cfg(), backupId: ids.inc1, into });
    expect(await tableChecksums(urlOf(db, into))).toEqual(points.inc1);
  });

  it('restores the newest chain by default, full plus every incremental', async () => {
    const into = target('newest');
    const r = await restoreInto({ ...cfg(), into });
    expect(r.plan.steps.map((s) => s.id)).toEqual([ids.full, ids.inc1, ids.inc2, ids.inc3]);
    expect(await tableChecksums(urlOf(db, into))).toEqual(points.inc3);
  });

  it('restores --at a time between two incrementals to the state at that time', async () => {
    const into = target('between');
    const r = await restoreInto({ ...cfg(), at: between, into });
    expect(r.plan.steps.map((s) => s.id)).toEqual([ids.full, ids.inc1, ids.inc2]);
    const got = await tableChecksums(urlOf(db, into));
    expect(got).toEqual(points.between);
    expect(got).not.toEqual(points.inc2);
  });

  // The load drops every key and index and re-makes them (keys as unique indexes attached USING INDEX,
  // triggers off and on again in batches): the restored schema must come out as migrated, name for name.
  it('re-makes every key, index, foreign key and trigger of the source, validated and enabled', async () => {
    const into = target('schema');
    await restoreInto({ ...cfg(), into });
    const schemaOf = async (q: { query: Pool['query'] }) => {
      const { rows } = await q.query<{ what: string }>(
        `SELECT * FROM (
           SELECT format('constraint %s %s %s valid=%s', conrelid::regclass, conname, pg_get_constraintdef(oid),
                         convalidated) AS what
             FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND contype IN ('p', 'u', 'f', 'x')
           UNION ALL
           SELECT format('index %s', pg_get_indexdef(indexrelid)) FROM pg_index
            WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)
           UNION ALL
           SELECT format('trigger %s %s %s', tgrelid::regclass, tgname, tgenabled) FROM pg_trigger
            WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)
         ) x ORDER BY what`,
      );
      return rows.map((r) => r.what);
    };
    const c = await connectClient(urlOf(db, into));
    try {
      const got = await schemaOf(c);
      expect(
        got.filter((w) => w.startsWith('constraint ') && w.includes('PRIMARY KEY')).length,
      ).toBeGreaterThan(5);
      expect(got).toEqual(await schemaOf(admin));
    } finally {
      await c.end();
    }
  });

  // Re-applying the security ledger after the load (every user's session epoch + 1) is captured like any
  // write; the load itself is not.
  it('gives the restored database a new database id, no captured changes of the load and working sequences', async () => {
    const into = target('fresh');
    await restoreInto({ ...cfg(), backupId: ids.inc2, into });
    const c = await connectClient(urlOf(db, into));
    try {
      const src = await admin.query<{ id: string }>('SELECT database_id::text AS id FROM backup_meta');
      const dst = await c.query<{ id: string; changes: number; max: number; next: number }>(
        `SELECT (SELECT database_id::text FROM backup_meta) AS id, (SELECT count(*)::int FROM change_log WHERE table_name NOT IN ('audit_log', 'users', 'security_ledger')) AS changes,
                (SELECT max(id) FROM attendance_events) AS max,
                nextval(pg_get_serial_sequence('attendance_events', 'id')) AS next`,
      );
      expect(dst.rows[0]!.id).not.toBe(src.rows[0]!.id);
      expect(dst.rows[0]!.changes).toBe(0);
      expect(dst.rows[0]!.next).toBe(dst.rows[0]!.max + 1);
    } finally {
      await c.end();
    }
  });

  it('writes an audit entry naming the backups into the restored database, chained and verifiable', async () => {
    const into = target('audit');
    await restoreInto({ ...cfg(), backupId: ids.inc1, into });
    const c = await connectClient(urlOf(db, into));
    try {
      const { rows } = await c.query<{ action: string; details: { backups: string[]; outcome: string } }>(
        `SELECT action, details FROM audit_log WHERE action = 'restore'`,
      );
      expect(rows).toHaveLength(1);
      expect(rows[0]!.details.backups).toEqual([ids.full, ids.inc1]);
      expect(rows[0]!.details.outcome).toBe('success');
      const { verifyAuditChains } = await import('../../src/core/audit/service.js');
      expect((await verifyAuditChains(c)).broken).toEqual([]);
    } finally {
      await c.end();
    }
  });

  it('lets the app role read only its own company through row-level security in the restored database', async () => {
    const into = target('rls');
    await restoreInto({ ...cfg(), backupId: ids.full, into });
    const appUrl = new URL(db.appUrl);
    appUrl.pathname = `/${into}`;
    const pool = createPool(appUrl.toString(), 1);
    try {
      const none = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM employees');
      expect(none.rows[0]!.n).toBe(0);
      const own = await withTenant(pool, tenants[0]!, (c) =>
        c.query<{ n: number }>('SELECT count(*)::int AS n FROM employees'),
      );
      expect(own.rows[0]!.n).toBe(10);
    } finally {
      await pool.end();
    }
  });
});

describe('restore refusals', () => {
  it('refuses a target database that holds tables without --force', async () => {
    const into = target('busy');
    await restoreInto({ ...cfg(), backupId: ids.full, into });
    const err = await restoreInto({ ...cfg(), backupId: ids.inc1, into }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AttenduxError);
    expect((err as AttenduxError).code).toBe('RESTORE_TARGET_EXISTS');
    expect((err as AttenduxError).message).toBe(`database ${into} already exists and holds tables`);
    expect(await tableChecksums(urlOf(db, into))).toEqual(points.full);
  });

  it('replaces a target database that holds tables with --force', async () => {
    const into = target('forced');
    await restoreInto({ ...cfg(), backupId: ids.full, into });
    await restoreInto({ ...cfg(), backupId: ids.inc1, into, force: true });
    expect(await tableChecksums(urlOf(db, into))).toEqual(points.inc1);
  });

  it('refuses to restore into the live database by name', async () => {
    const err = (await restoreInto({ ...cfg(), into: db.name }).catch((e: unknown) => e)) as AttenduxError;
    expect(err.code).toBe('USAGE');
    expect(err.hint).toMatch(/--in-place/);
  });

  it('refuses without an identity, before touching any database', async () => {
    const into = target('noid');
    const saved = process.env.ATTENDUX_BACKUP_IDENTITY;
    delete process.env.ATTENDUX_BACKUP_IDENTITY;
    const err = (await restoreInto({ configPath: inst.configPath, into }).catch(
      (e: unknown) => e,
    )) as AttenduxError;
    if (saved !== undefined) process.env.ATTENDUX_BACKUP_IDENTITY = saved;
    expect(err.code).toBe('USAGE');
    expect(err.message).toMatch(/needs the backup identity/);
    expect(await databaseExists(db, into)).toBe(false);
  });

  it('refuses a foreign identity, before touching any database', async () => {
    const into = target('wrongid');
    const other = join(inst.dir, 'other-identity.txt');
    ageKeygen(other);
    const err = (await restoreInto({ configPath: inst.configPath, identityFile: other, into }).catch(
      (e: unknown) => e,
    )) as AttenduxError;
    expect(err.code).toBe('BACKUP_BAD_IDENTITY');
    expect(err.message).toMatch(/no identity matches/);
    expect(await databaseExists(db, into)).toBe(false);
  });

  it('refuses a chain with a corrupt middle link, names it, and creates no database', async () => {
    const into = target('corrupt');
    const file = join(inst.backupDir, `${ids.inc1}.tar.age`);
    const original = await readFile(file);
    const bad = Buffer.from(original);
    bad[Math.floor(bad.length / 2)]! ^= 0x01;
    await writeFile(file, bad);
    const before = await tableChecksums(db.adminUrl);
    try {
      const err = (await restoreInto({ ...cfg(), backupId: ids.inc2, into }).catch(
        (e: unknown) => e,
      )) as AttenduxError;
      expect(err.code).toBe('BACKUP_CORRUPT');
      expect(err.message).toMatch(new RegExp(`backup ${ids.inc1} \\(link 2 of 3\\) is corrupt`));
    } finally {
      await writeFile(file, original);
    }
    expect(await databaseExists(db, into)).toBe(false);
    expect(await tableChecksums(db.adminUrl)).toEqual(before);
    // The only trace: the failure, in the live database's install-wide audit chain.
    const { rows } = await admin.query<{ details: { outcome: string; error: string } }>(
      `SELECT details FROM audit_log WHERE action = 'restore' ORDER BY at DESC LIMIT 1`,
    );
    expect(rows[0]!.details).toMatchObject({ outcome: 'failure', error: 'BACKUP_CORRUPT' });
  });
});
