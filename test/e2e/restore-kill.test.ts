/**
 * `kill -9` of `attendux restore --in-place` at every step of the swap (the real binary kills itself at the
 * named point, see faultPoint in src/core/restore/journal.ts), then `restore --recover` or the next restore:
 * the live database always answers again, under its name, whole (old or new state), with no connection
 * limit, no half-built database, no decrypted temp dir and no maintenance mode left behind.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedReference } from '../../bench/seed.js';
import { backupFull } from '../../src/core/backup/full.js';
import { connectClient, createPool } from '../../src/db/pool.js';
import { makeInstall, type TestInstall } from '../helpers/backup.js';
import { BIN } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { dropDatabases, tableChecksums } from '../helpers/restore.js';

let db: TestDatabase;
let inst: TestInstall;
let tmp: string;
let atBackup: Record<string, string>;

async function attendux(args: string[], killAt?: string) {
  const r = await execa('node', [BIN, '--config', inst.configPath, ...args], {
    env: { ATTENDUX_CONFIG: '', TMPDIR: tmp, ...(killAt ? { ATTENDUX_TEST_KILL_AT: killAt } : {}) },
    extendEnv: true,
    reject: false,
    stdin: 'ignore',
  });
  return { exitCode: r.exitCode, signal: r.signal, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** The cluster's view of this test's databases: name -> connection limit. */
async function databases(): Promise<Record<string, number>> {
  const c = await connectClient(db.superuserUrl);
  try {
    const { rows } = await c.query<{ datname: string; datconnlimit: number }>(
      `SELECT datname, datconnlimit FROM pg_database WHERE datname = $1 OR datname LIKE $1 || '\\_%'`,
      [db.name],
    );
    return Object.fromEntries(rows.map((r) => [r.datname, r.datconnlimit]));
  } finally {
    await c.end();
  }
}

async function damage(): Promise<Record<string, string>> {
  const p = createPool(db.adminUrl, 1);
  try {
    await p.query(`DELETE FROM attendance_events WHERE id % 3 = 0`);
  } finally {
    await p.end();
  }
  return tableChecksums(db.adminUrl);
}

/** The server's view: the app role connects to the live name and reads. */
async function appAnswers(): Promise<boolean> {
  const c = await connectClient(db.appUrl).catch(() => null);
  if (!c) return false;
  try {
    await c.query('SELECT 1');
    return true;
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  db = await createTestDatabase('rkill');
  const admin = createPool(db.adminUrl, 2);
  await seedReference(admin, { companies: 2, employees: 20, events: 4_000 });
  await admin.end();
  inst = await makeInstall(db);
  tmp = join(inst.dir, 'tmp');
  await mkdir(tmp);
  // Before the run: its own audit entry is written after the snapshot.
  atBackup = await tableChecksums(db.adminUrl);
  await backupFull({ configPath: inst.configPath });
}, 120_000);

afterAll(async () => {
  await dropDatabases(
    db.superuserUrl,
    Object.keys(await databases()).filter((n) => n !== db.name),
  );
  await db.drop();
  await inst.cleanup();
});

const BEFORE_SWAP = [
  'in-place:journal-written',
  'in-place:maintenance-on',
  'restore:loaded',
  'in-place:built',
  'in-place:checked',
  'in-place:journal-swapping',
  'in-place:limit-set',
];
const AFTER_SWAP = ['in-place:renamed', 'in-place:journal-swapped', 'in-place:old-unlimited'];
const AFTER_SWAP_DROP_OLD = ['in-place:renamed', 'in-place:old-dropped', 'in-place:maintenance-off'];

async function expectClean(): Promise<void> {
  const dbs = await databases();
  expect(dbs[db.name]).toBe(-1);
  for (const [name, limit] of Object.entries(dbs)) {
    expect(name).not.toMatch(/_restore_/);
    expect(limit).toBe(-1);
  }
  expect(existsSync(join(inst.dataDir, 'maintenance.json'))).toBe(false);
  expect(existsSync(join(inst.dataDir, 'restore-journal.json'))).toBe(false);
  expect((await readdir(tmp)).filter((n) => n.startsWith('attendux-restore-'))).toEqual([]);
  expect(await appAnswers()).toBe(true);
}

