import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import {
  login,
  ORIGIN,
  PASSWORD,
  testApp,
  type Company,
  type TestInstall,
  serverFixture,
  type ServerFixture,
} from '../helpers/server.js';
import { enterMaintenance, leaveMaintenance } from '../../src/core/maintenance.js';
import type { Pool } from '../../src/db/pool.js';
import { parseApiKey } from '../../src/crypto/apikey.js';

let f: ServerFixture;
let ti: TestInstall;
let app: FastifyInstance;
let admin: Pool;
let a: Company;
const settingsChanged: string[] = [];

beforeAll(async () => {
  f = await serverFixture('domain', {
    app: { hooks: { onTenantSettingsChanged: (id) => settingsChanged.push(id) }, maintenanceTtlMs: 0 },
  });
  ({ ti, admin, app, a } = f);
});
afterAll(async () => {
  await f?.close();
});

const kiosk = (path: string, payload: object) =>
  app.inject({
    method: 'POST',
    url: `/api/v1/attendance/${path}`,
    headers: { authorization: `Bearer ${a.keys.checkIn}` },
    payload,
  });
const as = async (role: Parameters<typeof login>[2]) => ({
  cookie: await login(app, a, role),
  origin: ORIGIN,
});
const setSettings = async (patch: object) => {
  const res = await app.inject({
    method: 'PATCH',
    url: '/api/v1/settings',
    headers: await as('owner'),
    payload: patch,
  });
  expect(res.statusCode, res.body).toBe(200);
};

describe('check-in and geofence', () => {
  it('judges a position inside the site radius as inside, unflagged', async () => {
    const res = await kiosk('check-in', {
      employeeId: a.employeeId,
      position: { latitude: 52.5201, longitude: 13.405, accuracy: 10 },
    });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ geofence: 'inside', flagged: false, siteId: a.siteId, method: 'gps' });
    expect(res.json().distanceM).toBeCloseTo(11.1, 0);
  });

  it('flags a position whose accuracy circle straddles the boundary', async () => {
    const res = await kiosk('check-in', {
      employeeId: a.employeeId,
      position: { latitude: 52.5209, longitude: 13.405, accuracy: 30 },
    });
    expect(res.json()).toMatchObject({ geofence: 'unknown', flagged: true });
  });

  it('flags an outside position by default and rejects it when the company says reject', async () => {
    const far = { employeeId: a.employeeId, position: { latitude: 52.53, longitude: 13.405, accuracy: 5 } };
    expect((await kiosk('check-in', far)).json()).toMatchObject({ geofence: 'outside', flagged: true });
    await setSettings({ 'geofence.mode': 'reject' });
    try {
      const res = await kiosk('check-in', far);
      expect(res.statusCode).toBe(422);
      expect(res.json().error.code).toBe('OUTSIDE_GEOFENCE');
    } finally {
      await setSettings({ 'geofence.mode': 'flag' });
    }
  });

  it('refuses invalid coordinates with 400', async () => {
    for (const position of [
      { latitude: 91, longitude: 0, accuracy: 1 },
      { latitude: 0, longitude: -181, accuracy: 1 },
      { latitude: 0, longitude: 0, accuracy: -1 },
      { latitude: '52', longitude: 0, accuracy: 1 },
    ]) {
      const res = await kiosk('check-in', { employeeId: a.employeeId, position });
      expect(res.statusCode).toBe(400);
    }
  });

  it('requires a position when the company says so', async () => {
    await setSettings({ 'geofence.requirePosition': true });
    try {
      const res = await kiosk('check-out', { employeeId: a.employeeId });
      expect(res.json().error.code).toBe('POSITION_REQUIRED');
    } finally {
      await setSettings({ 'geofence.requirePosition': false });
    }
  });
});

