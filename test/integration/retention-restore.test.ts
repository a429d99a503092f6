import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupFull } from '../../src/core/backup/full.js';
import { backupIncremental } from '../../src/core/backup/incremental.js';
import { restoreInto } from '../../src/core/restore/execute.js';
import { restoreInPlace } from '../../src/core/restore/in-place.js';
import { restoreTenant } from '../../src/core/restore/tenant.js';
import { restoreDrill } from '../../src/core/restore/drill.js';
import { planRetention } from '../../src/core/retention/plan.js';
import { applyRetention } from '../../src/core/retention/apply.js';
import { deleteTenant, previewTenantDelete } from '../../src/core/tenant-data/delete.js';
import { withLedgerSync } from '../../src/core/ledger/index.js';
import { openInstall, type Install } from '../../src/core/install.js';
import { createPool, type Pool } from '../../src/db/pool.js';
import type { TestInstall } from '../helpers/backup.js';
import type { TestDatabase } from '../helpers/db.js';
import { restoreFixture, urlOf, type RestoreFixture } from '../helpers/restore.js';
import { seedCompany, type Company } from '../helpers/server.js';

let f: RestoreFixture;
let db: TestDatabase;
let admin: Pool;
let inst: TestInstall;
let install: Install;
let hmacKey: string;
const made: string[] = [];
const cfg = () => ({ configPath: inst.configPath, identityFile: inst.identityFile });

beforeAll(async () => {
  f = await restoreFixture('retention');
  ({ db, admin, inst, install, hmacKey } = f);
});

afterAll(async () => f?.close(made, { admin, install }));

/**
 * A company with events of three ages, all with a GPS position: 6 of four years ago (past a 3-year
 * retention), 6 of 200 days ago (past a 90-day location retention), 6 of yesterday; a correction request
 * about one of the old events.
 */
async function seedEvents(slug: string, settings: Record<string, unknown>): Promise<Company> {
  const co = await seedCompany(admin, hmacKey, slug);
  await admin.query(
    `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, latitude, longitude, accuracy_m,
                                    site_id, geofence, distance_m, method)
     SELECT $1, CASE WHEN i % 2 = 0 THEN $2::uuid ELSE $3::uuid END, CASE WHEN i % 2 = 0 THEN 'check_in' ELSE 'check_out' END,
            now() - age.a - i * interval '1 hour', 52.52, 13.405, 5, $4, 'inside', 3, 'gps'
       FROM unnest(ARRAY[interval '4 years', interval '200 days', interval '1 day']) AS age(a),
            generate_series(1, 6) AS i`,
    [co.id, co.employeeId, co.otherEmployeeId, co.siteId],
  );
  await admin.query(
    `INSERT INTO correction_requests (tenant_id, employee_id, requested_by, action, event_id, reason)
     SELECT $1, employee_id, $2, 'delete', id, 'wrong day' FROM attendance_events
      WHERE tenant_id = $1 AND occurred_at < now() - interval '3 years' ORDER BY id LIMIT 1`,
    [co.id, co.users.employee.id],
  );
  for (const [k, v] of Object.entries(settings))
    await admin.query('INSERT INTO tenant_settings (tenant_id, key, value) VALUES ($1, $2, $3)', [
      co.id,
      k,
      JSON.stringify(v),
    ]);
  return co;
}

// No legal hold here (the DSAR default holds payroll records 6 years); the hold has a test of its own.
const RETAIN = { 'retention.attendanceYears': 3, 'retention.locationDays': 90, 'dsar.holdYears': 0 };

interface Effect {
  deleted: string[];
  stripped: string[];
  kept: string[];
}

async function ids(q: Pool, tenantId: string, where: string, more: unknown[] = []): Promise<string[]> {
  const { rows } = await q.query<{ id: string }>(
    `SELECT id::text FROM attendance_events WHERE tenant_id = $1 AND ${where} ORDER BY id`,
    [tenantId, ...more],
  );
  return rows.map((r) => r.id);
}

/** Apply retention to one company; returns the ids it deleted and stripped, as the database says. */
async function applyTo(co: Company): Promise<Effect> {
  const before = await ids(admin, co.id, 'true');
  const withPos = await ids(admin, co.id, 'latitude IS NOT NULL');
  const plan = await planRetention(install.admin, { tenant: co.slug });
  const r = await withLedgerSync(install, applyRetention(install.admin, plan, 'test'));
  expect(r.tenants).toHaveLength(1);
  const after = await ids(admin, co.id, 'true');
  const stillPos = await ids(admin, co.id, 'latitude IS NOT NULL');
  return {
    deleted: before.filter((i) => !after.includes(i)),
    stripped: withPos.filter((i) => after.includes(i) && !stillPos.includes(i)),
    kept: stillPos,
  };
}

