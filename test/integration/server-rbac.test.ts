import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import {
  login,
  ORIGIN,
  ROLES,
  seedCompany,
  type Company,
  type TestInstall,
  serverFixture,
  type ServerFixture,
} from '../helpers/server.js';
import { idsOf, ROUTE_CASES, type Ids } from '../helpers/routes.js';
import { routeTable } from '../../src/server/route.js';
import type { Pool } from '../../src/db/pool.js';

let f: ServerFixture;
let ti: TestInstall;
let app: FastifyInstance;
let admin: Pool;
let a: Company;
let b: Company;
let idsA: Ids;

/** Extra objects each company needs so that every route has something to act on. */
async function extras(c: Company): Promise<Ids> {
  // Every role user gets an employee of their own, so that check-in is about RBAC, not about a missing link.
  for (const role of ['owner', 'admin', 'manager', 'hr'] as const) {
    const e = await admin.query<{ id: string }>(
      `INSERT INTO employees (tenant_id, full_name, team_id) VALUES ($1, $2, $3) RETURNING id`,
      [c.id, `${role} person`, c.otherTeamId],
    );
    await admin.query('UPDATE users SET employee_id = $3 WHERE tenant_id = $1 AND id = $2', [
      c.id,
      c.users[role].id,
      e.rows[0]!.id,
    ]);
  }
  const target = await admin.query<{ id: string }>(
    `INSERT INTO users (tenant_id, email, role) VALUES ($1, $2, 'manager') RETURNING id`,
    [c.id, `target@${c.slug}.example`],
  );
  const site = await admin.query<{ id: string }>(
    `INSERT INTO sites (tenant_id, name, latitude, longitude, radius_m) VALUES ($1, 'Spare', 1, 1, 10) RETURNING id`,
    [c.id],
  );
  const corr = await admin.query<{ id: string }>(
    `INSERT INTO correction_requests (tenant_id, employee_id, requested_by, action, proposed_kind, proposed_occurred_at, reason)
     VALUES ($1, $2, $3, 'add', 'check_in', '2026-01-02T08:00:00Z', 'forgot') RETURNING id`,
    [c.id, c.employeeId, c.users.employee.id],
  );
  const spare = await admin.query<{ id: string }>(
    `INSERT INTO api_keys (tenant_id, name, prefix, secret_hmac, scopes, created_by)
     VALUES ($1, 'spare', $2, '\\x00', '{read}', 'test') RETURNING id`,
    [c.id, `spare${c.slug}`.slice(0, 12)],
  );
  return idsOf(c, {
    userId: target.rows[0]!.id,
    deletableSiteId: site.rows[0]!.id,
    correctionId: corr.rows[0]!.id,
    apiKeyId: spare.rows[0]!.id,
  });
}

beforeAll(async () => {
  f = await serverFixture('rbac');
  ({ ti, admin, app, a } = f);
  b = await seedCompany(admin, ti.secrets.apiKeyHmacKey, 'globex');
  idsA = await extras(a);
  await extras(b);
});
afterAll(async () => {
  await f?.close();
});

let n = 0;
async function call(route: (typeof ROUTE_CASES)[number], ids: Ids, headers: Record<string, string>) {
  const body = route.body?.(ids, ++n);
  return app.inject({
    method: route.method,
    url: route.url(ids),
    headers: { origin: ORIGIN, ...headers },
    ...(body !== undefined ? { payload: body as object } : {}),
  });
}

