import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import type { TestDatabase } from '../helpers/db.js';
import {
  seedCompany,
  type Company,
  type TestInstall,
  serverFixture,
  type ServerFixture,
} from '../helpers/server.js';
import { connectClient, createPool, withTenant, type Pool, type Queryable } from '../../src/db/pool.js';

let f: ServerFixture;
let db: TestDatabase;
let ti: TestInstall;
let app: FastifyInstance;
let admin: Pool;
let a: Company;
let b: Company;
/** One connection as the app role, so that what a statement leaves behind on it is visible. */
let conn: pg.Client;

beforeAll(async () => {
  f = await serverFixture('checkin_fast', { company: 'fast-a' });
  ({ db, ti, admin, app, a } = f);
  b = await seedCompany(admin, ti.secrets.apiKeyHmacKey, 'fast-b');
  conn = await connectClient(db.appUrl);
});
afterAll(async () => {
  await conn?.end();
  await f?.close();
});

const CONTEXT = 'SELECT * FROM attendux_checkin_context($1, $2, $3, $4)';
const RECORD = `SELECT key_live, fresh, id FROM attendux_record_checkin($1, $2, false, $3, $4, 'check_in', NULL, NULL,
  NULL, NULL, 'not_required', NULL, 'kiosk', NULL, NULL, false, 'apikey:test', 'attendux.check_in', NULL, NULL, '{}')`;

/** Load the context as the app does, and return its fingerprint. */
const contextVersion = async (tenant: string, key: string, employee: string) => {
  const { rows } = await conn.query<{ version: string }>(CONTEXT, [tenant, key, false, employee]);
  return rows[0]!.version;
};

const counts = async (tenant: string) => {
  const { rows } = await admin.query<{ events: number; audit: number }>(
    `SELECT (SELECT count(*)::int FROM attendance_events WHERE tenant_id = $1) AS events,
            (SELECT count(*)::int FROM audit_log WHERE tenant_id = $1) AS audit`,
    [tenant],
  );
  return rows[0]!;
};

const nothingVisible = async (on: Queryable = conn) => {
  const setting = await on.query<{ t: string | null }>(
    "SELECT nullif(current_setting('attendux.tenant_id', true), '') AS t",
  );
  const emps = await on.query('SELECT id FROM employees');
  return { setting: setting.rows[0]!.t, employees: emps.rowCount };
};

const checkIn = (key: string, employeeId: string) =>
  app.inject({
    method: 'POST',
    url: '/api/v1/attendance/check-in',
    headers: { authorization: `Bearer ${key}` },
    payload: { employeeId },
  });

