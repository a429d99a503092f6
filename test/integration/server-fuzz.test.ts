import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { login, ORIGIN, type Company, serverFixture, type ServerFixture } from '../helpers/server.js';
import { ROUTE_CASES } from '../helpers/routes.js';
import type { Pool } from '../../src/db/pool.js';

let f: ServerFixture;
let app: FastifyInstance;
let admin: Pool;
let a: Company;

beforeAll(async () => {
  f = await serverFixture('fuzz');
  ({ admin, app, a } = f);
  await admin.query('UPDATE users SET employee_id = $2 WHERE id = $1', [a.users.owner.id, a.otherEmployeeId]);
});
afterAll(async () => {
  await f?.close();
});

/** A small deterministic PRNG (mulberry32) so a failure reproduces from its seed. */
function rng(seed: number) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NASTY: unknown[] = [
  null,
  true,
  -1,
  0,
  1e308,
  -1e308,
  2 ** 63,
  3.5,
  '',
  ' ',
  'NaN',
  'Infinity',
  "' OR 1=1 --",
  "'); DROP TABLE employees; --",
  '%00',
  '\u0000',
  'acme\u0000',
  'a\u0000b@example.com',
  '\ud800',
  'x\udc00y',
  '\ud83d',
  'ok \ud83d\ude00 pair',
  1.7976931348623157e308,
  -1.797e308,
  5e-324,
  Number.MAX_SAFE_INTEGER + 2,
  Array.from({ length: 128 }, (_, i) => (i % 2 ? -1.797e308 : 1.797e308)),
  Array.from({ length: 128 }, () => 0),
  '../../etc/passwd',
  '<script>alert(1)</script>',
  'x'.repeat(5000),
  '0000-00-00',
  '2026-02-30',
  '2026-13-01T00:00:00Z',
  '00000000-0000-0000-0000-000000000000',
  'zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz',
  [],
  [1, 'a', null],
  {},
  { $gt: '' },
  { __proto__: { admin: true } },
  Array.from({ length: 2000 }, () => 1.5),
];

const FIELDS = [
  'name',
  'fullName',
  'employeeId',
  'teamId',
  'latitude',
  'longitude',
  'radiusM',
  'position',
  'face',
  'vector',
  'action',
  'eventId',
  'proposedOccurredAt',
  'reason',
  'email',
  'role',
  'password',
  'scopes',
  'expiresAt',
  'geofence.mode',
  'face.threshold',
  'overtime.dailyMinutes',
  'hourlyRateMinor',
  'unknownField',
  'constructor',
];

function pick<T>(r: () => number, list: readonly T[]): T {
  return list[Math.floor(r() * list.length)]!;
}

/** Numbers JSON.stringify cannot write: beyond double (Infinity once parsed), underflow, 30 digits, -0. */
const RAW_NUMBERS = [
  '1e400',
  '-1e400',
  '1e-400',
  '123456789012345678901234567890',
  '-0',
  '1.797e308',
  '-2e308',
];
/** Escapes JSON.stringify would not produce for these: lone surrogates and NUL written as \u escapes. */
const RAW_STRINGS = ['"\\ud800"', '"a\\udfffb"', '"\\u0000"', '"acme\\u0000x"', '"\\udbff\\udbff"'];