describe('role-based access control', () => {
  it('has a test case for every authenticated route the app registers', () => {
    const registered = routeTable(app)
      .map((r) => `${r.method} ${r.url}`)
      .sort();
    const tested = ROUTE_CASES.map((r) => `${r.method} ${r.pattern}`).sort();
    expect(tested).toEqual(registered);
  });

  it('allows exactly the expected roles on every route (5 roles x every route)', async () => {
    const cookies = Object.fromEntries(
      await Promise.all(ROLES.map(async (r) => [r, await login(app, a, r)] as const)),
    );
    const mismatches: string[] = [];
    for (const route of ROUTE_CASES) {
      for (const role of ROLES) {
        const res = await call(route, idsA, { cookie: cookies[role]! });
        const allowed = route.roles.includes(role);
        const ok = allowed
          ? res.statusCode !== 401 && res.statusCode !== 403 && res.statusCode < 500
          : res.statusCode === 403;
        if (!ok)
          mismatches.push(
            `${role} ${route.method} ${route.pattern} -> ${res.statusCode} ${res.body.slice(0, 120)}`,
          );
      }
    }
    expect(mismatches).toEqual([]);
  });

  it('allows exactly the expected API-key scopes on every route', async () => {
    const keys = { read: a.keys.read, 'check-in': a.keys.checkIn, admin: a.keys.admin } as const;
    const mismatches: string[] = [];
    for (const route of ROUTE_CASES) {
      for (const scope of ['read', 'check-in', 'admin'] as const) {
        const ids = idsA;
        const body = route.body?.(ids, ++n);
        const withEmployee =
          route.pattern.startsWith('/api/v1/attendance/check') && body
            ? { ...body, employeeId: ids.employeeId }
            : body;
        const res = await app.inject({
          method: route.method,
          url: route.url(ids),
          headers: { authorization: `Bearer ${keys[scope]}` },
          ...(withEmployee !== undefined ? { payload: withEmployee as object } : {}),
        });
        const allowed = route.scopes.includes(scope);
        const ok = allowed
          ? res.statusCode !== 401 && res.statusCode !== 403 && res.statusCode < 500
          : res.statusCode === 403;
        if (!ok)
          mismatches.push(
            `${scope} ${route.method} ${route.pattern} -> ${res.statusCode} ${res.body.slice(0, 120)}`,
          );
      }
    }
    expect(mismatches).toEqual([]);
  });

  it('limits a manager to the employees of the teams they manage', async () => {
    const cookie = await login(app, a, 'manager');
    const own = await app.inject({ url: `/api/v1/employees/${a.employeeId}`, headers: { cookie } });
    const other = await app.inject({ url: `/api/v1/employees/${a.otherEmployeeId}`, headers: { cookie } });
    expect(own.statusCode).toBe(200);
    expect(other.statusCode).toBe(404);
    const list = await app.inject({ url: '/api/v1/employees', headers: { cookie } });
    const ids = (list.json().employees as { id: string }[]).map((e) => e.id);
    expect(ids).toContain(a.employeeId);
    expect(ids).not.toContain(a.otherEmployeeId);
  });

  it('limits an employee to their own records', async () => {
    const cookie = await login(app, a, 'employee');
    const other = await app.inject({ url: `/api/v1/employees/${a.otherEmployeeId}`, headers: { cookie } });
    const sheet = await app.inject({
      url: `/api/v1/timesheets?from=2026-01-01&to=2026-01-31&employeeId=${a.otherEmployeeId}`,
      headers: { cookie },
    });
    expect([other.statusCode, sheet.statusCode]).toEqual([404, 404]);
  });
});

describe('tenant isolation over HTTP', () => {
  it("answers 404 on every route that names another company's object, for a user and an API key", async () => {
    const ownerB = await login(app, b, 'owner');
    const leaks: string[] = [];
    for (const route of ROUTE_CASES) {
      if (route.pattern === '/api/v1/auth/logout') continue;
      const namesIds =
        route.pattern.includes(':') || JSON.stringify(route.body?.(idsA, 0) ?? {}).includes(idsA.teamId);
      for (const headers of [{ cookie: ownerB }, { authorization: `Bearer ${b.keys.admin}` }] as Record<
        string,
        string
      >[]) {
        const res = await call(route, idsA, headers);
        if (namesIds) {
          if (res.statusCode !== 404 && !(res.statusCode === 403 && headers.authorization)) {
            leaks.push(`${route.method} ${route.pattern} -> ${res.statusCode} ${res.body.slice(0, 100)}`);
          }
        } else if (res.statusCode < 300) {
          for (const id of [a.id, a.employeeId, a.otherEmployeeId, a.teamId, a.siteId, a.users.owner.id]) {
            if (res.body.includes(id))
              leaks.push(`${route.method} ${route.pattern} returned ${id} of the other company`);
          }
        }
      }
    }
    expect(leaks).toEqual([]);
  });

  it("answers 404 for a kiosk key checking in another company's employee", async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/attendance/check-in',
      headers: { authorization: `Bearer ${b.keys.checkIn}` },
      payload: { employeeId: a.employeeId },
    });
    expect(res.statusCode).toBe(404);
  });

  it('answers the same for a nonexistent id as for another company’s', async () => {
    const cookie = await login(app, b, 'owner');
    const foreign = await app.inject({ url: `/api/v1/employees/${a.employeeId}`, headers: { cookie } });
    const missing = await app.inject({
      url: '/api/v1/employees/00000000-0000-4000-8000-000000000000',
      headers: { cookie },
    });
    expect(foreign.statusCode).toBe(404);
    expect(foreign.body).toBe(missing.body);
  });
});