describe('kiosk check-in in two statements', () => {
  it('loads the employee under the company set inside the context statement', async () => {
    const { rows } = await conn.query<{ key_live: boolean; id: string; sites: unknown[] }>(CONTEXT, [
      a.id,
      a.keyIds.checkIn,
      false,
      a.employeeId,
    ]);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.key_live).toBe(true);
    expect(rows[0]!.id).toBe(a.employeeId);
    expect(rows[0]!.sites).toHaveLength(1);
  });

  it('leaves no company setting behind on the connection after the context statement', async () => {
    await conn.query(CONTEXT, [a.id, a.keyIds.checkIn, true, a.employeeId]);
    expect(await nothingVisible()).toEqual({ setting: null, employees: 0 });
  });

  it('leaves no company setting behind on the connection after the record statement', async () => {
    const version = await contextVersion(a.id, a.keyIds.checkIn, a.employeeId);
    const { rows } = await conn.query(RECORD, [a.id, a.keyIds.checkIn, a.employeeId, version]);
    expect(rows).toEqual([expect.objectContaining({ key_live: true, fresh: true })]);
    expect(await nothingVisible()).toEqual({ setting: null, employees: 0 });
  });

  it('hides another company’s employee from the context statement', async () => {
    const { rows } = await conn.query<{ key_live: boolean; id: string | null }>(CONTEXT, [
      a.id,
      a.keyIds.checkIn,
      false,
      b.employeeId,
    ]);
    expect(rows).toEqual([expect.objectContaining({ key_live: true, id: null })]);
  });

  it('refuses a key revoked between loading the context and recording the check-in', async () => {
    const key = await admin.query<{ id: string }>(
      `INSERT INTO api_keys (tenant_id, name, prefix, secret_hmac, scopes, created_by)
       VALUES ($1, 'kiosk-2', 'revokeme', '\\x00', '{check-in}', 'test') RETURNING id`,
      [a.id],
    );
    const keyId = key.rows[0]!.id;
    const ctx = await conn.query<{ key_live: boolean; version: string }>(CONTEXT, [
      a.id,
      keyId,
      false,
      a.employeeId,
    ]);
    expect(ctx.rows[0]!.key_live).toBe(true);
    await admin.query('UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1 AND id = $2', [
      a.id,
      keyId,
    ]);
    const before = await counts(a.id);
    const rec = await conn.query(RECORD, [a.id, keyId, a.employeeId, ctx.rows[0]!.version]);
    expect(rec.rows).toEqual([expect.objectContaining({ key_live: false, id: null })]);
    expect(await counts(a.id)).toEqual(before);
  });

  it('refuses to record for another company with this company’s key', async () => {
    const before = await counts(b.id);
    const version = await contextVersion(b.id, b.keyIds.checkIn, b.employeeId);
    const rec = await conn.query(RECORD, [b.id, a.keyIds.checkIn, b.employeeId, version]);
    expect(rec.rows).toEqual([expect.objectContaining({ key_live: false, id: null })]);
    expect(await counts(b.id)).toEqual(before);
  });

  it('refuses to record another company’s employee under this company', async () => {
    const before = await counts(a.id);
    // Under company a, company b's employee does not exist: no fingerprint can match, nothing is written.
    const version = await contextVersion(b.id, b.keyIds.checkIn, b.employeeId);
    const rec = await conn.query(RECORD, [a.id, a.keyIds.checkIn, b.employeeId, version]);
    expect(rec.rows).toEqual([expect.objectContaining({ key_live: true, fresh: false, id: null })]);
    expect(await counts(a.id)).toEqual(before);
  });

  it('writes nothing when the settings changed after the context was loaded', async () => {
    const version = await contextVersion(a.id, a.keyIds.checkIn, a.employeeId);
    await admin.query(
      `INSERT INTO tenant_settings (tenant_id, key, value) VALUES ($1, 'geofence.mode', '"reject"')`,
      [a.id],
    );
    try {
      const before = await counts(a.id);
      const rec = await conn.query(RECORD, [a.id, a.keyIds.checkIn, a.employeeId, version]);
      expect(rec.rows).toEqual([expect.objectContaining({ key_live: true, fresh: false, id: null })]);
      expect(await counts(a.id)).toEqual(before);
    } finally {
      await admin.query(`DELETE FROM tenant_settings WHERE tenant_id = $1 AND key = 'geofence.mode'`, [a.id]);
    }
  });

  it('judges a kiosk check-in by settings changed after the previous check-in', async () => {
    const far = { employeeId: a.employeeId, position: { latitude: 48.1, longitude: 11.5, accuracy: 10 } };
    const post = () =>
      app.inject({
        method: 'POST',
        url: '/api/v1/attendance/check-in',
        headers: { authorization: `Bearer ${a.keys.checkIn}` },
        payload: far,
      });
    const flagged = await post();
    expect(flagged.statusCode, flagged.body).toBe(201);
    expect(flagged.json()).toMatchObject({ geofence: 'outside', flagged: true });
    await admin.query(
      `INSERT INTO tenant_settings (tenant_id, key, value) VALUES ($1, 'geofence.mode', '"reject"')`,
      [a.id],
    );
    try {
      expect((await post()).statusCode).toBe(422);
      await admin.query(`DELETE FROM tenant_settings WHERE tenant_id = $1 AND key = 'geofence.mode'`, [a.id]);
      // And back: a refusal from the previous context is not repeated once the company allows it again.
      expect((await post()).statusCode).toBe(201);
    } finally {
      await admin.query(`DELETE FROM tenant_settings WHERE tenant_id = $1 AND key = 'geofence.mode'`, [a.id]);
    }
  });

  it('refuses a kiosk check-in for an employee deactivated after the previous check-in', async () => {
    const emp = await admin.query<{ id: string }>(
      `INSERT INTO employees (tenant_id, full_name, employee_number) VALUES ($1, 'Kim', 'E9') RETURNING id`,
      [a.id],
    );
    const id = emp.rows[0]!.id;
    expect((await checkIn(a.keys.checkIn, id)).statusCode).toBe(201);
    await admin.query(`UPDATE employees SET status = 'inactive' WHERE tenant_id = $1 AND id = $2`, [
      a.id,
      id,
    ]);
    const before = await counts(a.id);
    expect((await checkIn(a.keys.checkIn, id)).statusCode).toBe(409);
    expect(await counts(a.id)).toEqual(before);
  });

  it('answers 404 to a kiosk naming another company’s employee and writes nothing', async () => {
    const before = [await counts(a.id), await counts(b.id)];
    const res = await checkIn(a.keys.checkIn, b.employeeId);
    expect(res.statusCode).toBe(404);
    expect([await counts(a.id), await counts(b.id)]).toEqual(before);
  });

  it('commits the kiosk check-in and its audit entry in the same transaction', async () => {
    const res = await checkIn(a.keys.checkIn, a.employeeId);
    expect(res.statusCode, res.body).toBe(201);
    const id = res.json<{ id: number }>().id;
    const ev = await admin.query<{ x: string }>(
      'SELECT xmin::text AS x FROM attendance_events WHERE tenant_id = $1 AND id = $2',
      [a.id, id],
    );
    const audit = await admin.query<{ x: string; actor: string; ip_hash: string }>(
      `SELECT xmin::text AS x, actor, ip_hash FROM audit_log
        WHERE tenant_id = $1 AND action = 'attendance.check_in' AND entity_id = $2`,
      [a.id, String(id)],
    );
    expect(audit.rows).toHaveLength(1);
    expect(audit.rows[0]!.x).toBe(ev.rows[0]!.x);
    expect(audit.rows[0]!.actor).toMatch(/^apikey:/);
    expect(audit.rows[0]!.ip_hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('keeps the audit chain of the company intact across fast-path check-ins', async () => {
    for (let i = 0; i < 3; i++) expect((await checkIn(a.keys.checkIn, a.employeeId)).statusCode).toBe(201);
    const { rows } = await admin.query<{ ok: boolean }>(
      `SELECT bool_and(l.prev_hash = p.hash) AS ok FROM audit_log l
         JOIN audit_log p ON p.tenant_id = l.tenant_id AND p.seq = l.seq - 1 WHERE l.tenant_id = $1`,
      [a.id],
    );
    expect(rows[0]!.ok).toBe(true);
  });
});

describe('entering a company transaction with bound parameters', () => {
  // One connection, so the statement after the transaction runs where the transaction ran.
  let one: Pool;
  beforeAll(() => {
    one = createPool(db.appUrl, 1);
  });
  afterAll(async () => {
    await one?.end();
  });

  it('sets the company for the transaction only', async () => {
    const inside = await withTenant(
      one,
      a.id,
      async (c) => (await c.query('SELECT DISTINCT tenant_id FROM employees')).rows,
    );
    expect(inside).toEqual([{ tenant_id: a.id }]);
    expect(await nothingVisible(one)).toEqual({ setting: null, employees: 0 });
  });

  it('refuses a company id that is not a uuid before running anything', async () => {
    let ran = false;
    await expect(
      withTenant(one, "x'; DROP TABLE employees; --", () => {
        ran = true;
        return Promise.resolve();
      }),
    ).rejects.toMatchObject({ code: '22P02' });
    expect(ran).toBe(false);
    expect(await nothingVisible(one)).toEqual({ setting: null, employees: 0 });
  });
});
