/**
 * Restore benchmark (issue 5). In one run, on the reference database (bench/seed.ts) in the PostgreSQL on
 * 127.0.0.1:5432, after a full backup and four incrementals (each changing ~1% of the attendance events):
 *   - `pg_restore -j1` and `-j2` of a `pg_dump -Fc` dump of the same state (Debian's tools, unencrypted)
 *   - `attendux restore --into` of the full plus the four incrementals (the real binary: decrypt, verify,
 *     load, apply, keys, foreign keys, sequences, audit entry)
 * and prints the ratios (goals: <= 0.8x pg_restore -j1, <= 1.0x pg_restore -j2) and attendux's peak RSS
 * (goal <= 200 MB).
 *
 *   npx tsx bench/restore.ts [--events 2000000] [--companies 200] [--reseed]
 *
 * The source database attendux_bench_restore is kept between runs; --reseed recreates it. Work files live in
 * bench/.data/restore.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { seedReference } from './seed.js';
import { connectClient, createPool, ddl } from '../src/db/pool.js';
import { provisionDatabase } from '../src/db/provision.js';
import { runMigrations } from '../src/db/migrate.js';

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/postgres' },
    events: { type: 'string', default: '2000000' },
    companies: { type: 'string', default: '200' },
    employees: { type: 'string', default: '5000' },
    reseed: { type: 'boolean', default: false },
  },
});

const ROOT = new URL('..', import.meta.url).pathname;
const BIN = join(ROOT, 'bin/attendux.js');
const WORK = join(ROOT, 'bench/.data/restore');
const PASSWORD = 'attendux-bench-password';
const su = values.url;

function urlFor(db: string, user: string): string {
  const u = new URL(su);
  u.username = user;
  u.password = PASSWORD;
  u.pathname = `/${db}`;
  return u.toString();
}

async function ensureDatabase(
  name: string,
  events: number,
  companies: number,
  employees: number,
): Promise<void> {
  const c = await connectClient(su);
  let exists: boolean;
  try {
    if (values.reseed) await ddl(c, 'DROP DATABASE IF EXISTS %I WITH (FORCE)', name);
    exists = (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1;
  } finally {
    await c.end();
  }
  const owner = `${name}_owner`;
  if (exists) {
    const pool = createPool(urlFor(name, owner), 1);
    const { rows } = await pool
      .query<{ n: number }>('SELECT count(*)::int AS n FROM attendance_events')
      .catch(() => ({ rows: [{ n: 0 }] }));
    await pool.end();
    if (rows[0]!.n >= events) return;
    const c2 = await connectClient(su);
    await ddl(c2, 'DROP DATABASE IF EXISTS %I WITH (FORCE)', name);
    await c2.end();
  }
  await provisionDatabase({
    superuserUrl: su,
    database: name,
    ownerRole: owner,
    ownerPassword: PASSWORD,
    appRole: `${name}_app`,
    appPassword: PASSWORD,
  });
  await runMigrations({ adminUrl: urlFor(name, owner), appRole: `${name}_app`, direction: 'up' });
  const pool = createPool(urlFor(name, owner), 2);
  const t0 = Date.now();
  process.stdout.write(`seeding ${name}: ${events} events over ${companies} companies... `);
  await seedReference(pool, { companies, employees, events });
  await pool.end();
  console.log(`${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

async function writeInstall(name: string): Promise<{ config: string; identity: string }> {
  const dir = join(WORK, name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const identity = join(dir, 'identity.txt');
  execFileSync('age-keygen', ['-o', identity], { stdio: 'pipe' });
  const recipient = /public key: (age1\S+)/.exec(await readFile(identity, 'utf8'))![1]!;
  const config = join(dir, 'attendux.json');
  await writeFile(
    config,
    JSON.stringify({
      dataDir: 'data',
      database: {
        url: urlFor(name, `${name}_app`),
        adminUrl: urlFor(name, `${name}_owner`),
        appRole: `${name}_app`,
      },
      backup: { recipients: [recipient] },
    }),
  );
  const key = () => randomBytes(32).toString('base64');
  await writeFile(
    join(dir, 'attendux.secrets.json'),
    JSON.stringify({
      sessionKey: key(),
      apiKeyHmacKey: key(),
      auditPepper: key(),
      dataKeys: { k1: key() },
      activeDataKeyId: 'k1',
    }),
    { mode: 0o600 },
  );
  return { config, identity };
}

interface Timed {
  seconds: number;
  peakRssMb: number;
  stdout: string;
}

/** Run a command under /usr/bin/time -v: wall time and peak RSS of the process. */
function timed(cmd: string, args: string[]): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn('/usr/bin/time', ['-v', cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (code !== 0)
        return reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.slice(-2000)}`));
      const kb = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(err)?.[1] ?? 0);
      resolve({ seconds, peakRssMb: kb / 1024, stdout: out });
    });
  });
}

const attendux = (config: string, ...args: string[]) => timed('node', [BIN, '--config', config, ...args]);
const f = (n: number, d = 2) => n.toFixed(d);

async function dropDb(name: string): Promise<void> {
  const c = await connectClient(su);
  try {
    await ddl(c, 'DROP DATABASE IF EXISTS %I WITH (FORCE)', name);
  } finally {
    await c.end();
  }
}

/** pg_restore into a fresh database owned by the same owner, as the superuser (as a sysadmin would). */
async function pgRestore(dump: string, jobs: number, source: string): Promise<Timed> {
  const target = `${source}_pgr${jobs}`;
  await dropDb(target);
  const c = await connectClient(su);
  try {
    await ddl(c, "CREATE DATABASE %I OWNER %I ENCODING 'UTF8' TEMPLATE template0", target, `${source}_owner`);
  } finally {
    await c.end();
  }
  const u = new URL(su);
  u.pathname = `/${target}`;
  try {
    return await timed('pg_restore', [`-j${jobs}`, '-d', u.toString(), dump]);
  } finally {
    await dropDb(target);
  }
}

async function main(): Promise<void> {
  const events = Number(values.events);
  const companies = Number(values.companies);
  const employees = Number(values.employees);
  await mkdir(WORK, { recursive: true });
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });

  const name = 'attendux_bench_restore';
  await ensureDatabase(name, events, companies, employees);
  const inst = await writeInstall(name);
  console.log('full backup + 4 incrementals...');
  await attendux(inst.config, 'backup', 'full');
  const owner = urlFor(name, `${name}_owner`);
  let changed = 0;
  for (let i = 0; i < 4; i++) {
    const c = await connectClient(owner);
    const r = await c.query('UPDATE attendance_events SET flagged = NOT flagged WHERE id % 100 = $1', [
      i * 7,
    ]);
    changed += r.rowCount ?? 0;
    await c.end();
    await attendux(inst.config, 'backup', 'incremental');
  }
  const c = await connectClient(owner);
  const { rows: sz } = await c.query<{ db: string }>(
    'SELECT pg_size_pretty(pg_database_size(current_database())) AS db',
  );
  await c.end();

  const dump = join(WORK, 'pg_dump.Fc');
  await timed('pg_dump', ['-Fc', '-f', dump, owner]);
  const dumpBytes = (await stat(dump)).size;
  console.log('pg_restore -j1, -j2, attendux restore...');
  const j1 = await pgRestore(dump, 1, name);
  const j2 = await pgRestore(dump, 2, name);
  await rm(dump, { force: true });

  const into = `${name}_attendux`;
  await dropDb(into);
  const ours = await attendux(inst.config, 'restore', '--into', into, '--identity', inst.identity, '--json');
  const r = JSON.parse(ours.stdout) as { plan: { steps: unknown[]; totalBytes: number }; changes: number };
  await dropDb(into);

  const mb = (b: number) => b / 1024 / 1024;
  console.log(
    [
      `reference database: ${events} events, ${companies} companies (${sz[0]!.db}); PostgreSQL 15 on 127.0.0.1`,
      `chain: full + 4 incrementals (${changed} event updates), ${f(mb(r.plan.totalBytes), 1)} MB encrypted; pg_dump -Fc ${f(mb(dumpBytes), 1)} MB`,
      `pg_restore -j1                  ${f(j1.seconds)} s   peak RSS ${f(j1.peakRssMb, 0)} MB`,
      `pg_restore -j2                  ${f(j2.seconds)} s   peak RSS ${f(j2.peakRssMb, 0)} MB`,
      `attendux restore (${r.plan.steps.length} files, ${r.changes} changes)  ${f(ours.seconds)} s   peak RSS ${f(ours.peakRssMb, 0)} MB`,
      `  ratio attendux / pg_restore -j1  ${f(ours.seconds / j1.seconds)}   (goal <= 0.80)`,
      `  ratio attendux / pg_restore -j2  ${f(ours.seconds / j2.seconds)}   (goal <= 1.00)`,
      `  peak RSS                         ${f(ours.peakRssMb, 0)} MB   (goal <= 200 MB)`,
    ].join('\n'),
  );
}

await main();
