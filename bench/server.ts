/**
 * Server benchmark: authenticated kiosk check-ins (API key with the check-in scope, geofence verdict, audit
 * entry in the same transaction, row-level security as the app role) against a bare Fastify + pg INSERT
 * endpoint, both measured in the same run on the same freshly seeded database.
 *
 *   npm run build && npx tsx bench/server.ts [--url postgres://postgres@127.0.0.1:5432/postgres]
 *       [--companies 50] [--employees 5000] [--events 1000000] [--seconds 10] [--connections 20] [--rate 300]
 *       [--rounds 3] [--pool-size 10] [--profile DIR] [--workers 1,2]
 *
 * Prints throughput of both, the ratio (goal >= 0.6) and p99 latency at a fixed 300 requests/s (goal <= 15 ms).
 * --workers lists the `serve --workers` counts to measure (each against the same baseline, alternating in
 * every round); the pool size is per worker.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connectClient, createPool, ddl } from '../src/db/pool.js';
import { provisionDatabase } from '../src/db/provision.js';
import { runMigrations } from '../src/db/migrate.js';
import { generateApiKey } from '../src/crypto/apikey.js';
import { randomKey } from '../src/crypto/random.js';
import { seedReference } from './seed.js';

interface Result {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; average: number };
  non2xx: number;
  errors: number;
}
type Autocannon = (opts: Record<string, unknown>) => Promise<Result>;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/postgres' },
    companies: { type: 'string', default: '50' },
    employees: { type: 'string', default: '5000' },
    events: { type: 'string', default: '1000000' },
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string', default: '20' },
    rate: { type: 'string', default: '300' },
    'pool-size': { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    /** Append the servers' stdout (attendux: JSON logs at server.logLevel) to this file. */
    'server-log': { type: 'string' },
    'log-level': { type: 'string', default: 'warn' },
    /** Write a CPU profile of the attendux server process into this directory. */
    profile: { type: 'string' },
    workers: { type: 'string', default: '1' },
    /** Another checkout's bin/attendux.js (built), measured as "before" in the same rounds. */
    'compare-bin': { type: 'string' },
  },
});
const seconds = Number(values.seconds);
const connections = Number(values.connections);
const poolSize = Number(values['pool-size']);
const workerCounts = values.workers.split(',').map(Number);

const database = `attendux_bench_${process.pid}`;
const PASSWORD = 'bench-password';
const OWNER = 'attendux_bench_owner';
const APP = 'attendux_bench_app';
function urlFor(user: string): string {
  const u = new URL(values.url);
  u.username = user;
  u.password = PASSWORD;
  u.pathname = `/${database}`;
  return u.toString();
}

function start(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(cmd, args, {
    stdio: ['ignore', values['server-log'] ? openSync(values['server-log'], 'a') : 'ignore', 'pipe'],
    env: { ...process.env, ...env },
  });
  let err = '';
  return new Promise((resolve, reject) => {
    proc.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /serving on (\S+)/.exec(err);
      if (m) resolve({ proc, url: m[1]! });
    });
    proc.on('exit', (code) => reject(new Error(`${cmd} exited ${code}: ${err}`)));
  });
}

async function stop(proc: ChildProcess): Promise<void> {
  const done = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await done;
}

interface Phases {
  max: Result;
  fixed: Result;
  /** CPU time per request served (warm-up included) of the server's processes and its database sessions. */
  cpuMs: { server: number; db: number };
}

const CLOCK_TICK_MS = 10; // USER_HZ is 100 on Linux

/** utime + stime of a process and its children still running (serve --workers), from /proc, in ms. */
async function processCpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11] ?? 0) + Number(f[12] ?? 0)) * CLOCK_TICK_MS;
}

/**
 * CPU the server used so far (its processes) and its PostgreSQL sessions (every backend on the bench
 * database but ours), read before it stops: less sensitive to the rest of a loaded machine than req/s.
 */
