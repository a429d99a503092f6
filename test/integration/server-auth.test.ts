import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import type { TestDatabase } from '../helpers/db.js';
import {
  createTestInstall,
  login,
  ORIGIN,
  PASSWORD,
  testApp,
  type Company,
  type TestInstall,
  serverFixture,
  type ServerFixture,
} from '../helpers/server.js';
import { encodeSession, nowSeconds } from '../../src/server/auth.js';
import { pepperedHash } from '../../src/crypto/random.js';
import type { Pool } from '../../src/db/pool.js';
import { parseApiKey } from '../../src/crypto/apikey.js';

let f: ServerFixture;
let db: TestDatabase;
let ti: TestInstall;
let app: FastifyInstance;
let admin: Pool;
let a: Company;

beforeAll(async () => {
  f = await serverFixture('auth', {
    server: { maxFailedLogins: 5, lockoutMinutes: 15, sessionIdleMinutes: 30 },
  });
  ({ db, ti, admin, app, a } = f);
});
afterAll(async () => {
  await f?.close();
});

const me = (headers: Record<string, string>) => app.inject({ url: '/api/v1/me', headers });
const loginAs = (email: string, password: string, extra: Record<string, string> = {}) =>
  app.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    headers: extra,
    payload: { company: a.slug, email, password },
  });

