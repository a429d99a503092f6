import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { faceAad, seal, vectorToBuffer } from '../../src/crypto/aead.js';
import { unlockUser } from '../../src/core/accounts/users.js';
import type { Pool } from '../../src/db/pool.js';
import {
  login,
  ORIGIN,
  PASSWORD,
  seedCompany,
  serverFixture,
  type Company,
  type ServerFixture,
} from '../helpers/server.js';

let f: ServerFixture;
let app: FastifyInstance;
let admin: Pool;
let a: Company;

beforeAll(async () => {
  f = await serverFixture('hardening');
  ({ admin, app, a } = f);
});
afterAll(async () => {
  await f?.close();
});

const as = async (role: Parameters<typeof login>[2], co = a) => ({
  cookie: await login(app, co, role),
  origin: ORIGIN,
});
const auditCount = async (action: string, entity?: string) => {
  const { rows } = await admin.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM audit_log WHERE action = $1 AND ($2::text IS NULL OR entity_id = $2)',
    [action, entity ?? null],
  );
  return rows[0]!.n;
};
const hashesDone = async () => {
  const m = await app.inject({ url: '/metrics' });
  return Number(/^attendux_password_hashes_total (\d+)$/m.exec(m.body)![1]);
};

describe('face check cannot be bypassed', () => {
  const template = Array.from({ length: 128 }, (_, i) => Math.cos(i / 3));
  const huge = Array.from({ length: 128 }, (_, i) => (i % 2 ? -1.797e308 : 1.797e308));
  let co: Company;
  const kiosk = (payload: object) =>
    app.inject({
      method: 'POST',
      url: '/api/v1/attendance/check-in',
      headers: { authorization: `Bearer ${co.keys.checkIn}` },
      payload,
    });

  beforeAll(async () => {
    co = await seedCompany(admin, f.ti.secrets.apiKeyHmacKey, 'facebypass');
    const put = await app.inject({
      method: 'PUT',
      url: `/api/v1/employees/${co.employeeId}/face`,
      headers: await as('hr', co),
      payload: { vector: template },
    });
    expect(put.statusCode).toBe(204);
    const s = await app.inject({
      method: 'PATCH',
      url: '/api/v1/settings',
      headers: await as('owner', co),
      payload: { 'face.required': true, 'face.threshold': 0.99 },
    });
    expect(s.statusCode, s.body).toBe(200);
  });

  it('refuses a ±1.797e308 probe on the kiosk path and on the session path (400, nothing stored)', async () => {
    const res = await kiosk({ employeeId: co.employeeId, face: huge });
    expect(res.statusCode).toBe(400);
    const own = await app.inject({
      method: 'POST',
      url: '/api/v1/attendance/check-in',
      headers: await as('employee', co),
      payload: { face: huge },
    });
    expect(own.statusCode).toBe(400);
    const { rows } = await admin.query('SELECT 1 FROM attendance_events WHERE tenant_id = $1', [co.id]);
    expect(rows.length).toBe(0);
  });

  it('refuses zero-norm probes and enrolments beyond float32 or the bound', async () => {
    expect((await kiosk({ employeeId: co.employeeId, face: template.map(() => 0) })).statusCode).toBe(400);
    expect((await kiosk({ employeeId: co.employeeId, face: template.map(() => 5e-324) })).statusCode).toBe(
      400,
    );
    for (const vector of [template.map(() => 1e39), template.map(() => 0), huge]) {
      const put = await app.inject({
        method: 'PUT',
        url: `/api/v1/employees/${co.employeeId}/face`,
        headers: await as('hr', co),
        payload: { vector },
      });
      expect(put.statusCode).toBe(400);
    }
  });

  it('never matches against a template stored with Infinity (enrolled before the fix)', async () => {
    const bad = template.map(() => 1e39); // float32: Infinity
    const sealed = seal(
      { keys: f.ti.secrets.dataKeys, activeId: 'k1' },
      vectorToBuffer(bad),
      faceAad(co.id, co.otherEmployeeId),
    );
    await admin.query(
      'UPDATE employees SET face_template = $3, face_key_id = $4 WHERE tenant_id = $1 AND id = $2',
      [co.id, co.otherEmployeeId, sealed.data, sealed.keyId],
    );
    const res = await kiosk({ employeeId: co.otherEmployeeId, face: template });
    expect(res.statusCode).toBe(422);
    expect(res.json().error.code).toBe('FACE_NOT_ENROLLED');
  });

  it('throttles mismatches per employee and audits every one', async () => {
    const other = template.map((v, i) => (i % 2 ? -v : v));
    const before = await auditCount('attendance.face_mismatch', co.employeeId);
    for (let i = 0; i < 5; i++) {
      const r = await kiosk({ employeeId: co.employeeId, face: other });
      expect(r.statusCode).toBe(422);
      expect(r.json().error.code).toBe('FACE_MISMATCH');
      expect(r.json().error.details).toBeUndefined();
    }
    expect(await auditCount('attendance.face_mismatch', co.employeeId)).toBe(before + 5);
    const sixth = await kiosk({ employeeId: co.employeeId, face: template });
    expect(sixth.statusCode).toBe(429);
    // The session path shares the throttle and audits in its own (committed) transaction.
    const own = await app.inject({
      method: 'POST',
      url: '/api/v1/attendance/check-in',
      headers: await as('employee', co),
      payload: { face: template },
    });
    expect(own.statusCode).toBe(429);
  });
});