/** In the database at `url`: the deleted events are gone, the stripped ones have no position, the rest do. */
async function expectRetained(url: string, co: Company, e: Effect): Promise<void> {
  const p = createPool(url, 1);
  try {
    expect(await ids(p, co.id, 'id = ANY($2::bigint[])', [e.deleted])).toEqual([]);
    const { rows } = await p.query<{ id: string; pos: boolean; geofence: string }>(
      `SELECT id::text, (latitude IS NOT NULL OR longitude IS NOT NULL OR accuracy_m IS NOT NULL) AS pos, geofence
         FROM attendance_events WHERE tenant_id = $1 ORDER BY id`,
      [co.id],
    );
    expect(rows.filter((r) => r.pos).map((r) => r.id)).toEqual(e.kept);
    expect(rows.map((r) => r.id).sort()).toEqual([...e.stripped, ...e.kept].sort());
    expect(rows.every((r) => r.geofence === 'inside')).toBe(true);
    const c = await p.query('SELECT 1 FROM correction_requests WHERE tenant_id = $1', [co.id]);
    expect(c.rowCount).toBe(0);
  } finally {
    await p.end();
  }
}

/** The company has no row left; `live`: and its audit chain (a restore takes the backup's) ends with it. */
async function expectGone(url: string, co: Company, live = false): Promise<void> {
  const p = createPool(url, 1);
  try {
    const { rows } = await p.query<{ table_name: string; n: number }>(
      'SELECT table_name, n::int AS n FROM attendux_tenant_rows($1) WHERE n > 0',
      [co.id],
    );
    expect(rows).toEqual([]);
    const ledger = await p.query<{ kind: string }>('SELECT kind FROM security_ledger WHERE tenant_id = $1', [
      co.id,
    ]);
    expect(ledger.rows.map((r) => r.kind)).toEqual(['tenant.deleted']);
    if (!live) return;
    // The company's audit chain is kept, ending with the deletion, and the install-wide chain records it.
    const audit = await p.query<{ action: string }>(
      'SELECT action FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1',
      [co.id],
    );
    expect(audit.rows[0]?.action).toBe('tenant.delete');
    const sys = await p.query<{ details: { slug: string; auditChain: { seq: number } } }>(
      `SELECT details FROM audit_log WHERE tenant_id = '00000000-0000-0000-0000-000000000000'
          AND action = 'tenant.delete' AND entity_id = $1`,
      [co.id],
    );
    expect(sys.rows[0]!.details).toMatchObject({ slug: co.slug, auditChain: { seq: expect.any(Number) } });
  } finally {
    await p.end();
  }
}

async function deleteCompany(co: Company): Promise<void> {
  await withLedgerSync(
    install,
    deleteTenant(install.admin, { tenant: co.slug, confirmSlug: co.slug, actor: 'test' }),
  );
}

describe('retention apply', () => {
  it('deletes and strips exactly what the plan said, in one transaction per company, audited and ledgered', async () => {
    const co = await seedEvents('ret-plan', RETAIN);
    const plan = await planRetention(install.admin, { tenant: co.slug });
    const t = plan.tenants[0]!;
    expect(t).toMatchObject({ deleteEvents: 6, stripEvents: 6, deleteCorrections: 1, heldEvents: 0 });
    const planned = await ids(admin, co.id, 'occurred_at < $2', [t.deleteBefore]);
    const r = await applyRetention(install.admin, plan, 'test');
    expect(r.tenants[0]).toMatchObject({
      deletedEvents: 6,
      deletedFingerprint: t.deleteFingerprint,
      strippedEvents: 6,
      strippedFingerprint: t.stripFingerprint,
      deletedCorrections: 1,
    });
    const left = await ids(admin, co.id, 'true');
    expect(left.filter((i) => planned.includes(i))).toEqual([]);
    expect(left).toHaveLength(12);
    // The next incremental backup carries no older copy of what was deleted or stripped.
    const copies = await admin.query<{ deleted: number; positioned: number; deletes: number }>(
      `SELECT count(*) FILTER (WHERE op IN ('I', 'U') AND pk->>'id' = ANY($2::text[]))::int AS deleted,
              count(*) FILTER (WHERE op IN ('I', 'U') AND "row"->>'latitude' IS NOT NULL
                                 AND ("row"->>'occurred_at')::timestamptz < $3::timestamptz)::int AS positioned,
              count(*) FILTER (WHERE op = 'D' AND pk->>'id' = ANY($2::text[]))::int AS deletes
         FROM change_log WHERE tenant_id = $1 AND table_name = 'attendance_events'`,
      [co.id, planned, t.stripBefore],
    );
    expect(copies.rows[0]).toEqual({ deleted: 0, positioned: 0, deletes: 6 });
    const audit = await admin.query<{ details: { deletedEvents: number } }>(
      `SELECT details FROM audit_log WHERE tenant_id = $1 AND action = 'retention.apply'`,
      [co.id],
    );
    expect(audit.rows[0]!.details.deletedEvents).toBe(6);
    const ledger = await admin.query(
      `SELECT 1 FROM security_ledger WHERE tenant_id = $1 AND kind = 'attendance.retention'`,
      [co.id],
    );
    expect(ledger.rowCount).toBe(1);
    // Nothing left to do: a second run touches, audits and records nothing.
    const again = await applyRetention(
      install.admin,
      await planRetention(install.admin, { tenant: co.slug }),
      't',
    );
    expect(again.tenants).toEqual([]);
  });

  it('refuses, changing nothing, when the events changed since the plan', async () => {
    const co = await seedEvents('ret-stale', RETAIN);
    const plan = await planRetention(install.admin, { tenant: co.slug });
    await admin.query(
      `UPDATE attendance_events SET occurred_at = occurred_at - interval '10 years'
        WHERE tenant_id = $1 AND occurred_at > now() - interval '2 days'`,
      [co.id],
    );
    await expect(applyRetention(install.admin, plan, 'test')).rejects.toMatchObject({ code: 'CONFLICT' });
    expect(await ids(admin, co.id, 'true')).toHaveLength(18);
    expect(await ids(admin, co.id, 'latitude IS NOT NULL')).toHaveLength(18);
  });

  it('keeps what the payroll legal hold needs', async () => {
    const co = await seedEvents('ret-hold', { 'retention.attendanceYears': 1, 'dsar.holdYears': 5 });
    const plan = await planRetention(install.admin, { tenant: co.slug });
    // 4 years old: past the 1-year retention, but within the 5-year hold; 200 days old: within both.
    expect(plan.tenants[0]).toMatchObject({ deleteEvents: 0, heldEvents: 6, legalHoldYears: 5 });
  });
});

