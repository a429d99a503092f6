import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import {
  adminPool,
  createTestInstall,
  seedCompany,
  type Company,
  type TestInstall,
} from '../helpers/server.js';
import {
  childrenOf,
  connectionsHeld,
  fresh,
  keepAliveAgent,
  onAgent,
  startRedis,
  startServe,
  until,
  type OwnServer,
  type ServeProc,
} from '../helpers/serve-proc.js';
import { freePort } from '../helpers/global-setup.js';
import { enterMaintenance, leaveMaintenance } from '../../src/core/maintenance.js';
import type { Pool } from '../../src/db/pool.js';

/** `serve --workers 2`: two processes on one port that share what matters through PostgreSQL and Redis. */

let db: TestDatabase;
let ti: TestInstall;
let admin: Pool;
let a: Company;
let redis: OwnServer;

async function configure(server: Record<string, unknown>): Promise<void> {
  const config = JSON.parse(await readFile(ti.configPath, 'utf8')) as { server: Record<string, unknown> };
  config.server = { logLevel: 'warn', ...server };
  await writeFile(ti.configPath, JSON.stringify(config));
}

beforeAll(async () => {
  db = await createTestDatabase('workers');
  ti = await createTestInstall(db);
  admin = adminPool(db);
  a = await seedCompany(admin, ti.secrets.apiKeyHmacKey, 'acme');
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
  await admin?.end();
  await ti?.cleanup();
  await db?.drop();
});

const checkIn = (url: string) =>
  fresh(`${url}/api/v1/attendance/check-in`, {
    method: 'POST',
    headers: { authorization: `Bearer ${a.keys.checkIn}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      employeeId: a.employeeId,
      position: { latitude: 52.52, longitude: 13.405, accuracy: 8 },
    }),
  });

describe('serve --workers 2', () => {
  let s: ServeProc;
  beforeAll(async () => {
    await configure({ redisUrl: `redis://127.0.0.1:${redis.port}`, publicRateLimitPerMinute: 6 });
    s = await startServe(ti.configPath, ['--workers', '2']);
  });
  afterAll(async () => {
    const code = await s?.stop();
    s?.proc.kill('SIGKILL');
    expect(code).toBe(0);
  });

  it('both workers answer on the one port, and a killed worker is replaced', async () => {
    expect(s.stderr()).toMatch(/serving on http:\/\/127\.0\.0\.1:\d+ \(2 workers\)/);
    const workers = await until(
      () => childrenOf(s.proc.pid!),
      (w) => w.length === 2,
    );
    expect(workers).toHaveLength(2);
    // Eight connections held open at once: the primary deals them out round-robin, four to each.
    const agent = keepAliveAgent(8);
    try {
      const st = await Promise.all(Array.from({ length: 8 }, () => onAgent(`${s.url}/healthz`, agent)));
      expect(st).toEqual(Array(8).fill(200));
      const held = await Promise.all(workers.map((w) => connectionsHeld(w, s.port)));
      expect(
        held.every((n) => n > 0),
        `connections per worker: ${held.join(', ')}`,
      ).toBe(true);
    } finally {
      agent.destroy();
    }
    process.kill(workers[0]!, 'SIGKILL');
    const next = await until(
      () => childrenOf(s.proc.pid!),
      (w) => w.length === 2 && !w.includes(workers[0]!),
    );
    expect(next).toHaveLength(2);
    expect(next).toContain(workers[1]);
    expect(s.stderr()).toMatch(
      new RegExp(`serve worker ${workers[0]} exited \\(SIGKILL\\); starting another in 250 ms`),
    );
    const after = await until(
      () => checkIn(s.url),
      (r) => r.status === 201,
    );
    expect(after.status).toBe(201);
  });

  it('maintenance set in the database by another host reaches both workers, and so does its end', async () => {
    // Another host's data dir: this host's file stays absent, only the row in the database says it.
    const elsewhere = join(tmpdir(), `attendux-elsewhere-${process.pid}`);
    const { mkdir, rm } = await import('node:fs/promises');
    await mkdir(elsewhere, { recursive: true });
    try {
      await enterMaintenance(elsewhere, {
        reason: 'restore elsewhere',
        retryAfterSeconds: 30,
        dbUrl: db.adminUrl,
      });
      // Each on a connection of its own, so both workers are asked.
      const on = await until(
        () => Promise.all(Array.from({ length: 6 }, () => checkIn(s.url))),
        (rs) => rs.every((r) => r.status === 503),
      );
      expect(on.map((r) => r.status)).toEqual(Array(6).fill(503));
      expect(JSON.parse(on[0]!.body)).toMatchObject({ error: { code: 'MAINTENANCE' } });
      await leaveMaintenance(elsewhere, [db.adminUrl]);
      const off = await until(
        () => Promise.all(Array.from({ length: 6 }, () => checkIn(s.url))),
        (rs) => rs.every((r) => r.status === 201),
      );
      expect(off.map((r) => r.status)).toEqual(Array(6).fill(201));
    } finally {
      await leaveMaintenance(elsewhere, [db.adminUrl]);
      await rm(elsewhere, { recursive: true, force: true });
    }
  });

  it('the rate limit is one count across both workers (Redis)', async () => {
    // 6 per minute per client address for security.txt: with a count per process, 10 requests split over
    // two workers would all pass.
    const rs = [];
    for (let i = 0; i < 10; i++) rs.push(await fresh(`${s.url}/.well-known/security.txt`));
    expect(rs.map((r) => r.status)).toEqual([...Array(6).fill(200), ...Array(4).fill(429)]);
  });
});

describe('serve with a dead Redis', () => {
  it('fails open: requests are served without rate limits', async () => {
    const dead = await freePort();
    await configure({ redisUrl: `redis://127.0.0.1:${dead}`, publicRateLimitPerMinute: 2 });
    const s = await startServe(ti.configPath);
    try {
      const rs = [];
      for (let i = 0; i < 5; i++) rs.push(await fresh(`${s.url}/.well-known/security.txt`));
      expect(rs.map((r) => r.status)).toEqual(Array(5).fill(200));
      expect((await checkIn(s.url)).status).toBe(201);
      expect(await s.stop()).toBe(0);
    } finally {
      s.proc.kill('SIGKILL');
    }
  });

  it('with Redis up, the same limit refuses the third request (the control)', async () => {
    await configure({ redisUrl: `redis://127.0.0.1:${redis.port}/1`, publicRateLimitPerMinute: 2 });
    const s = await startServe(ti.configPath);
    try {
      const rs = [];
      for (let i = 0; i < 3; i++) rs.push(await fresh(`${s.url}/.well-known/security.txt`));
      expect(rs.map((r) => r.status)).toEqual([200, 200, 429]);
      expect(await s.stop()).toBe(0);
    } finally {
      s.proc.kill('SIGKILL');
    }
  });
});