describe('lock-out', () => {
  const loginFrom = (ip: string, email: string, password: string, company = a.slug) =>
    app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      remoteAddress: ip,
      payload: { company, email, password },
    });

  it('locks only the (account, address) pair: the owner elsewhere still logs in; user unlock clears it', async () => {
    const email = a.users.admin.email;
    for (let i = 0; i < 5; i++)
      expect((await loginFrom('203.0.113.7', email, `wrong ${i}`)).statusCode).toBe(401);
    expect((await loginFrom('203.0.113.7', email, PASSWORD)).statusCode).toBe(401);
    expect((await loginFrom('198.51.100.2', email, PASSWORD)).statusCode).toBe(200);
    const list = await app.inject({ url: '/api/v1/users', headers: await as('owner') });
    const row = (list.json().users as { id: string; lockedUntil: string | null }[]).find(
      (u) => u.id === a.users.admin.id,
    );
    expect(row?.lockedUntil).not.toBeNull();
    const r = await unlockUser(f.ti.install.admin, { tenant: a.slug, email, actor: 'test' });
    expect(r.cleared).toBe(1);
    expect(await auditCount('user.unlock', a.users.admin.id)).toBe(1);
    expect((await loginFrom('203.0.113.7', email, PASSWORD)).statusCode).toBe(200);
  });

  it('costs exactly one bcrypt on every failure path: unknown company, unknown user, wrong password, locked', async () => {
    const email = a.users.hr.email;
    for (let i = 0; i < 5; i++) await loginFrom('203.0.113.8', email, `wrong ${i}`);
    const cases = [
      ['no-such-co', email],
      [a.slug, 'nobody@acme.example'],
      [a.slug, a.users.manager.email],
      [a.slug, email], // locked from this address
    ] as const;
    for (const [company, who] of cases) {
      const before = await hashesDone();
      const res = await loginFrom('203.0.113.8', who, 'not the password', company);
      expect(res.statusCode).toBe(401);
      expect(res.json().error.code).toBe('LOGIN_FAILED');
      expect(await hashesDone()).toBe(before + 1);
    }
    await admin.query('DELETE FROM login_throttle');
  });

  it('starts counting again once a lock has expired (one failure does not re-lock)', async () => {
    const email = a.users.manager.email;
    for (let i = 0; i < 5; i++) await loginFrom('203.0.113.9', email, `wrong ${i}`);
    await admin.query(
      `UPDATE login_throttle SET locked_until = now() - interval '1 second', updated_at = now() - interval '16 minutes'`,
    );
    expect((await loginFrom('203.0.113.9', email, 'wrong again')).statusCode).toBe(401);
    const { rows } = await admin.query<{ failures: number; locked: boolean }>(
      'SELECT failures, coalesce(locked_until > now(), false) AS locked FROM login_throttle WHERE user_id = $1',
      [a.users.manager.id],
    );
    expect(rows[0]).toEqual({ failures: 1, locked: false });
    expect((await loginFrom('203.0.113.9', email, PASSWORD)).statusCode).toBe(200);
  });
});