describe('face verification', () => {
  const template = Array.from({ length: 128 }, (_, i) => Math.cos(i / 3));
  const similar = template.map((v, i) => v + (i % 7 === 0 ? 0.05 : 0));
  const different = template.map((v, i) => (i % 2 ? -v : v));

  it('stores the template encrypted and never returns it', async () => {
    const h = await as('hr');
    const put = await app.inject({
      method: 'PUT',
      url: `/api/v1/employees/${a.employeeId}/face`,
      headers: h,
      payload: { vector: template },
    });
    expect(put.statusCode).toBe(204);
    const { rows } = await admin.query<{ face_template: Buffer; face_key_id: string }>(
      'SELECT face_template, face_key_id FROM employees WHERE id = $1',
      [a.employeeId],
    );
    expect(rows[0]!.face_key_id).toBe('k1');
    const raw = Buffer.from(Float32Array.from(template).buffer);
    expect(rows[0]!.face_template.includes(raw.subarray(0, 16))).toBe(false);
    expect(rows[0]!.face_template.length).toBe(12 + 16 + 128 * 4);
    const get = await app.inject({ url: `/api/v1/employees/${a.employeeId}`, headers: h });
    expect(get.json()).toMatchObject({ faceEnrolled: true });
    expect(get.body).not.toMatch(/face_template|vector|template"/);
    const audit = await admin.query(
      `SELECT details::text AS d FROM audit_log WHERE action = 'employee.face_enroll'`,
    );
    expect(audit.rows[0].d).not.toContain(String(template[1]).slice(0, 8));
  });

  it('accepts a matching face and rejects a different one', async () => {
    const ok = await kiosk('check-in', { employeeId: a.employeeId, face: similar });
    expect(ok.statusCode).toBe(201);
    expect(ok.json().method).toBe('face');
    expect(ok.json().faceScore).toBeGreaterThan(0.99);
    const bad = await kiosk('check-in', { employeeId: a.employeeId, face: different });
    expect(bad.statusCode).toBe(422);
    expect(bad.json().error.code).toBe('FACE_MISMATCH');
  });

  it('refuses a face check for an employee without a template', async () => {
    const res = await kiosk('check-in', { employeeId: a.otherEmployeeId, face: similar });
    expect(res.json().error.code).toBe('FACE_NOT_ENROLLED');
  });
});

describe('corrections', () => {
  it('lets an employee ask and a manager of the team approve, applying and auditing both', async () => {
    const emp = await as('employee');
    const asked = await app.inject({
      method: 'POST',
      url: '/api/v1/corrections',
      headers: emp,
      payload: {
        action: 'add',
        proposedKind: 'check_in',
        proposedOccurredAt: '2026-03-02T07:00:00Z',
        reason: 'phone was dead',
      },
    });
    expect(asked.statusCode).toBe(201);
    const id = asked.json<{ id: string }>().id;
    const self = await app.inject({
      method: 'POST',
      url: `/api/v1/corrections/${id}/approve`,
      headers: emp,
      payload: {},
    });
    expect(self.statusCode).toBe(403);
    const ok = await app.inject({
      method: 'POST',
      url: `/api/v1/corrections/${id}/approve`,
      headers: await as('manager'),
      payload: { note: 'fine' },
    });
    expect(ok.statusCode).toBe(200);
    expect(ok.json().status).toBe('approved');
    const ev = await admin.query('SELECT kind, method FROM attendance_events WHERE correction_id = $1', [id]);
    expect(ev.rows).toEqual([{ kind: 'check_in', method: 'manual' }]);
    const audit = await admin.query<{ action: string }>(
      `SELECT action FROM audit_log WHERE entity_id = $1 ORDER BY seq`,
      [id],
    );
    expect(audit.rows.map((r) => r.action)).toEqual(['correction.request', 'correction.approve']);
    const again = await app.inject({
      method: 'POST',
      url: `/api/v1/corrections/${id}/reject`,
      headers: await as('hr'),
      payload: {},
    });
    expect(again.statusCode).toBe(409);
  });
});

describe('timesheets and payroll', () => {
  beforeAll(async () => {
    // Europe/Berlin: 2026-01-05 08:00-18:30 local = 07:00-17:30 UTC (10.5 h: 2.5 h overtime); 2026-01-06 4 h.
    await admin.query(
      `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, geofence, method) VALUES
         ($1, $2, 'check_in', '2026-01-05T07:00:00Z', 'inside', 'gps'), ($1, $2, 'check_out', '2026-01-05T17:30:00Z', 'inside', 'gps'),
         ($1, $2, 'check_in', '2026-01-06T08:00:00Z', 'inside', 'gps'), ($1, $2, 'check_out', '2026-01-06T12:00:00Z', 'inside', 'gps'),
         ($1, $2, 'check_in', '2026-01-07T23:30:00Z', 'inside', 'gps'), ($1, $2, 'check_out', '2026-01-08T01:30:00Z', 'inside', 'gps')`,
      [a.id, a.employeeId],
    );
  });

  it('computes worked minutes and overtime per local day', async () => {
    const res = await app.inject({
      url: '/api/v1/timesheets?from=2026-01-05&to=2026-01-08',
      headers: await as('employee'),
    });
    expect(res.statusCode).toBe(200);
    expect(res.json().days).toEqual([
      { day: '2026-01-05', workedMinutes: 630, regularMinutes: 480, overtimeMinutes: 150 },
      { day: '2026-01-06', workedMinutes: 240, regularMinutes: 240, overtimeMinutes: 0 },
      // 23:30 UTC on the 7th is 00:30 on the 8th in Berlin.
      { day: '2026-01-08', workedMinutes: 120, regularMinutes: 120, overtimeMinutes: 0 },
    ]);
  });

  it('exports gross pay in integer minor units as JSON and CSV, audited', async () => {
    const h = await as('hr');
    const json = await app.inject({
      url: '/api/v1/payroll/export?from=2026-01-05&to=2026-01-08',
      headers: h,
    });
    const line = json
      .json<{ employees: { employeeId: string }[] }>()
      .employees.find((e) => e.employeeId === a.employeeId);
    // 840 regular min at 20.00/h = 28000; 150 overtime min at 150 % = 7500.
    expect(line).toMatchObject({
      regularMinutes: 840,
      overtimeMinutes: 150,
      hourlyRateMinor: 2000,
      grossPayMinor: 35500,
      currency: 'EUR',
    });
    const csv = await app.inject({
      url: '/api/v1/payroll/export?from=2026-01-05&to=2026-01-08&format=csv',
      headers: h,
    });
    expect(csv.headers['content-type']).toContain('text/csv');
    expect(csv.body).toContain(`${a.employeeId},E1,Alex Example,840,150,2000,150,35500,355.00,EUR`);
    const audit = await admin.query(
      `SELECT count(*)::int AS n FROM audit_log WHERE tenant_id = $1 AND action = 'payroll.export'`,
      [a.id],
    );
    expect(audit.rows[0].n).toBe(2);
  });

  it('refuses a range longer than 93 days or reversed', async () => {
    const h = await as('hr');
    const long = await app.inject({
      url: '/api/v1/payroll/export?from=2026-01-01&to=2026-06-01',
      headers: h,
    });
    const reversed = await app.inject({
      url: '/api/v1/payroll/export?from=2026-02-01&to=2026-01-01',
      headers: h,
    });
    expect([long.statusCode, reversed.statusCode]).toEqual([400, 400]);
  });
});

describe('settings and audit', () => {
  it('audits a settings change and calls the hook after commit', async () => {
    settingsChanged.length = 0;
    await setSettings({ 'face.threshold': 0.9 });
    expect(settingsChanged).toEqual([a.id]);
    const { rows } = await admin.query(
      `SELECT details FROM audit_log WHERE tenant_id = $1 AND action = 'settings.update' ORDER BY seq DESC LIMIT 1`,
      [a.id],
    );
    expect(rows[0].details.changes['face.threshold']).toEqual({ from: 0.85, to: 0.9 });
  });

  it('does not call the hook when the change is refused', async () => {
    settingsChanged.length = 0;
    const res = await app.inject({
      method: 'PATCH',
      url: '/api/v1/settings',
      headers: await as('owner'),
      payload: { 'face.threshold': 2 },
    });
    expect(res.statusCode).toBe(400);
    expect(settingsChanged).toEqual([]);
  });

  it('writes the audit entry in the same transaction as the change', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/teams',
      headers: await as('admin'),
      payload: { name: 'Gamma' },
    });
    const id = res.json<{ id: string }>().id;
    const team = await admin.query<{ x: string }>('SELECT xmin::text AS x FROM teams WHERE id = $1', [id]);
    const audit = await admin.query<{ x: string; ip_hash: string; actor: string }>(
      `SELECT xmin::text AS x, ip_hash, actor FROM audit_log WHERE action = 'team.create' AND entity_id = $1`,
      [id],
    );
    expect(audit.rows[0]!.x).toBe(team.rows[0]!.x);
    expect(audit.rows[0]!.actor).toBe(`user:${a.users.admin.id}`);
    expect(audit.rows[0]!.ip_hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('writes no audit entry when the change fails in the database', async () => {
    const headers = await as('owner');
    const before = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM audit_log WHERE tenant_id = $1`,
      [a.id],
    );
    // The employee number collides on insert: the transaction rolls back as a whole.
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/employees',
      headers,
      payload: { fullName: 'Dup', employeeNumber: 'E1' },
    });
    expect(res.statusCode).toBe(409);
    const after = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM audit_log WHERE tenant_id = $1`,
      [a.id],
    );
    expect(after.rows[0]!.n).toBe(before.rows[0]!.n);
  });

  it('keeps the audit chain verifiable after API writes', async () => {
    const { verifyAuditChains } = await import('../../src/core/audit/service.js');
    const r = await verifyAuditChains(admin);
    expect(r.result.breaks).toEqual([]);
    expect(r.checked).toBeGreaterThan(10);
  });
});

