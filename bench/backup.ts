/**
 * Backup benchmark (issues 4 and 17). In one run, on the reference database (bench/seed.ts) in the PostgreSQL
 * on 127.0.0.1:5432, alternating rounds, medians compared:
 *   - the peers an admin would script, `pg_dump -Fc | age -r KEY` and `pg_dump -Fc -Z1 | age -r KEY`, and
 *     plain `pg_dump -Fc` (unencrypted), vs `attendux backup full` (the real binary, encrypted): wall time
 *     ratios (goal <= 0.8 of the -Z1 pipeline at an equal or smaller size) and attendux's peak RSS (goal <=
 *     150 MB), also on a 10x smaller database to show it does not grow with the data;
 *   - the floor: `COPY ... TO STDOUT` of every table on one connection into /dev/null, text (what pg_dump
 *     reads) and binary (what attendux reads);
 *   - an incremental after changing 1% of the attendance events: time and size vs the full (goal <= 5%);
 *   - `backup verify` throughput in MB/s of backup (goal >= 100).
 *
 *   npx tsx bench/backup.ts [--events 2000000] [--companies 200] [--reseed]
 *
 * Databases attendux_bench_backup / attendux_bench_backup_small are kept between runs (seeding 2M events
 * with change capture takes a while); --reseed recreates them. ATTENDUX_BENCH_DB names other ones (helpers
 * benchmarking side by side on one server must not share them). Work files live in bench/.data/backup.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
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
const BASE = process.env.ATTENDUX_BENCH_DB ?? 'attendux_bench_backup';
const writeInstall = (name: string) => writeInstallIn(WORK, name);

function median(xs: Timed[]): Timed {
  return [...xs].sort((a, b) => a.seconds - b.seconds)[Math.floor(xs.length / 2)]!;
}

/** A shell pipeline timed as one command (pipefail: a failing pg_dump fails the round). */
const sh = (script: string, ...args: string[]) =>
  timed('bash', ['-c', `set -o pipefail; ${script}`, 'sh', ...args]);

interface Contender {
  label: string;
  run: () => Promise<Timed>;
  /** Size of what the round wrote, in bytes. */
  size: (t: Timed) => Promise<number>;
  times: Timed[];
  bytes: number;
}

/** The table names, biggest first, to COPY for the floor. */
async function tableNames(db: string): Promise<string[]> {
  const c = await connectClient(urlFor(db, `${db}_owner`));
  try {
    const { rows } = await c.query<{ t: string }>(
      `SELECT format('%I', t) AS t FROM attendux_backup_tables() t
        ORDER BY pg_relation_size(format('%I', t)::regclass) DESC`,
    );
    return rows.map((r) => r.t);
  } finally {
    await c.end();
  }
}

