/**
 * Restore benchmark (issues 5, 17). In one run, on the reference database (bench/seed.ts) in the PostgreSQL
 * on 127.0.0.1:5432, after a full backup and four incrementals (each changing ~1% of the attendance events):
 *   - `pg_restore -j2` of a `pg_dump -Fc` dump of the same state (Debian's tools, unencrypted)
 *   - `attendux restore --into` of the full plus the four incrementals (the real binary: decrypt, verify,
 *     load, apply, keys, foreign keys, sequences, audit entry)
 * alternating, --rounds times, and prints the ratio of the medians (goal: <= 0.85x pg_restore -j2) and
 * attendux's peak RSS. Then the floor, each part timed alone: pg_restore's data section (the COPY load) and
 * its post-data section (index builds and foreign keys) with -j2, and attendux's own phases (in process).
 *
 *   npx tsx bench/restore.ts [--events 1000000] [--companies 200] [--rounds 3] [--reseed]
 *
 * The source database attendux_bench_restore is kept between runs; --reseed recreates it. Work files live in
 * bench/.data/restore.
 */
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { connectClient, ddl } from '../src/db/pool.js';
import { restoreInto } from '../src/core/restore/execute.js';
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
const load = () => loadavg()[0]!.toFixed(1);

/** A fresh database owned by the source's owner, as the superuser (as a sysadmin would); its URL. */
async function freshDb(target: string, source: string): Promise<string> {
  await dropDb(target);
  const c = await connectClient(su);
  try {
    await ddl(c, "CREATE DATABASE %I OWNER %I ENCODING 'UTF8' TEMPLATE template0", target, `${source}_owner`);
  } finally {
    await c.end();
  }
  const u = new URL(su);
  u.pathname = `/${target}`;
  return u.toString();
}

async function pgRestore(dump: string, jobs: number, source: string): Promise<Timed> {
  const target = `${source}_pgr${jobs}`;
  const url = await freshDb(target, source);
  try {
    return await timed('pg_restore', [`-j${jobs}`, '-d', url, dump]);
  } finally {
    await dropDb(target);
  }
}

/** pg_restore's sections timed one by one: the COPY load alone and the index and key builds alone. */
async function pgSections(dump: string, source: string): Promise<Record<string, number>> {
  const target = `${source}_pgsec`;
  const url = await freshDb(target, source);
  const out: Record<string, number> = {};
  try {
    for (const s of ['pre-data', 'data', 'post-data'])
      out[s] = (await timed('pg_restore', ['-j2', `--section=${s}`, '-d', url, dump])).seconds;
  } finally {
    await dropDb(target);
  }
  return out;
}

/** attendux's restore in process, with the time spent in each phase (its progress reports). */
async function ourPhases(config: string, identity: string, into: string): Promise<Record<string, number>> {
  await dropDb(into);
  const acc: Record<string, number> = {};
  let last = Date.now();
  let phase = 'open';
  const mark = (next: string) => {
    const now = Date.now();
    acc[phase] = (acc[phase] ?? 0) + (now - last) / 1000;
    last = now;
    phase = next;
  };
  await restoreInto({
    configPath: config,
    identityFile: identity,
    into,
    actor: 'bench',
    onProgress: (p) => p.phase !== phase && mark(p.phase),
  });
  mark('end');
  await dropDb(into);
  return acc;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function prepareChain(name: string): Promise<{ config: string; identity: string; changed: number }> {
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
  return { ...inst, changed };
}

async function main(): Promise<void> {
  const events = Number(values.events);
  const rounds = Number(values.rounds);
  await mkdir(WORK, { recursive: true });
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });

  const name = 'attendux_bench_restore';
  await ensureDatabase(name, events, Number(values.companies), Number(values.employees));
  const inst = await prepareChain(name);
  const owner = urlFor(name, `${name}_owner`);
  const c = await connectClient(owner);
  const { rows: sz } = await c.query<{ db: string }>(
    'SELECT pg_size_pretty(pg_database_size(current_database())) AS db',
  );
  await c.end();

  const dump = join(WORK, 'pg_dump.Fc');
  await timed('pg_dump', ['-Fc', '-f', dump, owner]);
  const dumpBytes = (await stat(dump)).size;
  const into = `${name}_attendux`;
  const peer: number[] = [];
  const ours: Timed[] = [];
  const loads: string[] = [];
  let r: { plan: { steps: unknown[]; totalBytes: number }; changes: number } | undefined;
  // The machine is shared and noisy: alternate the two (who goes first, too) and compare medians.
  for (let i = 0; i < rounds; i++) {
    console.log(`round ${i + 1} of ${rounds} (load ${load()})...`);
    const runOurs = async () => {
      await dropDb(into);
      const t = await attendux(inst.config, 'restore', '--into', into, '--identity', inst.identity, '--json');
      r = JSON.parse(t.stdout) as typeof r;
      ours.push(t);
      await dropDb(into);
    };
    const runPeer = async () => peer.push((await pgRestore(dump, 2, name)).seconds);
    if (i % 2) {
      await runOurs();
      await runPeer();
    } else {
      await runPeer();
      await runOurs();
    }
    loads.push(load());
  }
  const sections = await pgSections(dump, name);
  const phases = await ourPhases(inst.config, inst.identity, into);
  await rm(dump, { force: true });

  const mb = (b: number) => b / 1024 / 1024;
  const j2 = median(peer);
  const us = median(ours.map((t) => t.seconds));
  const list = (xs: number[]) => xs.map((x) => f(x)).join(', ');
  const p = (k: string) => f(phases[k] ?? 0);
  console.log(
    [
      `reference database: ${events} events (${sz[0]!.db}); PostgreSQL 15 on 127.0.0.1; load average after each round ${loads.join(', ')}`,
      `chain: full + 4 incrementals (${inst.changed} event updates), ${f(mb(r!.plan.totalBytes), 1)} MB encrypted; pg_dump -Fc ${f(mb(dumpBytes), 1)} MB`,
      `pg_restore -j2                  ${f(j2)} s   (median of ${list(peer)})`,
      `attendux restore (${r!.plan.steps.length} files, ${r!.changes} changes)  ${f(us)} s   (median of ${list(ours.map((t) => t.seconds))})   peak RSS ${f(Math.max(...ours.map((t) => t.peakRssMb)), 0)} MB`,
      `  ratio attendux / pg_restore -j2  ${f(us / j2)}   (goal <= 0.85); per round ${list(ours.map((t, i) => t.seconds / peer[i]!))}, their median ${f(median(ours.map((t, i) => t.seconds / peer[i]!)))}`,
      `floor, each part alone (pg_restore -j2 by section): schema ${f(sections['pre-data']!)} s, COPY load ${f(sections.data!)} s, indexes + keys ${f(sections['post-data']!)} s`,
      `attendux's phases (in process, one run): open+decrypt ${p('open')}+${p('decrypt')} s, schema ${p('schema')} s, COPY load ${p('load')} s, apply ${p('apply')} s, indexes ${p('index')} s, foreign keys+sequences+analyze ${p('constraints')} s`,
    ].join('\n'),
  );
}

await main();