async function auditCount(action: string, entityId?: string): Promise<number> {
  const { rows } = await admin.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM audit_log WHERE tenant_id = $1 AND action = $2 AND ($3::text IS NULL OR entity_id = $3)`,
    [a.id, action, entityId ?? null],
  );
  return rows[0]!.n;
}

describe('login and sessions', () => {
  it('sets a signed HttpOnly SameSite=Strict cookie, not Secure over plain HTTP', async () => {
    const res = await loginAs(a.users.hr.email, PASSWORD);
    expect(res.statusCode).toBe(200);
    const c = res.cookies.find((x) => x.name === 'atx_session')!;
    expect(c.httpOnly).toBe(true);
    expect(c.sameSite).toBe('Strict');
    expect(c.secure).toBeFalsy();
    expect(c.value).toMatch(/\.[A-Za-z0-9+/_-]{20,}$/);
  });

  it('writes successful and failed logins to the audit log with hashed IP and user agent', async () => {
    const before = await auditCount('auth.login_failed', a.users.admin.id);
    await loginAs(a.users.admin.email, 'wrong password!', { 'user-agent': 'probe/1.0' });
    await loginAs(a.users.admin.email, PASSWORD, { 'user-agent': 'probe/1.0' });
    expect(await auditCount('auth.login_failed', a.users.admin.id)).toBe(before + 1);
    const { rows } = await admin.query<{ ip_hash: string; ua_hash: string; details: object }>(
      `SELECT ip_hash, ua_hash, details FROM audit_log WHERE tenant_id = $1 AND action = 'auth.login' AND entity_id = $2
        ORDER BY seq DESC LIMIT 1`,
      [a.id, a.users.admin.id],
    );
    expect(rows[0]!.ua_hash).toBe(pepperedHash(ti.secrets.auditPepper, 'probe/1.0'));
    expect(rows[0]!.ip_hash).toBe(pepperedHash(ti.secrets.auditPepper, '127.0.0.1'));
    expect(JSON.stringify(rows[0])).not.toContain('probe/1.0');
  });

  it('answers the same for an unknown company, an unknown user and a wrong password', async () => {
    const unknownCompany = await app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { company: 'nope', email: a.users.hr.email, password: PASSWORD },
    });
    const unknownUser = await loginAs('nobody@acme.example', PASSWORD);
    const wrong = await loginAs(a.users.manager.email, 'not the password');
    expect([unknownCompany.statusCode, unknownUser.statusCode, wrong.statusCode]).toEqual([401, 401, 401]);
    expect(new Set([unknownCompany.body, unknownUser.body, wrong.body]).size).toBe(1);
  });

  it('locks an account after 5 failed logins, even for the right password, and audits the lock', async () => {
    const email = a.users.owner.email;
    for (let i = 0; i < 5; i++) expect((await loginAs(email, `wrong ${i}`)).statusCode).toBe(401);
    const right = await loginAs(email, PASSWORD);
    expect(right.statusCode).toBe(401);
    expect(right.json().error.code).toBe('LOGIN_FAILED');
    expect(await auditCount('user.locked', a.users.owner.id)).toBe(1);
    // The lock belongs to the (account, client address) pair: see security-hardening.test.ts.
    const { rows } = await admin.query<{ mins: number }>(
      `SELECT round(extract(epoch FROM locked_until - now()) / 60)::int AS mins FROM login_throttle WHERE user_id = $1`,
      [a.users.owner.id],
    );
    expect(rows[0]!.mins).toBe(15);
    await admin.query('DELETE FROM login_throttle WHERE user_id = $1', [a.users.owner.id]);
  });

  it('ends every session of a user when the epoch is bumped (revoke-sessions)', async () => {
    const victim = await login(app, a, 'manager');
    const second = await login(app, a, 'manager');
    const owner = await login(app, a, 'owner');
    expect((await me({ cookie: victim })).statusCode).toBe(200);
    const revoke = await app.inject({
      method: 'POST',
      url: `/api/v1/users/${a.users.manager.id}/revoke-sessions`,
      headers: { cookie: owner, origin: ORIGIN },
    });
    expect(revoke.statusCode).toBe(204);
    for (const c of [victim, second]) {
      const r = await me({ cookie: c });
      expect(r.statusCode).toBe(401);
      expect(r.json().error.code).toBe('SESSION_EXPIRED');
    }
  });

  it('ends the session at logout, so a copy of the cookie stops working', async () => {
    const cookie = await login(app, a, 'hr');
    const out = await app.inject({
      method: 'POST',
      url: '/api/v1/auth/logout',
      headers: { cookie, origin: ORIGIN },
    });
    expect(out.statusCode).toBe(204);
    expect((await me({ cookie })).statusCode).toBe(401);
  });

  it('clears the cookie at logout even when the session was due for a refresh', async () => {
    await login(app, a, 'admin');
    const { rows } = await admin.query<{ session_epoch: number }>(
      'SELECT session_epoch FROM users WHERE id = $1',
      [a.users.admin.id],
    );
    const seen = nowSeconds() - 120;
    const value = app.signCookie(
      encodeSession({
        tenantId: a.id,
        userId: a.users.admin.id,
        epoch: rows[0]!.session_epoch,
        iat: seen,
        seen,
      }),
    );
    const out = await app.inject({
      method: 'POST',
      url: '/api/v1/auth/logout',
      headers: { cookie: `atx_session=${value}`, origin: ORIGIN },
    });
    expect(out.statusCode).toBe(204);
    const cookies = out.cookies.filter((c) => c.name === 'atx_session');
    expect(cookies).toHaveLength(1);
    expect(cookies[0]!.value).toBe('');
  });

  it('ends the session of a disabled user at once', async () => {
    const cookie = await login(app, a, 'employee');
    await admin.query('UPDATE users SET disabled_at = now() WHERE id = $1', [a.users.employee.id]);
    try {
      expect((await me({ cookie })).statusCode).toBe(401);
    } finally {
      await admin.query('UPDATE users SET disabled_at = NULL WHERE id = $1', [a.users.employee.id]);
    }
  });

  it('refuses a forged or tampered cookie', async () => {
    const forged = `atx_session=${encodeSession({ tenantId: a.id, userId: a.users.owner.id, epoch: 0, iat: nowSeconds(), seen: nowSeconds() })}.AAAA`;
    expect((await me({ cookie: forged })).statusCode).toBe(401);
    const real = await login(app, a, 'hr');
    const tampered = real.replace(a.users.hr.id, a.users.owner.id);
    expect((await me({ cookie: tampered })).statusCode).toBe(401);
  });

  it('refuses a session idle for longer than the configured minutes', async () => {
    const { rows } = await admin.query<{ session_epoch: number }>(
      'SELECT session_epoch FROM users WHERE id = $1',
      [a.users.admin.id],
    );
    const old = nowSeconds() - 31 * 60;
    const value = app.signCookie(
      encodeSession({
        tenantId: a.id,
        userId: a.users.admin.id,
        epoch: rows[0]!.session_epoch,
        iat: old,
        seen: old,
      }),
    );
    const res = await me({ cookie: `atx_session=${value}` });
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe('SESSION_EXPIRED');
    const fresh = app.signCookie(
      encodeSession({
        tenantId: a.id,
        userId: a.users.admin.id,
        epoch: rows[0]!.session_epoch,
        iat: old,
        seen: nowSeconds() - 60,
      }),
    );
    expect((await me({ cookie: `atx_session=${fresh}` })).statusCode).toBe(200);
  });

  it('marks the cookie Secure and sends HSTS when a trusted proxy says the request was HTTPS', async () => {
    const proxied = await createTestInstall(db, { trustProxy: true });
    const papp = await testApp(proxied);
    try {
      const res = await papp.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        headers: { 'x-forwarded-proto': 'https' },
        payload: { company: a.slug, email: a.users.hr.email, password: PASSWORD },
      });
      expect(res.statusCode).toBe(200);
      expect(res.cookies.find((x) => x.name === 'atx_session')!.secure).toBe(true);
      expect(res.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
      const plain = await app.inject({ url: '/healthz', headers: { 'x-forwarded-proto': 'https' } });
      expect(plain.headers['strict-transport-security']).toBeUndefined();
    } finally {
      await papp.close();
      await proxied.cleanup();
    }
  });
});

describe('rate limiting', () => {
  it('answers 429 to the IP that exceeds the login limit, before any password check', async () => {
    const limited = await testApp(ti, { loginRateLimit: { max: 2, timeWindow: 60_000 } });
    try {
      const before = await auditCount('auth.login_failed');
      const codes: number[] = [];
      for (let i = 0; i < 4; i++) {
        const r = await limited.inject({
          method: 'POST',
          url: '/api/v1/auth/login',
          remoteAddress: '10.9.8.7',
          payload: { company: a.slug, email: a.users.hr.email, password: 'wrong password' },
        });
        codes.push(r.statusCode);
      }
      expect(codes).toEqual([401, 401, 429, 429]);
      // Only the two attempts that got through did any work (and left an audit entry).
      expect(await auditCount('auth.login_failed')).toBe(before + 2);
      const other = await limited.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        remoteAddress: '10.9.8.8',
        payload: { company: a.slug, email: a.users.hr.email, password: PASSWORD },
      });
      expect(other.statusCode).toBe(200);
    } finally {
      await limited.close();
    }
  });

  it('uses the error shape for 429', async () => {
    const limited = await testApp(ti, { loginRateLimit: { max: 1, timeWindow: 60_000 } });
    try {
      const send = () =>
        limited.inject({ method: 'POST', url: '/api/v1/auth/login', remoteAddress: '10.1.1.1', payload: {} });
      await send();
      const r = await send();
      expect(r.statusCode).toBe(429);
      expect(r.json().error.code).toBe('RATE_LIMITED');
    } finally {
      await limited.close();
    }
  });
});

describe('CSRF', () => {
  it('refuses a state-changing cookie request without Origin or Referer', async () => {
    const cookie = await login(app, a, 'owner');
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/teams',
      headers: { cookie },
      payload: { name: 'X1' },
    });
    expect(res.statusCode).toBe(403);
    expect(res.json().error.code).toBe('CSRF_REJECTED');
  });

  it('refuses a state-changing cookie request from a foreign origin', async () => {
    const cookie = await login(app, a, 'owner');
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/teams',
      headers: { cookie, origin: 'https://evil.example' },
      payload: { name: 'X2' },
    });
    expect(res.statusCode).toBe(403);
  });

  it('accepts the same origin, a same-origin Referer and API keys without either', async () => {
    const cookie = await login(app, a, 'owner');
    const byOrigin = await app.inject({
      method: 'POST',
      url: '/api/v1/teams',
      headers: { cookie, origin: ORIGIN },
      payload: { name: 'X3' },
    });
    const byReferer = await app.inject({
      method: 'POST',
      url: '/api/v1/teams',
      headers: { cookie, referer: `${ORIGIN}/somewhere` },
      payload: { name: 'X4' },
    });
    const byKey = await app.inject({
      method: 'POST',
      url: '/api/v1/teams',
      headers: { authorization: `Bearer ${a.keys.admin}` },
      payload: { name: 'X5' },
    });
    expect([byOrigin.statusCode, byReferer.statusCode, byKey.statusCode]).toEqual([201, 201, 201]);
  });

  it('refuses a login posted from a foreign origin', async () => {
    const res = await loginAs(a.users.hr.email, PASSWORD, { origin: 'https://evil.example' });
    expect(res.statusCode).toBe(403);
  });
});

describe('API keys', () => {
  it('refuses a key whose secret does not match its prefix', async () => {
    const forged = a.keys.read.slice(0, -4) + 'AAAA';
    const res = await me({ authorization: `Bearer ${forged}` });
    expect(res.statusCode).toBe(401);
    expect((await me({ authorization: 'Bearer not-a-key' })).statusCode).toBe(401);
  });

  it('records when a key was last used', async () => {
    await admin.query('UPDATE api_keys SET last_used_at = NULL WHERE id = $1', [a.keyIds.read]);
    expect((await me({ authorization: `Bearer ${a.keys.read}` })).statusCode).toBe(200);
    const { rows } = await admin.query<{ last_used_at: Date | null }>(
      'SELECT last_used_at FROM api_keys WHERE id = $1',
      [a.keyIds.read],
    );
    expect(rows[0]!.last_used_at).toBeInstanceOf(Date);
  });

  it('stops a key at once when it is revoked through the API', async () => {
    const owner = await login(app, a, 'owner');
    const created = await app.inject({
      method: 'POST',
      url: '/api/v1/api-keys',
      headers: { cookie: owner, origin: ORIGIN },
      payload: { name: 'kiosk', scopes: ['check-in'] },
    });
    expect(created.statusCode).toBe(201);
    const { key, id } = created.json<{ key: string; id: string }>();
    const checkIn = () =>
      app.inject({
        method: 'POST',
        url: '/api/v1/attendance/check-in',
        headers: { authorization: `Bearer ${key}` },
        payload: { employeeId: a.employeeId },
      });
    expect((await checkIn()).statusCode).toBe(201);
    const del = await app.inject({
      method: 'DELETE',
      url: `/api/v1/api-keys/${id}`,
      headers: { cookie: owner, origin: ORIGIN },
    });
    expect(del.statusCode).toBe(204);
    const after = await checkIn();
    expect(after.statusCode).toBe(401);
    expect(await auditCount('apikey.revoke', id)).toBe(1);
  });

  it('refuses an expired key', async () => {
    await admin.query(`UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1`, [
      a.keyIds.checkIn,
    ]);
    try {
      const res = await app.inject({
        method: 'POST',
        url: '/api/v1/attendance/check-in',
        headers: { authorization: `Bearer ${a.keys.checkIn}` },
        payload: { employeeId: a.employeeId },
      });
      expect(res.statusCode).toBe(401);
    } finally {
      await admin.query('UPDATE api_keys SET expires_at = NULL WHERE id = $1', [a.keyIds.checkIn]);
    }
  });

  it('never returns the secret or its HMAC when listing keys', async () => {
    const owner = await login(app, a, 'owner');
    const res = await app.inject({ url: '/api/v1/api-keys', headers: { cookie: owner } });
    expect(res.statusCode).toBe(200);
    expect(res.body).not.toContain(parseApiKey(a.keys.read)!.secret);
    expect(res.body).not.toMatch(/secret|hmac/i);
  });
});
