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
import { execFileSync } from 'node:child_process';
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { connectClient, ddl } from '../src/db/pool.js';
import {
  attendux,
  dropDb,
  ensureDatabase,
  f,
  ROOT,
  su,
  timed,
  urlFor,
  values,
  writeInstall as writeInstallIn,
  type Timed,
} from './common.js';

const WORK = join(ROOT, 'bench/.data/restore');
const writeInstall = (name: string) => writeInstallIn(WORK, name);

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
