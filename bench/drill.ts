/**
 * Restore drill on the reference database (issue 9): seeds it (bench/seed.ts; 2,000,000 events by default,
 * a big table copied and loaded in up to 8 parts), takes a full backup and an incremental with the real
 * binary, then runs `attendux restore --drill` and `attendux restore --in-place` and prints their checks.
 * Exits 1 if the drill fails.
 *
 *   npx tsx bench/drill.ts [--events 2000000] [--companies 200] [--reseed]
 *
 * The database attendux_bench_drill is kept between runs; work files live in bench/.data/drill.
 */
import { execFileSync } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { connectClient } from '../src/db/pool.js';
import { attendux, ensureDatabase, f, ROOT, urlFor, values, writeInstall } from './common.js';

const WORK = join(ROOT, 'bench/.data/drill');

async function main(): Promise<void> {
  const events = Number(values.events);
  await mkdir(WORK, { recursive: true });
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
  const name = 'attendux_bench_drill';
  await ensureDatabase(name, events, Number(values.companies), Number(values.employees));
  const inst = await writeInstall(WORK, name);
  const full = await attendux(inst.config, 'backup', 'full');
  const c = await connectClient(urlFor(name, `${name}_owner`));
  await c.query('UPDATE attendance_events SET flagged = NOT flagged WHERE id % 100 = 3');
  const { rows } = await c.query<{ blocks: number }>(
    "SELECT (pg_relation_size('attendance_events') / 8192)::int AS blocks",
  );
  await c.end();
  await attendux(inst.config, 'backup', 'incremental');
  const drill = await attendux(inst.config, 'restore', '--drill', '--json', '--identity', inst.identity);
  const r = JSON.parse(drill.stdout) as {
    ok: boolean;
    checks: { name: string; ok: boolean; detail: string }[];
  };
  const inPlace = await attendux(
    inst.config,
    'restore',
    '--in-place',
    '--yes',
    '--drop-old',
    '--json',
    '--identity',
    inst.identity,
  );
  const ip = JSON.parse(inPlace.stdout) as { checks?: { ok: boolean }[]; error?: { message: string } };
  console.log(
    [
      `reference database: ${events} events, attendance_events ${rows[0]!.blocks} blocks (loaded in parts above 4096)`,
      `backup full ${f(full.seconds)} s`,
      `restore --drill: ${r.ok ? 'PASSED' : 'FAILED'} in ${f(drill.seconds)} s, peak RSS ${f(drill.peakRssMb, 0)} MB`,
      ...r.checks.map((x) => `  ${x.ok ? 'ok  ' : 'FAIL'} ${x.name}: ${x.detail}`),
      `restore --in-place --drop-old: ${ip.checks?.every((x) => x.ok) ? 'done' : `FAILED ${ip.error?.message ?? ''}`} in ${f(inPlace.seconds)} s`,
    ].join('\n'),
  );
  if (!r.ok) process.exitCode = 1;
}

await main();