async function cpuOf(pid: number, db: string): Promise<{ server: number; db: number }> {
  const pids = [pid];
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const stat = await readFile(`/proc/${e}/stat`, 'utf8').catch(() => '');
    if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) pids.push(Number(e));
  }
  let server = 0;
  for (const p of pids) server += await processCpuMs(p);
  const { rows } = await su.query<{ pid: number }>(
    'SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
    [db],
  );
  let dbMs = 0;
  for (const r of rows) dbMs += await processCpuMs(r.pid);
  return { server, db: dbMs };
}

interface Target {
  path: string;
  headers: (i: number) => Record<string, string>;
  body: (i: number) => string;
}

async function load(url: string, t: Target, rate?: number): Promise<Result> {
  let i = 0;
  return autocannon({
    url,
    connections: rate ? Math.min(connections, 10) : connections,
    duration: seconds,
    ...(rate ? { overallRate: rate } : {}),
    requests: [
      {
        method: 'POST',
        path: t.path,
        setupRequest: (req: Record<string, unknown>) => {
          const n = i++;
          return {
            ...req,
            headers: { 'content-type': 'application/json', ...t.headers(n) },
            body: t.body(n),
          };
        },
      },
    ],
  });
}

const su = await connectClient(values.url);
const dir = await mkdtemp(join(tmpdir(), 'attendux-bench-'));
try {
  await provisionDatabase({
    existingRoles: 'reset',
    superuserUrl: values.url,
    database,
    ownerRole: OWNER,
    ownerPassword: PASSWORD,
    appRole: APP,
    appPassword: PASSWORD,
  });
  await runMigrations({ adminUrl: urlFor(OWNER), appRole: APP, direction: 'up' });
  const admin = createPool(urlFor(OWNER), 2);
  const t0 = Date.now();
  await seedReference(admin, {
    companies: Number(values.companies),
    employees: Number(values.employees),
    events: Number(values.events),
  });
  const seededIn = (Date.now() - t0) / 1000;
  const secrets = {
    sessionKey: randomKey(),
    apiKeyHmacKey: randomKey(),
    auditPepper: randomKey(),
    dataKeys: { k1: randomKey() },
    activeDataKeyId: 'k1',
    database: {},
  };
  // One kiosk key per company, and every employee with the position of their company's site.
  const { rows: tenants } = await admin.query<{ id: string }>(
    `SELECT id FROM tenants WHERE slug LIKE 'bench-%' ORDER BY slug`,
  );
  const keyOf = new Map<string, string>();
  for (const t of tenants) {
    const k = generateApiKey(secrets.apiKeyHmacKey);
    await admin.query(
      `INSERT INTO api_keys (tenant_id, name, prefix, secret_hmac, scopes, created_by) VALUES ($1, 'kiosk', $2, $3, '{check-in}', 'bench')`,
      [t.id, k.prefix, k.secretHmac],
    );
    keyOf.set(t.id, k.key);
  }
  const { rows: emps } = await admin.query<{
    tenant_id: string;
    id: string;
    latitude: number;
    longitude: number;
  }>(
    `SELECT e.tenant_id, e.id, s.latitude, s.longitude FROM employees e JOIN sites s ON s.tenant_id = e.tenant_id
      WHERE e.tenant_id IN (SELECT id FROM tenants WHERE slug LIKE 'bench-%') ORDER BY random()`,
  );
  await admin.end();

  await writeFile(join(dir, 'attendux.secrets.json'), JSON.stringify(secrets), { mode: 0o600 });
  await writeFile(
    join(dir, 'attendux.json'),
    JSON.stringify({
      dataDir: 'data',
      database: { url: urlFor(APP), adminUrl: urlFor(OWNER), appRole: APP, poolSize },
      // The bench drives thousands of requests per second from one address: far above the per-IP limit.
      server: { logLevel: values['log-level'], rateLimitPerMinute: 100_000_000 },
    }),
  );

  const attendux: Target = {
    path: '/api/v1/attendance/check-in',
    headers: (n) => ({ authorization: `Bearer ${keyOf.get(emps[n % emps.length]!.tenant_id)}` }),
    body: (n) => {
      const e = emps[n % emps.length]!;
      return JSON.stringify({
        employeeId: e.id,
        position: { latitude: e.latitude + 0.0002, longitude: e.longitude, accuracy: 12 },
      });
    },
  };
  const baseline: Target = {
    path: '/checkin',
    headers: () => ({}),
    body: (n) => {
      const e = emps[n % emps.length]!;
      return JSON.stringify({
        tenantId: e.tenant_id,
        employeeId: e.id,
        latitude: e.latitude,
        longitude: e.longitude,
        accuracy: 12,
      });
    },
  };

  // Baseline and attendux alternate, round after round, so that noise from the rest of the machine hits both;
  // the medians are reported.
  const names = [
    'baseline',
    ...workerCounts.map((w) => `attendux${w > 1 ? `x${w}` : ''}`),
    ...(values['compare-bin'] ? ['before'] : []),
  ];
  const rounds: Record<string, Phases>[] = [];
  for (let round = 0; round < Number(values.rounds); round++) {
    const r: (typeof rounds)[number] = {};
    for (const [i, name] of names.entries()) {
      const workers = name === 'before' ? 1 : (workerCounts[i - 1] ?? 1);
      const srv =
        i > 0
          ? await start(process.execPath, [
              ...(values.profile ? ['--cpu-prof', `--cpu-prof-dir=${values.profile}`] : []),
              name === 'before' ? values['compare-bin']! : 'bin/attendux.js',
              'serve',
              '--config',
              join(dir, 'attendux.json'),
              '--port',
              '0',
              ...(workers > 1 ? ['--workers', String(workers)] : []),
            ])
          : await start(process.execPath, [
              '--import',
              'tsx',
              'bench/baseline-server.ts',
              urlFor(OWNER),
              '0',
              String(poolSize),
            ]);
      const target = i > 0 ? attendux : baseline;
      try {
        // warm-up (JIT, pool, caches); a failed warm-up shows in the phases after it
        const warm = await load(srv.url, target, undefined).catch(() => undefined);
        const max = await load(srv.url, target);
        const fixed = await load(srv.url, target, Number(values.rate));
        const served = (warm?.requests.total ?? 0) + max.requests.total + fixed.requests.total;
        const cpu = await cpuOf(srv.proc.pid!, database);
        r[name] = { max, fixed, cpuMs: { server: cpu.server / served, db: cpu.db / served } };
      } finally {
        await stop(srv.proc);
      }
    }
    rounds.push(r);
  }
  const median = (xs: number[]) => {
    const s = [...xs].sort((x, y) => x - y);
    return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  };
  const line = (n: string, r: Phases) =>
    `${n.padEnd(11)} ${r.max.requests.average.toFixed(0).padStart(7)} req/s  p99 ${String(r.max.latency.p99).padStart(4)} ms (saturated)  p99 ${String(r.fixed.latency.p99).padStart(3)} ms at ${values.rate} req/s  CPU/request: server ${r.cpuMs.server.toFixed(2)} ms, PostgreSQL ${r.cpuMs.db.toFixed(2)} ms  non-2xx ${r.max.non2xx + r.fixed.non2xx}  errors ${r.max.errors + r.fixed.errors}`;
  console.log(
    `seeded ${values.companies} companies, ${values.employees} employees, ${values.events} events in ${seededIn.toFixed(1)} s`,
  );
  console.log(
    `${seconds} s per phase, ${connections} connections (saturated), pool ${poolSize}, ${rounds.length} round(s)`,
  );
  rounds.forEach((r, i) => {
    console.log(`round ${i + 1}`);
    for (const n of names) console.log(line(n, r[n]!));
  });
  const p99Base = median(rounds.map((r) => r.baseline!.fixed.latency.p99));
  for (const n of names.slice(1)) {
    const ratio = median(rounds.map((r) => r[n]!.max.requests.average / r.baseline!.max.requests.average));
    const p99 = median(rounds.map((r) => r[n]!.fixed.latency.p99));
    console.log(`throughput ratio ${n}/baseline (median): ${ratio.toFixed(2)} (goal >= 0.60)`);
    console.log(
      `${n} p99 at ${values.rate} req/s (median): ${p99} ms (goal <= 15 ms); baseline ${p99Base} ms`,
    );
  }
} finally {
  await rm(dir, { recursive: true, force: true });
  await ddl(su, 'DROP DATABASE IF EXISTS %I WITH (FORCE)', database).catch(() => undefined);
  await su.end();
}
