/**
 * Backup benchmark (issue 4). In one run, on the reference database (bench/seed.ts) in the PostgreSQL on
 * 127.0.0.1:5432:
 *   - `pg_dump -Fc` (Debian's pg_dump, unencrypted) vs `attendux backup full` (the real binary, encrypted):
 *     wall time ratio (goal <= 0.6) and attendux's peak RSS (goal <= 150 MB), also on a 10x smaller
 *     database to show it does not grow with the data;
 *   - an incremental after changing 1% of the attendance events: time and size vs the full (goal <= 5%);
 *   - `backup verify` throughput in MB/s of backup (goal >= 100).
 *
 *   npx tsx bench/backup.ts [--events 2000000] [--companies 200] [--reseed]
 *
 * Databases attendux_bench_backup / attendux_bench_backup_small are kept between runs (seeding 2M events
 * with change capture takes a while); --reseed recreates them. Work files live in bench/.data/backup.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { connectClient } from '../src/db/pool.js';
import {
  attendux,
  ensureDatabase,
  f,
  ROOT,
  timed,
  urlFor,
  values,
  writeInstall as writeInstallIn,
  type Timed,
} from './common.js';

const WORK = join(ROOT, 'bench/.data/backup');
const writeInstall = (name: string) => writeInstallIn(WORK, name);
const ROUNDS = 3;

function median(xs: Timed[]): Timed {
  return [...xs].sort((a, b) => a.seconds - b.seconds)[Math.floor(xs.length / 2)]!;
}

async function main(): Promise<void> {
  const events = Number(values.events);
  const companies = Number(values.companies);
  const employees = Number(values.employees);
  await mkdir(WORK, { recursive: true });
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });

  const big = 'attendux_bench_backup';
  const small = 'attendux_bench_backup_small';
  await ensureDatabase(big, events, companies, employees);
  await ensureDatabase(
    small,
    Math.floor(events / 10),
    Math.max(1, Math.floor(companies / 10)),
    Math.floor(employees / 10),
  );
  const bigInst = await writeInstall(big);
  const smallInst = await writeInstall(small);

  // Warm-up: the first full trims the change log the seed filled, and warms the cache for both tools alike.
  console.log('warm-up full backups...');
  await attendux(bigInst.config, 'backup', 'full');
  await attendux(smallInst.config, 'backup', 'full');
  const c = await connectClient(urlFor(big, `${big}_owner`));
  // The seed's change rows were trimmed by the warm-up; give the space back so pg_dump does not scan it.
  await c.query('VACUUM FULL change_log');
  const { rows: sz } = await c.query<{ db: string }>(
    'SELECT pg_size_pretty(pg_database_size(current_database())) AS db',
  );
  await c.end();

  // The machines are shared and noisy: alternate the two tools ROUNDS times and compare medians.
  const dumpFile = join(WORK, 'pg_dump.Fc');
  const dumps: Timed[] = [];
  const fulls: Timed[] = [];
  let dumpBytes = 0;
  for (let r = 0; r < ROUNDS; r++) {
    dumps.push(await timed('pg_dump', ['-Fc', '-f', dumpFile, urlFor(big, `${big}_owner`)]));
    dumpBytes = (await stat(dumpFile)).size;
    await rm(dumpFile, { force: true });
    fulls.push(await attendux(bigInst.config, 'backup', 'full', '--json'));
  }
  const dump = median(dumps);
  const full = median(fulls);
  const fullSide = (JSON.parse(full.stdout) as { sidecar: { id: string; bytes: number; durationMs: number } })
    .sidecar;
  const peakRss = Math.max(...fulls.map((t) => t.peakRssMb));
  const smallFull = await attendux(smallInst.config, 'backup', 'full', '--json');

  const u = await connectClient(urlFor(big, `${big}_owner`));
  const { rowCount } = await u.query('UPDATE attendance_events SET flagged = NOT flagged WHERE id % 100 = 0');
  await u.end();
  const inc = await attendux(bigInst.config, 'backup', 'incremental', '--json');
  const incSide = (JSON.parse(inc.stdout) as { sidecar: { bytes: number; rows: number; durationMs: number } })
    .sidecar;

  const verify = await attendux(
    bigInst.config,
    'backup',
    'verify',
    fullSide.id,
    '--identity',
    bigInst.identity,
    '--json',
  );
  const v = (JSON.parse(verify.stdout) as { backups: { bytes: number; seconds: number }[] }).backups[0]!;

  const mb = (b: number) => b / 1024 / 1024;
  const lines = [
    `reference database: ${events} events, ${companies} companies (${sz[0]!.db}); PostgreSQL 15 on 127.0.0.1`,
    `pg_dump -Fc (unencrypted)       ${f(dump.seconds)} s   ${f(mb(dumpBytes), 1)} MB   (median of ${dumps.map((d) => f(d.seconds)).join(', ')})`,
    `attendux backup full (age)      ${f(full.seconds)} s   ${f(mb(fullSide.bytes), 1)} MB   peak RSS ${f(peakRss, 0)} MB   (median of ${fulls.map((d) => f(d.seconds)).join(', ')})`,
    `  ratio full / pg_dump          ${f(full.seconds / dump.seconds)}   (goal <= 0.60)`,
    `  peak RSS on a 10x smaller db  ${f(smallFull.peakRssMb, 0)} MB   (goal: <= 150 MB, not growing with the data)`,
    `incremental after ${rowCount} updates (1%)  ${f(inc.seconds)} s   ${f(mb(incSide.bytes), 2)} MB   ${incSide.rows} changes`,
    `  ratio incremental / full time ${f(inc.seconds / full.seconds, 3)} wall incl. process start-up, ${f(incSide.durationMs / fullSide.durationMs, 3)} of the backup work itself   (goal <= 0.05)`,
    `  ratio incremental / full size ${f(incSide.bytes / fullSide.bytes, 3)}   (goal <= 0.05)`,
    `backup verify --identity        ${f(verify.seconds)} s wall, ${f(v.seconds)} s reading   ${f(mb(v.bytes) / v.seconds, 0)} MB/s (${f(mb(v.bytes) / verify.seconds, 0)} MB/s incl. start-up)   (goal >= 100)`,
  ];
  console.log(lines.join('\n'));
}

await main();
