import { readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTestDatabase,
  TEST_APP_ROLE,
  TEST_PASSWORD,
  urlFor,
  type TestDatabase,
} from '../helpers/db.js';
import {
  adminPool,
  createTestInstall,
  PASSWORD,
  seedCompany,
  type Company,
  type TestInstall,
} from '../helpers/server.js';
import { startPgbouncer, startServe, type OwnServer } from '../helpers/serve-proc.js';
import type { Pool } from '../../src/db/pool.js';

/**
 * `serve` behind Debian's pgbouncer 1.18 in transaction mode, which cannot carry named prepared statements
 * (or any session state) from one transaction to the next: with ONE server connection behind a pool of
 * several clients, every client's statements land on a connection another client prepared them on.
 */

let db: TestDatabase;
let ti: TestInstall;
let admin: Pool;
let a: Company;
let bouncer: OwnServer;

async function configure(pgbouncer: boolean): Promise<void> {
  const config = JSON.parse(await readFile(ti.configPath, 'utf8')) as {
    database: Record<string, unknown>;
    server: Record<string, unknown>;
  };
  const u = new URL(db.appUrl);
  config.database.url = urlFor(
    `postgres://127.0.0.1:${bouncer.port}/x`,
    TEST_APP_ROLE,
    TEST_PASSWORD,
    u.pathname.slice(1),
  );
  config.database.pgbouncer = pgbouncer;
  config.database.poolSize = 4;
  await writeFile(ti.configPath, JSON.stringify(config));
}

beforeAll(async () => {
  db = await createTestDatabase('pgbouncer');
  ti = await createTestInstall(db);
  admin = adminPool(db);
  a = await seedCompany(admin, ti.secrets.apiKeyHmacKey, 'acme');
  bouncer = await startPgbouncer(db.superuserUrl, { [TEST_APP_ROLE]: TEST_PASSWORD }, 1);
});
afterAll(async () => {
  await bouncer?.stop();
  await admin?.end();
  await ti?.cleanup();
  await db?.drop();
});

/** Concurrent check-ins (several pooled clients at once), a login, /me and a timesheet report. */
async function exercise(url: string): Promise<number[]> {
  const checkIn = () =>
    fetch(`${url}/api/v1/attendance/check-in`, {
      method: 'POST',
      headers: { authorization: `Bearer ${a.keys.checkIn}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        employeeId: a.employeeId,
        position: { latitude: 52.52, longitude: 13.405, accuracy: 8 },
      }),
    }).then(async (r) => (await r.arrayBuffer(), r.status));
  const statuses: number[] = [];
  for (let round = 0; round < 3; round++)
    statuses.push(...(await Promise.all(Array.from({ length: 8 }, checkIn))));
  const login = await fetch(`${url}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ company: 'acme', email: a.users.owner.email, password: PASSWORD }),
  });
  statuses.push(login.status);
  const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0]!;
  const reads = await Promise.all(
    [
      '/api/v1/me',
      `/api/v1/timesheets?from=2026-01-01&to=2026-01-31&employeeId=${a.employeeId}`,
      '/api/v1/employees',
      '/api/v1/me',
    ].map((p) =>
      fetch(`${url}${p}`, { headers: { cookie } }).then(async (r) => (await r.arrayBuffer(), r.status)),
    ),
  );
  return [...statuses, ...reads];
}

describe('serve behind pgbouncer in transaction mode', () => {
  it('with database.pgbouncer: logins, check-ins and reports all answer', async () => {
    await configure(true);
    const before = await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM attendance_events');
    const s = await startServe(ti.configPath);
    try {
      const statuses = await exercise(s.url);
      expect(statuses.filter((x) => x >= 300)).toEqual([]);
      expect(statuses.slice(0, 24)).toEqual(Array(24).fill(201));
      const after = await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM attendance_events');
      expect(after.rows[0]!.n - before.rows[0]!.n).toBe(24);
      // Every check-in's audit entry made it into the chain, in order.
      const { rows } = await admin.query<{ n: number; max: number }>(
        `SELECT count(*)::int AS n, max(seq)::int AS max FROM audit_log WHERE tenant_id = $1`,
        [a.id],
      );
      expect(rows[0]!.n).toBe(rows[0]!.max);
      expect(await s.stop()).toBe(0);
    } finally {
      s.proc.kill('SIGKILL');
    }
  });

  it('without it, the named statements of one client meet another client’s on the shared connection', async () => {
    await configure(false);
    const s = await startServe(ti.configPath);
    try {
      const statuses = await exercise(s.url);
      // What the setting is for: PostgreSQL refuses "prepared statement ... already exists / does not exist".
      expect(statuses.some((x) => x >= 500)).toBe(true);
    } finally {
      await s.stop();
      s.proc.kill('SIGKILL');
    }
  });
});