describe('retention and company deletion survive every restore', () => {
  it('restore --into an older backup', async () => {
    const [r, d] = [await seedEvents('ret-into', RETAIN), await seedEvents('del-into', {})];
    await backupFull({ configPath: inst.configPath });
    const e = await applyTo(r);
    expect(e.deleted).toHaveLength(6);
    expect(e.stripped).toHaveLength(6);
    expect((await previewTenantDelete(admin, d.slug)).total).toBeGreaterThan(20);
    await deleteCompany(d);
    await expectGone(db.adminUrl, d, true);
    const copies = await admin.query(
      `SELECT DISTINCT table_name FROM change_log WHERE tenant_id = $1 AND op IN ('I', 'U')
          AND table_name NOT IN ('audit_log', 'security_ledger')`,
      [d.id],
    );
    expect(copies.rows).toEqual([]);
    const into = `${db.name}_ri`.slice(0, 63);
    made.push(into);
    await restoreInto({ ...cfg(), into });
    await expectRetained(urlOf(db, into), r, e);
    await expectGone(urlOf(db, into), d);
  });

  it('restore --at a point before them', async () => {
    const [r, d] = [await seedEvents('ret-at', RETAIN), await seedEvents('del-at', {})];
    await backupFull({ configPath: inst.configPath });
    await new Promise((res) => setTimeout(res, 50));
    const at = new Date().toISOString();
    await new Promise((res) => setTimeout(res, 50));
    const e = await applyTo(r);
    await deleteCompany(d);
    await backupIncremental({ configPath: inst.configPath });
    const into = `${db.name}_rat`.slice(0, 63);
    made.push(into);
    const res = await restoreInto({ ...cfg(), into, at });
    expect(res.plan.pointInTime).toBe(at);
    await expectRetained(urlOf(db, into), r, e);
    await expectGone(urlOf(db, into), d);
  });

  it('restore --tenant re-applies retention, and refuses a deleted company', async () => {
    const [r, d] = [await seedEvents('ret-tenant', RETAIN), await seedEvents('del-tenant', {})];
    await backupFull({ configPath: inst.configPath });
    const e = await applyTo(r);
    await deleteCompany(d);
    await restoreTenant({ ...cfg(), tenant: r.slug });
    await expectRetained(db.adminUrl, r, e);
    await expect(restoreTenant({ ...cfg(), tenant: d.id })).rejects.toThrow(
      /was deleted at .*does not bring it back/,
    );
    await expectGone(db.adminUrl, d);
  });

  it('restore --drill checks both effects', async () => {
    const [r, d] = [await seedEvents('ret-drill', RETAIN), await seedEvents('del-drill', {})];
    await backupFull({ configPath: inst.configPath });
    await applyTo(r);
    await deleteCompany(d);
    const res = await restoreDrill({ ...cfg() });
    expect(res.checks.filter((c) => !c.ok)).toEqual([]);
    const check = res.checks.find((c) => c.name === 'security-ledger')!;
    expect(check.detail).toContain(`tenant.deleted ${d.id}`);
    expect(check.detail).toContain(`attendance.retention ${r.id}`);
  });

  it('restore --in-place', async () => {
    const [r, d] = [await seedEvents('ret-inplace', RETAIN), await seedEvents('del-inplace', {})];
    await backupFull({ configPath: inst.configPath });
    const e = await applyTo(r);
    await deleteCompany(d);
    await install.close();
    await admin.end();
    await restoreInPlace({ ...cfg(), dropOld: true });
    admin = createPool(db.adminUrl, 4);
    install = await openInstall({ configPath: inst.configPath });
    await expectRetained(db.adminUrl, r, e);
    await expectGone(db.adminUrl, d);
  });
});
