import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedReference } from '../../bench/seed.js';
import { backupFull } from '../../src/core/backup/full.js';
import { backupIncremental } from '../../src/core/backup/incremental.js';
import { restoreInto } from '../../src/core/restore/execute.js';
import { restoreTenant } from '../../src/core/restore/tenant.js';
import { AttenduxError } from '../../src/errors.js';
import { createPool, withTenant, type Pool } from '../../src/db/pool.js';
import { makeInstall, type TestInstall } from '../helpers/backup.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { dropDatabases, tableChecksums, urlOf } from '../helpers/restore.js';

let db: TestDatabase;
let admin: Pool;
let app: Pool;
let inst: TestInstall;
let a: { id: string; slug: string };
let others: string[];
const made: string[] = [];
const cfg = () => ({ configPath: inst.configPath, identityFile: inst.identityFile });

/** A company's rows, audit log left out (it is kept live by design). */
async function companyState(tenantId: string) {
  const all = await tableChecksums(db.adminUrl, { onlyTenant: tenantId });
  delete all.audit_log;
  return all;
}

async function badBulkEdit(tenantId: string): Promise<void> {
  await withTenant(app, tenantId, async (c) => {
    await c.query('DELETE FROM attendance_events WHERE tenant_id = $1 AND id % 2 = 0', [tenantId]);
    await c.query(`UPDATE employees SET hourly_rate_minor = 1, full_name = 'oops' WHERE tenant_id = $1`, [
      tenantId,
    ]);
    await c.query(`INSERT INTO teams (tenant_id, name) VALUES ($1, 'Wrong team')`, [tenantId]);
  });
  await admin.query(`UPDATE tenants SET name = 'Renamed by mistake' WHERE id = $1`, [tenantId]);
}

async function otherWork(tenantId: string, tag: string): Promise<void> {
  await withTenant(app, tenantId, async (c) => {
    const { rows } = await c.query<{ id: string }>('SELECT id FROM employees WHERE tenant_id = $1 LIMIT 1', [
      tenantId,
    ]);
    await c.query(
      `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, geofence, method, device_id)
       VALUES ($1, $2, 'check_out', now(), 'unknown', 'manual', $3)`,
      [tenantId, rows[0]!.id, tag],
    );
  });
}

beforeAll(async () => {
  db = await createTestDatabase('rtenant');
  admin = createPool(db.adminUrl, 4);
  app = createPool(db.appUrl, 4);
  await seedReference(admin, { companies: 3, employees: 30, events: 15_000 });
  const { rows } = await admin.query<{ id: string; slug: string }>(
    'SELECT id::text, slug FROM tenants ORDER BY slug',
  );
  a = rows[0]!;
  others = rows.slice(1).map((r) => r.id);
  inst = await makeInstall(db);
});

afterAll(async () => {
  await app.end();
  await admin.end();
  await dropDatabases(db.superuserUrl, made);
  await db.drop();
  await inst.cleanup();
});

describe('restore --tenant', () => {
  it('puts one company back to the backup point and leaves every other company byte for byte', async () => {
    await backupFull({ configPath: inst.configPath });
    await otherWork(a.id, 'before-inc');
    const good = await companyState(a.id);
    await backupIncremental({ configPath: inst.configPath });
    await badBulkEdit(a.id);
    for (const o of others) await otherWork(o, 'after-backup');
    expect(await companyState(a.id)).not.toEqual(good);
    const othersBefore = await tableChecksums(db.adminUrl, { exceptTenant: a.id });

    const r = await restoreTenant({ ...cfg(), tenant: a.slug });
    expect(r.tenantId).toBe(a.id);
    expect(r.tables.attendance_events!.restored).toBeGreaterThan(r.tables.attendance_events!.removed);
    expect(await companyState(a.id)).toEqual(good);
    expect(await tableChecksums(db.adminUrl, { exceptTenant: a.id })).toEqual(othersBefore);
  });

  it('keeps the company’s audit log and appends an entry about the restore to it', async () => {
    const before = await admin.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM audit_log WHERE tenant_id = $1',
      [a.id],
    );
    await restoreTenant({ ...cfg(), tenant: a.id });
    const { rows } = await admin.query<{ action: string; n: number }>(
      `SELECT action, count(*) OVER ()::int AS n FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1`,
      [a.id],
    );
    expect(rows[0]!.action).toBe('restore.tenant');
    expect(rows[0]!.n).toBe(before.rows[0]!.n + 1);
  });

  it('is captured by the next incremental, so a restore of the newest chain equals the live database', async () => {
    // Taken before the backup: each backup's own audit entry is written after its snapshot.
    const live = await tableChecksums(db.adminUrl);
    await backupIncremental({ configPath: inst.configPath });
    const into = `${db.name}_after`.slice(0, 63);
    made.push(into);
    await restoreInto({ ...cfg(), into });
    expect(await tableChecksums(urlOf(db, into))).toEqual(live);
  });

  it('refuses an unknown company and changes nothing', async () => {
    const before = await tableChecksums(db.adminUrl);
    const err = (await restoreTenant({ ...cfg(), tenant: 'no-such-company' }).catch(
      (e: unknown) => e,
    )) as AttenduxError;
    expect(err).toBeInstanceOf(AttenduxError);
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toBe('no company "no-such-company" in the live database or the backup');
    expect(await tableChecksums(db.adminUrl)).toEqual(before);
  });
});
