import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupFull } from '../../src/core/backup/full.js';
import { backupIncremental } from '../../src/core/backup/incremental.js';
import { restoreInto } from '../../src/core/restore/execute.js';
import { restoreTenant } from '../../src/core/restore/tenant.js';
import { restoreDrill } from '../../src/core/restore/drill.js';
import { restoreInPlace } from '../../src/core/restore/in-place.js';
import { executeErasurePlan, planErasureFor } from '../../src/core/dsar/service.js';
import { describePlan } from '../../src/core/dsar/erase.js';
import { openInstall, type Install } from '../../src/core/install.js';
import { createPool, type Pool, type Queryable } from '../../src/db/pool.js';
import type { TestInstall } from '../helpers/backup.js';
import type { TestDatabase } from '../helpers/db.js';
import { restoreFixture, urlOf, type RestoreFixture } from '../helpers/restore.js';
import { seedCompany, type Company } from '../helpers/server.js';
import { inCompany } from '../../src/core/accounts/tenants.js';
import { changeUser } from '../../src/core/accounts/users.js';

let f: RestoreFixture;
let db: TestDatabase;
let admin: Pool;
let inst: TestInstall;
let install: Install;
let hmacKey: string;
const made: string[] = [];
const cfg = () => ({ configPath: inst.configPath, identityFile: inst.identityFile });
const actor = 'cli:compliance@test';

beforeAll(async () => {
  f = await restoreFixture('dsarerase');
  ({ db, admin, inst, install, hmacKey } = f);
});

afterAll(async () => f?.close(made, { admin, install }));

interface Person {
  co: Company;
  /** Everything that identifies the subject: none of it may survive an erasure anywhere. */
  identifiers: string[];
}

/**
 * A company whose employee (Alex) has identifying data everywhere the registry lists: name, number and
 * email, a login with an API key, a face template, GPS positions, corrections with free text, events older
 * than the 6-year hold.
 */
async function person(slug: string): Promise<Person> {
  const co = await seedCompany(admin, hmacKey, slug);
  const name = `Alexandra Quist ${slug}`;
  const email = `alexandra.${slug}@example.org`;
  const number = `EMP-${slug}-7731`;
  const device = `phone-of-alexandra-${slug}`;
  await admin.query(
    `UPDATE employees SET full_name = $2, email = $3, employee_number = $4, face_template = '\\x0102',
            face_key_id = 'k1', face_enrolled_at = now() WHERE id = $1`,
    [co.employeeId, name, email, number],
  );
  await admin.query(`UPDATE users SET display_name = $2, last_login_at = now() WHERE id = $1`, [
    co.users.employee.id,
    name,
  ]);
  await admin.query(
    `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, latitude, longitude, accuracy_m,
                                    site_id, geofence, distance_m, method, device_id)
     VALUES ($1, $2, 'check_in', '2015-01-05T08:00:00Z', 52.52, 13.40, 5, $3, 'inside', 10, 'gps', $4),
            ($1, $2, 'check_out', '2015-01-05T16:00:00Z', 52.52, 13.40, 5, $3, 'inside', 10, 'gps', $4),
            ($1, $2, 'check_in', now() - interval '2 days', 52.5201, 13.4051, 5, $3, 'inside', 12, 'gps', $4),
            ($1, $2, 'check_out', now() - interval '2 days' + interval '8 hours', 52.5202, 13.4052, 6, $3, 'outside', 150, 'gps', $4)`,
    [co.id, co.employeeId, co.siteId, device],
  );
  await admin.query(
    `INSERT INTO correction_requests (tenant_id, employee_id, requested_by, action, proposed_kind, proposed_occurred_at, reason, created_at)
     VALUES ($1, $2, $3, 'add', 'check_out', '2015-01-06T16:00:00Z', $5, '2015-01-07T09:00:00Z'),
            ($1, $2, $3, 'add', 'check_out', now() - interval '1 day', $4, now())`,
    [co.id, co.employeeId, co.users.employee.id, `${name} left at 16:00, call ${email}`, `forgot ${device}`],
  );
  // Through the audited service too: the entry it writes must not keep the name (audit entries stay).
  await inCompany(install.admin, slug, actor, (tx) =>
    changeUser(tx, co.users.employee.id, { displayName: name }),
  );
  await admin.query(
    `INSERT INTO api_keys (tenant_id, name, prefix, secret_hmac, scopes, created_by)
     VALUES ($1, 'alex-kiosk', $2, '\\x00', '{read}', $3)`,
    [co.id, `atx_${slug.replace(/-/g, '').slice(0, 8)}`, `user:${co.users.employee.id}`],
  );
  return { co, identifiers: [name, email, number, device, co.users.employee.email] };
}