async function main(): Promise<void> {
  const events = Number(values.events);
  const companies = Number(values.companies);
  const employees = Number(values.employees);
  await mkdir(WORK, { recursive: true });
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });

  const big = BASE;
  const small = `${BASE}_small`;
  // Big databases take minutes per round; the noise is smaller relative to them.
  const ROUNDS = events > 5_000_000 ? 3 : 5;
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

  // The machines are shared and noisy: alternate the contenders ROUNDS times and compare medians.
  const url = urlFor(big, `${big}_owner`);
  const recipient = /public key: (age1\S+)/.exec(await readFile(bigInst.identity, 'utf8'))![1]!;
  const out = join(WORK, 'peer.out');
  const fileSize = async () => {
    const n = (await stat(out)).size;
    await rm(out, { force: true });
    return n;
  };
  const copies = (await tableNames(big)).flatMap((t) => ['-c', `COPY ${t} TO STDOUT`]);
  const binCopies = copies.map((a) => (a === '-c' ? a : `${a} (FORMAT binary)`));
  const floor: Timed[] = [];
  const binFloor: Timed[] = [];
  const contenders: Contender[] = (
    [
      {
        label: 'pg_dump -Fc (unencrypted)',
        run: () => timed('pg_dump', ['-Fc', '-f', out, url]),
        size: fileSize,
      },
      {
        label: 'pg_dump -Fc | age -r',
        run: () => sh('pg_dump -Fc "$1" | age -r "$2" > "$3"', url, recipient, out),
        size: fileSize,
      },
      {
        label: 'pg_dump -Fc -Z1 | age -r',
        run: () => sh('pg_dump -Fc -Z1 "$1" | age -r "$2" > "$3"', url, recipient, out),
        size: fileSize,
      },
      {
        label: 'attendux backup full (age)',
        run: () => attendux(bigInst.config, 'backup', 'full', '--json'),
        size: (t: Timed) =>
          Promise.resolve((JSON.parse(t.stdout) as { sidecar: { bytes: number } }).sidecar.bytes),
      },
    ] as Omit<Contender, 'times' | 'bytes'>[]
  ).map((c) => ({ ...c, times: [], bytes: 0 }));
  for (let r = 0; r < ROUNDS; r++) {
    floor.push(await sh('psql -X -q "$@" > /dev/null', url, ...copies));
    binFloor.push(await sh('psql -X -q "$@" > /dev/null', url, ...binCopies));
    for (const c of contenders) {
      const t = await c.run();
      c.times.push(t);
      c.bytes = await c.size(t);
    }
  }
  const [plain, peerFc, peerZ1, ours] = contenders as [Contender, Contender, Contender, Contender];
  const full = median(ours.times);
  const fullSide = (JSON.parse(full.stdout) as { sidecar: { id: string; bytes: number; durationMs: number } })
    .sidecar;
  const peakRss = Math.max(...ours.times.map((t) => t.peakRssMb));
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
  const secs = (xs: Timed[]) => xs.map((d) => f(d.seconds)).join(', ');
  const row = (c: Contender) =>
    `${c.label.padEnd(31)} ${f(median(c.times).seconds)} s   ${f(mb(c.bytes), 1)} MB   (median of ${secs(c.times)})`;
  const ratio = (c: Contender) => f(full.seconds / median(c.times).seconds);
  const lines = [
    `reference database: ${events} events, ${companies} companies (${sz[0]!.db}); PostgreSQL 15 on 127.0.0.1`,
    `floor: COPY TO STDOUT, 1 conn  ${f(median(floor).seconds)} s   (every table into /dev/null; median of ${secs(floor)})`,
    `  the same, FORMAT binary      ${f(median(binFloor).seconds)} s   (median of ${secs(binFloor)})`,
    row(plain),
    row(peerFc),
    row(peerZ1),
    `${row(ours)}   peak RSS ${f(peakRss, 0)} MB`,
    `  ratio full / pg_dump -Fc -Z1 | age   ${ratio(peerZ1)}   size ${f(ours.bytes / peerZ1.bytes)}   (goal <= 0.80, size <= 1)`,
    `  ratio full / pg_dump -Fc | age       ${ratio(peerFc)}   size ${f(ours.bytes / peerFc.bytes)}`,
    `  ratio full / pg_dump -Fc             ${ratio(plain)}`,
    `  of the full's wall, process start-up and run bookkeeping   ${f(full.seconds - fullSide.durationMs / 1000)} s; the backup work alone ${f(fullSide.durationMs / 1000)} s = ${f(fullSide.durationMs / 1000 / median(peerZ1.times).seconds)} of pg_dump -Fc -Z1 | age`,
    `  peak RSS on a 10x smaller db  ${f(smallFull.peakRssMb, 0)} MB   (goal: <= 150 MB, not growing with the data)`,
    `incremental after ${rowCount} updates (1%)  ${f(inc.seconds)} s   ${f(mb(incSide.bytes), 2)} MB   ${incSide.rows} changes`,
    `  ratio incremental / full time ${f(inc.seconds / full.seconds, 3)} wall incl. process start-up, ${f(incSide.durationMs / fullSide.durationMs, 3)} of the backup work itself   (goal <= 0.05)`,
    `  ratio incremental / full size ${f(incSide.bytes / fullSide.bytes, 3)}   (goal <= 0.05)`,
    `backup verify --identity        ${f(verify.seconds)} s wall, ${f(v.seconds)} s reading   ${f(mb(v.bytes) / v.seconds, 0)} MB/s (${f(mb(v.bytes) / verify.seconds, 0)} MB/s incl. start-up)   (goal >= 100)`,
  ];
  console.log(lines.join('\n'));
}

await main();