function badBody(r: () => number): { payload: string; contentType: string } {
  const kind = Math.floor(r() * 10);
  switch (kind) {
    case 6: {
      const parts = Array.from(
        { length: 1 + Math.floor(r() * 3) },
        () => `"${pick(r, FIELDS)}": ${pick(r, RAW_NUMBERS)}`,
      );
      return { payload: `{${parts.join(', ')}}`, contentType: 'application/json' };
    }
    case 7: {
      const parts = Array.from(
        { length: 1 + Math.floor(r() * 3) },
        () => `"${pick(r, FIELDS)}": ${pick(r, RAW_STRINGS)}`,
      );
      return { payload: `{${parts.join(', ')}}`, contentType: 'application/json' };
    }
    case 0:
      return { payload: '{"name": ', contentType: 'application/json' };
    case 1:
      return { payload: JSON.stringify(pick(r, NASTY)) ?? 'null', contentType: 'application/json' };
    case 2:
      return { payload: 'name=x&role=owner', contentType: 'application/x-www-form-urlencoded' };
    case 3:
      return { payload: '{"__proto__": {"polluted": true}, "name": "x"}', contentType: 'application/json' };
    case 4:
      return {
        payload: JSON.stringify({
          position: { latitude: pick(r, NASTY), longitude: pick(r, NASTY), accuracy: pick(r, NASTY) },
        }),
        contentType: 'application/json',
      };
    case 5:
      return { payload: '{"name":"' + 'a'.repeat(70 * 1024) + '"}', contentType: 'application/json' };
    default: {
      const o: Record<string, unknown> = {};
      const n = 1 + Math.floor(r() * 4);
      for (let i = 0; i < n; i++) o[pick(r, FIELDS)] = pick(r, NASTY);
      return { payload: JSON.stringify(o), contentType: 'application/json' };
    }
  }
}

/** encodeURIComponent, except that a lone surrogate becomes the invalid UTF-8 it would be (%ED%A0%80). */
function encodeJunk(s: string): string {
  return s
    .split(/([\uD800-\uDFFF])/)
    .map((part) => (/^[\uD800-\uDFFF]$/.test(part) ? '%ED%A0%80' : encodeURIComponent(part)))
    .join('');
}

function badUrl(r: () => number, url: string): string {
  const [path, query] = url.split('?');
  const segs = path!.split('/');
  // Replace a path id with junk, or append junk query parameters.
  if (r() < 0.5) {
    const i = segs.findIndex((s) => /^[0-9a-f-]{36}$/.test(s));
    if (i >= 0) segs[i] = encodeJunk(String(pick(r, NASTY)));
  }
  const q = new URLSearchParams(query ?? '');
  if (r() < 0.7)
    q.set(
      pick(r, ['from', 'to', 'limit', 'offset', 'status', 'employeeId', 'format', 'flagged', 'teamId', 'x']),
      String(pick(r, NASTY)),
    );
  const qs = q.toString();
  return segs.join('/') + (qs ? `?${qs}` : '');
}