describe('restore --in-place killed at every step', () => {
  for (const [step, dropOld] of [
    ...BEFORE_SWAP.map((s) => [s, false] as const),
    ...AFTER_SWAP.map((s) => [s, false] as const),
    ...AFTER_SWAP_DROP_OLD.map((s) => [s, true] as const),
  ]) {
    const forward = !BEFORE_SWAP.includes(step);
    it(`${step}${dropOld ? ' (--drop-old)' : ''}: restore --recover ${forward ? 'finishes the swap' : 'undoes it'}`, async () => {
      const damaged = await damage();
      const oldBefore = Object.keys(await databases()).filter((n) => n.includes('_old_'));
      const args = ['restore', '--in-place', '--yes', '-i', inst.identityFile];
      const killed = await attendux(dropOld ? [...args, '--drop-old'] : args, step);
      expect(killed.signal).toBe('SIGKILL');
      expect(existsSync(join(inst.dataDir, 'restore-journal.json'))).toBe(true);
      const during = await databases();
      // What used to take the service down until a superuser stepped in.
      if (step === 'in-place:limit-set') expect(during[db.name]).toBe(0);
      if (step === 'in-place:renamed' || step === 'in-place:journal-swapped') {
        const old = Object.keys(during).find((n) => n.includes('_old_') && !oldBefore.includes(n))!;
        expect(during[old]).toBe(0);
      }

      const r = await attendux(['--json', 'restore', '--recover']);
      expect(r.stderr).toBe('');
      expect(r.exitCode).toBe(0);
      const out = JSON.parse(r.stdout) as { recovered: { action: string } | null };
      expect(out.recovered?.action).toBe(forward ? 'rolled-forward' : 'rolled-back');
      await expectClean();
      expect(await tableChecksums(db.adminUrl)).toEqual(forward ? atBackup : damaged);
      const oldAfter = Object.keys(await databases()).filter((n) => n.includes('_old_'));
      expect(oldAfter.length - oldBefore.length).toBe(forward && !dropOld ? 1 : 0);
      // A second recovery finds nothing to do.
      const again = await attendux(['--json', 'restore', '--recover']);
      expect(JSON.parse(again.stdout)).toMatchObject({ recovered: null, droppedDatabases: [] });
    });
  }

  it('the next in-place restore recovers a killed one by itself, then does its own work', async () => {
    await damage();
    const killed = await attendux(
      ['restore', '--in-place', '--yes', '-i', inst.identityFile],
      'in-place:limit-set',
    );
    expect(killed.signal).toBe('SIGKILL');
    expect((await databases())[db.name]).toBe(0);
    const r = await attendux(['restore', '--in-place', '--yes', '--drop-old', '-i', inst.identityFile]);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    await expectClean();
    expect(await tableChecksums(db.adminUrl)).toEqual(atBackup);
  });

  it('a restore --into killed while loading leaves a half-built database that the next run drops', async () => {
    const into = `${db.name}_restore_killed`;
    const killed = await attendux(['restore', '--into', into, '-i', inst.identityFile], 'restore:loaded');
    expect(killed.signal).toBe('SIGKILL');
    expect(Object.keys(await databases())).toContain(into);
    const r = await attendux(['--json', 'restore', '--recover']);
    expect(r.exitCode).toBe(0);
    const out = JSON.parse(r.stdout) as { droppedDatabases: string[]; removedTempDirs: string[] };
    expect(out.droppedDatabases).toEqual([into]);
    expect(out.removedTempDirs).toHaveLength(1);
    await expectClean();
    // A finished restore --into is never taken for a leftover.
    const done = `${db.name}_restore_done`;
    expect((await attendux(['restore', '--into', done, '-i', inst.identityFile])).exitCode).toBe(0);
    const again = await attendux(['--json', 'restore', '--recover']);
    expect(JSON.parse(again.stdout)).toMatchObject({ droppedDatabases: [] });
    expect(Object.keys(await databases())).toContain(done);
    await dropDatabases(db.superuserUrl, [done]);
  });
});