describe('HTTP hardening and operations', () => {
  it('sends a nonce CSP with frame-ancestors none and the other security headers', async () => {
    const res = await app.inject({ url: '/' });
    const csp = String(res.headers['content-security-policy']);
    const nonces = [...csp.matchAll(/'nonce-([^']+)'/g)].map((m) => m[1]!);
    expect(nonces.length).toBeGreaterThan(0);
    // The page's stylesheet (and scripts, where it has any) carry this response's nonce.
    expect(nonces.some((n) => res.body.includes(`nonce="${n}"`))).toBe(true);
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("default-src 'none'");
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['x-frame-options']).toBe('DENY');
    // A page sends its referrer to its own origin only: form posts then carry a real Origin (not "null").
    expect(res.headers['referrer-policy']).toBe('same-origin');
    expect(res.headers['permissions-policy']).toContain('microphone=()');
    expect(res.headers['strict-transport-security']).toBeUndefined();
    const again = await app.inject({ url: '/' });
    expect(again.headers['content-security-policy']).not.toBe(csp);
  });

  it('sends the same hardening headers on JSON and error responses', async () => {
    for (const res of [
      await app.inject({ url: '/api/v1/me', headers: { authorization: `Bearer ${a.keys.read}` } }),
      await app.inject({ url: '/no/such/route' }),
      await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { nope: 1 } }),
    ]) {
      expect(res.headers['content-security-policy']).toContain("frame-ancestors 'none'");
      expect(res.headers['x-frame-options']).toBe('DENY');
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['referrer-policy']).toBe('no-referrer');
      expect(res.headers['permissions-policy']).toContain('camera=(self)');
      expect(res.headers['cache-control']).toBe('no-store');
    }
  });

  it('serves security.txt from the config', async () => {
    const res = await app.inject({ url: '/.well-known/security.txt' });
    expect(res.statusCode).toBe(200);
    expect(res.body).toMatch(/^Contact: mailto:security@example\.invalid$/m);
    expect(res.body).toMatch(/^Expires: \d{4}-/m);
  });

  it('reports readiness with the schema current', async () => {
    const res = await app.inject({ url: '/readyz' });
    expect(res.json()).toEqual({ status: 'ready' });
  });

  it('exposes Prometheus metrics with request counts, check-ins and failed logins', async () => {
    await app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { company: 'acme', email: 'x@y.z', password: 'nope' },
    });
    const res = await app.inject({ url: '/metrics' });
    expect(res.headers['content-type']).toContain('text/plain');
    expect(res.body).toMatch(/^attendux_check_ins_total [1-9]\d*$/m);
    expect(res.body).toMatch(/^attendux_failed_logins_total [1-9]\d*$/m);
    expect(res.body).toContain(
      'attendux_http_requests_total{method="POST",route="/api/v1/attendance/check-in",status="201"}',
    );
    expect(res.body).toContain('attendux_http_request_duration_seconds_bucket');
  });

  it('answers 503 with Retry-After while the maintenance file exists, except /healthz', async () => {
    await enterMaintenance(ti.dataDir, { reason: 'restore in progress', retryAfterSeconds: 120 });
    try {
      const res = await app.inject({
        url: '/api/v1/me',
        headers: { authorization: `Bearer ${a.keys.read}` },
      });
      expect(res.statusCode).toBe(503);
      expect(res.headers['retry-after']).toBe('120');
      expect(res.json().error.code).toBe('MAINTENANCE');
      expect((await app.inject({ url: '/readyz' })).statusCode).toBe(503);
      expect((await app.inject({ url: '/healthz' })).statusCode).toBe(200);
    } finally {
      await leaveMaintenance(ti.dataDir);
    }
    const res = await app.inject({ url: '/api/v1/me', headers: { authorization: `Bearer ${a.keys.read}` } });
    expect(res.statusCode).toBe(200);
  });

  it('answers 503, not 500, while the database is unreachable', async () => {
    const down = await testApp({
      ...ti,
      install: { ...ti.install, db: { ...ti.install.db, appUrl: 'postgres://nobody:x@127.0.0.1:1/none' } },
    });
    try {
      const res = await down.inject({
        url: '/api/v1/me',
        headers: { authorization: `Bearer ${a.keys.read}` },
      });
      expect(res.statusCode).toBe(503);
      expect(res.json().error.code).toBe('DB_UNAVAILABLE');
      expect((await down.inject({ url: '/readyz' })).statusCode).toBe(503);
    } finally {
      await down.close();
    }
  });

  it('writes JSON logs that contain no password, cookie, key or face vector', async () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString());
        cb();
      },
    });
    const logged = await testApp(ti, { logger: { stream, level: 'trace' } });
    try {
      const loginRes = await logged.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { company: a.slug, email: a.users.hr.email, password: PASSWORD },
      });
      const cookie = loginRes.cookies[0]!.value;
      await logged.inject({ url: '/api/v1/me', headers: { cookie: `atx_session=${cookie}` } });
      await logged.inject({
        method: 'POST',
        url: '/api/v1/attendance/check-in',
        headers: { authorization: `Bearer ${a.keys.checkIn}` },
        payload: { employeeId: a.employeeId, face: Array.from({ length: 64 }, () => 0.123456) },
      });
      await logged.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { company: a.slug, email: 'x', password: 'hunter2-secret' },
      });
    } finally {
      await logged.close();
    }
    const all = lines.join('');
    expect(lines.length).toBeGreaterThan(4);
    for (const l of lines) expect(() => JSON.parse(l) as unknown).not.toThrow();
    for (const secret of [
      PASSWORD,
      'hunter2-secret',
      a.keys.checkIn,
      parseApiKey(a.keys.checkIn)!.secret,
      '0.123456',
    ]) {
      expect(all).not.toContain(secret);
    }
    expect(all).not.toContain(a.users.hr.email);
  });
});