describe('bounded fuzz', () => {
  it('never answers 5xx to generated bad requests at every route, with a session, an API key or nothing', async () => {
    const r = rng(20261123);
    const cookie = await login(app, a, 'owner');
    const ids = {
      employeeId: a.employeeId,
      teamId: a.teamId,
      userId: a.users.hr.id,
      siteId: a.siteId,
      deletableSiteId: a.siteId,
      correctionId: '00000000-0000-4000-8000-000000000001',
      apiKeyId: a.keyIds.read,
    };
    const auths: Record<string, string>[] = [
      { cookie, origin: ORIGIN },
      { authorization: `Bearer ${a.keys.admin}` },
      {},
    ];
    const publicRoutes = [
      { method: 'POST' as const, url: '/api/v1/auth/login' },
      { method: 'GET' as const, url: '/readyz' },
      { method: 'GET' as const, url: '/.well-known/security.txt' },
      { method: 'GET' as const, url: '/metrics' },
    ];
    const targets = [
      ...ROUTE_CASES.filter((c) => c.pattern !== '/api/v1/auth/logout').map((c) => ({
        method: c.method,
        url: c.url(ids),
      })),
      ...publicRoutes,
    ];
    const failures: string[] = [];
    let sent = 0;
    for (const t of targets) {
      for (let i = 0; i < 12; i++) {
        const auth = auths[i % auths.length]!;
        const url = badUrl(r, t.url);
        const body = t.method === 'GET' || t.method === 'DELETE' ? undefined : badBody(r);
        const res = await app.inject({
          method: t.method,
          url,
          headers: { ...auth, ...(body ? { 'content-type': body.contentType } : {}) },
          ...(body ? { payload: body.payload } : {}),
        });
        sent++;
        if (res.statusCode >= 500)
          failures.push(
            `${t.method} ${url.slice(0, 120)} ${body?.payload.slice(0, 80) ?? ''} -> ${res.statusCode} ${res.body.slice(0, 100)}`,
          );
        if (
          res.statusCode >= 400 &&
          !res.headers['content-type']?.toString().startsWith('application/json')
        ) {
          failures.push(`${t.method} ${url.slice(0, 120)} -> ${res.statusCode} without a JSON error body`);
        } else if (
          res.statusCode >= 400 &&
          res.json<{ error?: { code?: string } }>().error?.code === undefined
        ) {
          failures.push(`${t.method} ${url.slice(0, 120)} -> ${res.statusCode} without the error shape`);
        }
      }
    }
    expect(sent).toBeGreaterThan(400);
    expect(failures).toEqual([]);
  });

  it('answers 400, never 500, to NUL bytes and lone surrogates, the unauthenticated login included', async () => {
    const cookie = await login(app, a, 'owner');
    const bodies = [
      '{"company": "acme\\u0000", "email": "owner@acme.example", "password": "x"}',
      '{"company": "acme", "email": "owner\\u0000@acme.example", "password": "x"}',
      '{"company": "\\ud800", "email": "owner@acme.example", "password": "x"}',
      '{"company": "acme", "email": "owner@acme.example", "password": "a\\udc00b"}',
    ];
    for (const payload of bodies) {
      const res = await app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        headers: { 'content-type': 'application/json' },
        payload,
      });
      expect(res.statusCode, payload).toBe(400);
      expect(res.json().error.code).toBe('VALIDATION_FAILED');
    }
    for (const [url, payload] of [
      ['/api/v1/teams', '{"name": "a\\u0000b"}'],
      ['/api/v1/teams', '{"name": "\\udfff"}'],
      [
        '/api/v1/corrections',
        '{"action": "add", "proposedKind": "check_in", "proposedOccurredAt": "2026-01-01T00:00:00Z", "reason": "x\\u0000"}',
      ],
    ] as const) {
      const res = await app.inject({
        method: 'POST',
        url,
        headers: { cookie, origin: ORIGIN, 'content-type': 'application/json' },
        payload,
      });
      expect(res.statusCode, payload).toBe(400);
    }
    const q = await app.inject({ url: '/api/v1/audit?action=a%00b', headers: { cookie } });
    expect(q.statusCode).toBe(400);
    const p = await app.inject({ url: '/api/v1/employees/%00', headers: { cookie } });
    expect(p.statusCode).toBe(400);
  });

  it('names the offending fields in a 400', async () => {
    const cookie = await login(app, a, 'owner');
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/sites',
      headers: { cookie, origin: ORIGIN },
      payload: { name: 'S', latitude: 91, longitude: 'east', radiusM: 10, color: 'red' },
    });
    expect(res.statusCode).toBe(400);
    const fields = (res.json().error.details.fields as { field: string }[]).map((f) => f.field).sort();
    expect(fields).toEqual(['body', 'body.latitude', 'body.longitude']);
  });

  it('answers 413 to a body over the limit and 415 to a non-JSON body', async () => {
    const cookie = await login(app, a, 'owner');
    const big = await app.inject({
      method: 'POST',
      url: '/api/v1/teams',
      headers: { cookie, origin: ORIGIN, 'content-type': 'application/json' },
      payload: JSON.stringify({ name: 'x'.repeat(100 * 1024) }),
    });
    const form = await app.inject({
      method: 'POST',
      url: '/api/v1/teams',
      headers: { cookie, origin: ORIGIN, 'content-type': 'text/plain' },
      payload: 'name=x',
    });
    expect([big.statusCode, form.statusCode]).toEqual([413, 415]);
  });
});
