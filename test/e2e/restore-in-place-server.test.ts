import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedReference } from '../../bench/seed.js';
import { backupFull } from '../../src/core/backup/full.js';
import type { Pool } from '../../src/db/pool.js';
import { freePort } from '../helpers/global-setup.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { dropDatabases } from '../helpers/restore.js';
import {
  adminPool,
  createTestInstall,
  seedCompany,
  type Company,
  type TestInstall,
} from '../helpers/server.js';

const BIN = new URL('../../bin/attendux.js', import.meta.url).pathname;
let db: TestDatabase;
let ti: TestInstall;
let admin: Pool;
let acme: Company;
let identityFile: string;
let server: { proc: ChildProcess; url: string };

async function startServer(): Promise<{ proc: ChildProcess; url: string }> {
  const port = await freePort();
  const proc = spawn(process.execPath, [BIN, 'serve', '--config', ti.configPath, '--port', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ATTENDUX_SERVER_LOG_LEVEL: 'silent' },
  });
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}`)), 30_000);
    proc.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /serving on (\S+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
  });
  return { proc, url };
}

async function events(): Promise<number> {
  const r = await fetch(`${server.url}/api/v1/attendance/events?limit=500`, {
    headers: { authorization: `Bearer ${acme.keys.read}` },
  });
  expect(r.status).toBe(200);
  return ((await r.json()) as { events: unknown[] }).events.length;
}

beforeAll(async () => {
  db = await createTestDatabase('e2einplace');
  ti = await createTestInstall(db);
  admin = adminPool(db);
  acme = await seedCompany(admin, ti.secrets.apiKeyHmacKey, 'acme');
  await admin.query(
    `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, geofence, method)
     SELECT $1, $2, CASE WHEN g % 2 = 0 THEN 'check_in' ELSE 'check_out' END, now() - g * interval '1 hour', 'unknown', 'manual'
       FROM generate_series(1, 120) g`,
    [acme.id, acme.employeeId],
  );
  // Bulk, so that the restore takes long enough for the server's 1 s maintenance check to notice it.
  await seedReference(admin, { companies: 3, employees: 30, events: 60_000 });
  identityFile = join(ti.dir, 'identity.txt');
  execFileSync('age-keygen', ['-o', identityFile], { stdio: 'pipe' });
  const recipient = /public key: (age1\S+)/.exec(await readFile(identityFile, 'utf8'))![1]!;
  const config = JSON.parse(await readFile(ti.configPath, 'utf8')) as Record<string, unknown>;
  config.backup = { recipients: [recipient] };
  await writeFile(ti.configPath, JSON.stringify(config));
  await backupFull({ configPath: ti.configPath });
  server = await startServer();
});

afterAll(async () => {
  server?.proc.kill('SIGTERM');
  await admin?.end();
  const c = await import('../../src/db/pool.js').then((m) => m.connectClient(db.superuserUrl));
  const { rows } = await c.query<{ datname: string }>(
    `SELECT datname FROM pg_database WHERE datname LIKE $1 || '\\_old\\_%'`,
    [db.name],
  );
  await c.end();
  await dropDatabases(
    db.superuserUrl,
    rows.map((r) => r.datname),
  );
  await ti?.cleanup();
  await db?.drop();
});

describe('restore --in-place with a running server', () => {
  it('serves 503 with Retry-After during the restore and the restored data afterwards', async () => {
    expect(await events()).toBe(120);
    await admin.query('DELETE FROM attendance_events WHERE tenant_id = $1', [acme.id]);
    expect(await events()).toBe(0);

    const seen: { status: number; retryAfter: string | null }[] = [];
    let polling = true;
    let restoreDone = false;
    // The event to wait for: the server answering ready again once the restore has finished (it re-reads
    // the maintenance file at most once a second).
    let readyAgain!: () => void;
    const servingAgain = new Promise<void>((res) => (readyAgain = res));
    const poller = (async () => {
      while (polling) {
        const r = await fetch(`${server.url}/readyz`).catch(() => null);
        if (r) {
          seen.push({ status: r.status, retryAfter: r.headers.get('retry-after') });
          await r.body?.cancel();
          if (restoreDone && r.status === 200) readyAgain();
        }
        await new Promise((res) => setTimeout(res, 25));
      }
    })();
    const restore = spawn(
      process.execPath,
      [BIN, '--config', ti.configPath, 'restore', '--in-place', '--yes', '-i', identityFile],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    restore.stdout.on('data', (d: Buffer) => (out += d.toString()));
    restore.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((res) => restore.on('exit', res));
    expect(out).toMatch(new RegExp(`restored ${db.name} to .* in place`));
    expect(code).toBe(0);
    restoreDone = true;
    await servingAgain;
    polling = false;
    await poller;

    const during = seen.filter((s) => s.status === 503);
    expect(during.length).toBeGreaterThan(0);
    expect(during.every((s) => s.retryAfter === '120')).toBe(true);
    expect(seen[seen.length - 1]!.status).toBe(200);
    // The first request after the swap may meet a session the swap ended; the pool replaces it.
    await fetch(`${server.url}/api/v1/attendance/events`, {
      headers: { authorization: `Bearer ${acme.keys.read}` },
    }).catch(() => undefined);
    expect(await events()).toBe(120);
  });
});