/** Every text and jsonb column of every table of the database, searched for each identifier. */
async function traces(q: Queryable, identifiers: string[]): Promise<string[]> {
  const { rows: cols } = await q.query<{ t: string; c: string }>(
    `SELECT table_name AS t, column_name AS c FROM information_schema.columns
      WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'character', 'jsonb', 'ARRAY')`,
  );
  expect(cols.length).toBeGreaterThan(40);
  const found: string[] = [];
  for (const { t, c } of cols) {
    const { rows } = await q.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM "${t}" WHERE "${c}"::text ILIKE ANY ($1::text[])`,
      [identifiers.map((i) => `%${i.replace(/[%_\\]/g, '\\$&')}%`)],
    );
    if (rows[0]!.n) found.push(`${t}.${c} (${rows[0]!.n})`);
  }
  return found;
}

async function erase(p: Person) {
  const plan = await planErasureFor(install, { tenant: p.co.slug, employeeId: p.co.employeeId });
  return executeErasurePlan(install, plan, { actor, legalBasis: 'GDPR Art. 17(1)(a)' });
}

/** The subject's state in a database: erased (pseudonymised, no GPS, login closed) or not. */
async function expectErased(q: Queryable, p: Person): Promise<void> {
  expect(await traces(q, p.identifiers)).toEqual([]);
  const { rows: e } = await q.query<{ full_name: string; face: boolean; email: string | null }>(
    'SELECT full_name, face_template IS NOT NULL AS face, email FROM employees WHERE id = $1',
    [p.co.employeeId],
  );
  expect(e[0]).toMatchObject({
    full_name: expect.stringMatching(/^Erased [0-9a-f]{12}$/),
    face: false,
    email: null,
  });
  const { rows: ev } = await q.query<{ n: number; gps: number; verdicts: string[] }>(
    `SELECT count(*)::int AS n, count(latitude)::int AS gps, array_agg(geofence ORDER BY occurred_at) AS verdicts
       FROM attendance_events WHERE employee_id = $1`,
    [p.co.employeeId],
  );
  // The two events inside the hold stay under the pseudonym with their verdicts; the 2015 ones are gone.
  expect(ev[0]).toEqual({ n: 2, gps: 0, verdicts: ['inside', 'outside'] });
  const { rows: u } = await q.query<{ disabled: boolean; hash: string | null }>(
    'SELECT disabled_at IS NOT NULL AS disabled, password_hash AS hash FROM users WHERE id = $1',
    [p.co.users.employee.id],
  );
  expect(u[0]).toEqual({ disabled: true, hash: null });
  const { rows: k } = await q.query<{ revoked: boolean }>(
    `SELECT revoked_at IS NOT NULL AS revoked FROM api_keys WHERE created_by = $1`,
    [`user:${p.co.users.employee.id}`],
  );
  expect(k).toEqual([{ revoked: true }]);
}

describe('dsar erase', () => {
  it('plans, then executes exactly the plan in one transaction: no trace of the person remains', async () => {
    const p = await person('erase-basic');
    expect(await traces(admin, p.identifiers)).not.toEqual([]);
    const plan = await planErasureFor(install, { tenant: p.co.slug, email: p.identifiers[1]! });
    expect(plan.counts).toMatchObject({
      eventsDelete: 2,
      eventsKeep: 2,
      eventsPosition: 2,
      correctionsDelete: 1,
      correctionsKeep: 1,
      users: 1,
      apiKeys: 1,
      teamManagers: 0,
      face: true,
    });
    const text = describePlan(plan).join('\n');
    expect(text).toContain('2 attendance event(s) before');
    expect(text).toContain('Kept under the legal hold (6 years');
    expect(text).toMatch(/full backups after 30 days/);
    // A dry run changes nothing.
    expect(await traces(admin, p.identifiers)).not.toEqual([]);
    const r = await executeErasurePlan(install, plan, { actor, legalBasis: 'GDPR Art. 17(1)(a)' });
    await expectErased(admin, p);
    expect(r.receiptText).toContain(`Erasure receipt ${r.requestId}`);
    const { rows: req } = await admin.query<{ status: string; receipt: { pseudonym: string } }>(
      'SELECT status, receipt FROM dsar_requests WHERE id = $1',
      [r.requestId],
    );
    expect(req[0]).toMatchObject({ status: 'done', receipt: { pseudonym: plan.pseudonym } });
    const { rows: a } = await admin.query<{ actor: string; details: Record<string, unknown> }>(
      `SELECT actor, details FROM audit_log WHERE action = 'dsar.erase' AND entity_id = $1`,
      [p.co.employeeId],
    );
    expect(a).toEqual([
      {
        actor,
        details: expect.objectContaining({ legalBasis: 'GDPR Art. 17(1)(a)', requestId: r.requestId }),
      },
    ]);
    const { rows: l } = await admin.query<{ entity_id: string; data: Record<string, unknown> }>(
      `SELECT entity_id::text, data FROM security_ledger WHERE kind = 'dsar.erasure' AND tenant_id = $1`,
      [p.co.id],
    );
    expect(l).toHaveLength(1);
    expect(l[0]!.entity_id).toBe(
      [0, 8, 12, 16, 20].map((s, i, a) => plan.subjectHash.slice(s, a[i + 1] ?? 32)).join('-'),
    );
    // The mirror file holds the entry too (the ledger a new server's restore re-applies).
    expect(await readFile(`${inst.dataDir}/security-ledger.jsonl`, 'utf8')).toContain(plan.pseudonym);
  });

  it('refuses a plan the data moved away from, and erases nothing', async () => {
    const p = await person('erase-moved');
    const plan = await planErasureFor(install, { tenant: p.co.slug, employeeId: p.co.employeeId });
    await admin.query(
      `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, geofence, method)
       VALUES ($1, $2, 'check_in', now(), 'unknown', 'kiosk')`,
      [p.co.id, p.co.employeeId],
    );
    await expect(executeErasurePlan(install, plan, { actor, legalBasis: 'x' })).rejects.toMatchObject({
      code: 'DSAR_PLAN_CHANGED',
    });
    expect((await traces(admin, p.identifiers)).length).toBeGreaterThan(3);
  });
});

describe('erasures survive restores', () => {
  it('restore --into a new database (the whole chain) re-applies the erasure', async () => {
    const p = await person('erase-into');
    await backupFull({ configPath: inst.configPath });
    await erase(p);
    const into = `${db.name}_ei`.slice(0, 63);
    made.push(into);
    await restoreInto({ ...cfg(), into });
    const c = createPool(urlOf(db, into), 1);
    try {
      await expectErased(c, p);
    } finally {
      await c.end();
    }
  });

  it('restore --at a point before the erasure re-applies it', async () => {
    const p = await person('erase-at');
    await backupFull({ configPath: inst.configPath });
    await admin.query(`UPDATE employees SET hourly_rate_minor = 2100 WHERE id = $1`, [p.co.employeeId]);
    await new Promise((r) => setTimeout(r, 50));
    const at = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 50));
    await erase(p);
    await backupIncremental({ configPath: inst.configPath });
    const into = `${db.name}_eat`.slice(0, 63);
    made.push(into);
    const r = await restoreInto({ ...cfg(), into, at });
    expect(r.plan.pointInTime).toBe(at);
    const c = createPool(urlOf(db, into), 1);
    try {
      await expectErased(c, p);
      const { rows } = await c.query<{ rate: number }>(
        'SELECT hourly_rate_minor::int AS rate FROM employees WHERE id = $1',
        [p.co.employeeId],
      );
      expect(rows[0]!.rate).toBe(2100);
    } finally {
      await c.end();
    }
  });

  it('restore --tenant (the live database) re-applies it in the same transaction', async () => {
    const p = await person('erase-tenant');
    await backupFull({ configPath: inst.configPath });
    await erase(p);
    await restoreTenant({ ...cfg(), tenant: p.co.slug });
    await expectErased(admin, p);
  });

  it('restore --drill re-applies it and its ledger check names the erasure', async () => {
    const p = await person('erase-drill');
    await backupFull({ configPath: inst.configPath });
    const done = await erase(p);
    const r = await restoreDrill({ ...cfg() });
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
    const check = r.checks.find((c) => c.name === 'security-ledger')!;
    expect(check.detail).toContain(`dsar.erasure `);
    expect(done.plan.pseudonym).toMatch(/^[0-9a-f]{12}$/);
  });

  // Last: it swaps the live database, so the pools of the other tests are closed first.
  it('restore --in-place re-applies it before the swap', async () => {
    const p = await person('erase-inplace');
    await backupFull({ configPath: inst.configPath });
    await erase(p);
    await install.close();
    await admin.end();
    await restoreInPlace({ ...cfg(), dropOld: true });
    admin = createPool(db.adminUrl, 4);
    install = await openInstall({ configPath: inst.configPath });
    await expectErased(admin, p);
  });
});