describe('POST /me/password', () => {
  it('counts, audits and limits wrong current passwords', async () => {
    const h = await as('employee');
    const before = await auditCount('user.password_change_failed', a.users.employee.id);
    for (let i = 0; i < 5; i++) {
      const r = await app.inject({
        method: 'POST',
        url: '/api/v1/me/password',
        headers: h,
        payload: { currentPassword: `wrong ${i}`, newPassword: 'another long password' },
      });
      expect(r.statusCode).toBe(403);
    }
    expect(await auditCount('user.password_change_failed', a.users.employee.id)).toBe(before + 5);
    const locked = await app.inject({
      method: 'POST',
      url: '/api/v1/me/password',
      headers: h,
      payload: { currentPassword: PASSWORD, newPassword: 'another long password' },
    });
    expect(locked.statusCode).toBe(429);
    await admin.query('DELETE FROM login_throttle WHERE user_id = $1', [a.users.employee.id]);
  });

  it('clears the lock-out of every address, as every password change does', async () => {
    const co = await seedCompany(admin, f.ti.secrets.apiKeyHmacKey, 'pwlock');
    const email = co.users.hr.email;
    const from = (ip: string, password: string) =>
      app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        remoteAddress: ip,
        payload: { company: co.slug, email, password },
      });
    for (let i = 0; i < 5; i++) expect((await from('203.0.113.20', `wrong ${i}`)).statusCode).toBe(401);
    expect((await from('203.0.113.20', PASSWORD)).statusCode).toBe(401);
    const changed = await app.inject({
      method: 'POST',
      url: '/api/v1/me/password',
      headers: await as('hr', co),
      payload: { currentPassword: PASSWORD, newPassword: 'a brand new long password' },
    });
    expect(changed.statusCode).toBe(204);
    expect((await from('203.0.113.20', 'a brand new long password')).statusCode).toBe(200);
  });

  it('runs one change per user at a time: concurrent guesses are refused, not queued', async () => {
    const h = await as('employee');
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        app.inject({
          method: 'POST',
          url: '/api/v1/me/password',
          headers: h,
          payload: { currentPassword: `guess ${i}`, newPassword: 'another long password' },
        }),
      ),
    );
    const codes = results.map((r) => r.statusCode);
    expect(codes.filter((c) => c === 429).length).toBeGreaterThan(0);
    expect(codes.every((c) => c === 429 || c === 403)).toBe(true);
    await admin.query('DELETE FROM login_throttle WHERE user_id = $1', [a.users.employee.id]);
  });
});

describe('only owners act on owners; one user per employee', () => {
  it('refuses an admin ending an owner’s sessions or disabling an owner', async () => {
    const h = await as('admin');
    const rs = await app.inject({
      method: 'POST',
      url: `/api/v1/users/${a.users.owner.id}/revoke-sessions`,
      headers: h,
    });
    expect(rs.statusCode).toBe(403);
    const dis = await app.inject({
      method: 'PATCH',
      url: `/api/v1/users/${a.users.owner.id}`,
      headers: h,
      payload: { disabled: true },
    });
    expect(dis.statusCode).toBe(403);
    const { rows } = await admin.query<{ session_epoch: number; disabled_at: Date | null }>(
      'SELECT session_epoch, disabled_at FROM users WHERE id = $1',
      [a.users.owner.id],
    );
    expect(rows[0]!.disabled_at).toBeNull();
    // An owner may.
    const ok = await app.inject({
      method: 'POST',
      url: `/api/v1/users/${a.users.admin.id}/revoke-sessions`,
      headers: await as('owner'),
    });
    expect(ok.statusCode).toBe(204);
    // The server mirrored the ledger entry of that revocation to the data dir after its commit.
    const mirror = await readFile(join(f.ti.dataDir, 'security-ledger.jsonl'), 'utf8');
    expect(mirror).toContain(`"entityId":"${a.users.admin.id}"`);
    expect(mirror).toContain('"kind":"user.session_epoch"');
  });

  it('refuses linking a second user to an employee (an admin cannot check in as someone else)', async () => {
    const h = await as('admin');
    const r = await app.inject({
      method: 'PATCH',
      url: `/api/v1/users/${a.users.admin.id}`,
      headers: h,
      payload: { employeeId: a.employeeId },
    });
    expect(r.statusCode).toBe(409);
    const c = await app.inject({
      method: 'POST',
      url: '/api/v1/users',
      headers: await as('owner'),
      payload: { email: 'twin@acme.example', role: 'employee', employeeId: a.employeeId },
    });
    expect(c.statusCode).toBe(409);
  });
});
