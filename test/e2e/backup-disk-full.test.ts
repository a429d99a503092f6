/**
 * Disk full at many sizes (a real tmpfs per size; mounting needs root, so the test is skipped with the
 * reason printed otherwise): a backup never crashes, leaves no lock, no staging and no partial file, records
 * the failed run and its audit entry, and whatever it leaves on the backup disk holds no plaintext.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedReference } from '../../bench/seed.js';
import { createPool, type Pool } from '../../src/db/pool.js';
import { makeInstall, patchConfig, type TestInstall } from '../helpers/backup.js';
import { BIN, runCli } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.log('backup-disk-full: skipped, mounting a tmpfs needs root');

let db: TestDatabase;
let admin: Pool;
let inst: TestInstall;
let small: string;

beforeAll(async () => {
  db = await createTestDatabase('diskfull');
  admin = createPool(db.adminUrl, 2);
  await seedReference(admin, { companies: 3, employees: 30, events: 230_000 });
  inst = await makeInstall(db);
  small = join(inst.dir, 'small-disk');
  await mkdir(small);
  await patchConfig(inst, (c) => (c.backup.dir = small));
}, 120_000);

afterAll(async () => {
  await admin.end();
  await db.drop();
  await inst.cleanup();
});

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else out.push(p);
  }
  return out;
}

/** No gzip stream (the staged COPY data) and no row text anywhere on the backup disk. */
async function expectNoPlaintext(dir: string): Promise<void> {
  for (const f of await walk(dir)) {
    const buf = await readFile(f);
    if (f.endsWith('.json')) continue; // sidecars and last-run records: metadata only
    expect([f, buf[0] === 0x1f && buf[1] === 0x8b]).toEqual([f, false]);
    expect([f, buf.includes('bench-0001')]).toEqual([f, false]);
  }
}

describe.skipIf(!isRoot)('backup on a full disk', () => {
  // A multi-part table: two connections stage at once, which is where a full disk used to crash the run.
  // Fractions of the size of one full backup: the disk fills while staging, while archiving, at the rename,
  // at the sidecar, at the last-run record.
  const fractions = [0.05, 0.2, 0.4, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1, 1.03, 1.06, 1.1, 1.2, 1.4, 1.7, 2.5];
  it(`fails cleanly at every size (${fractions.join(', ')} x a full backup)`, async () => {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', small]);
    let backupKiB: number;
    try {
      const r = await runCli(['--config', inst.configPath, '--json', 'backup', 'full']);
      expect(r.exitCode).toBe(0);
      backupKiB = Math.ceil((JSON.parse(r.stdout) as { sidecar: { bytes: number } }).sidecar.bytes / 1024);
    } finally {
      execFileSync('umount', [small]);
    }
    const sizes = [...new Set(fractions.map((f) => Math.max(8, Math.round((backupKiB * f) / 4) * 4)))];
    const outcomes: string[] = [];
    for (const kib of sizes) {
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${kib}k,mode=0700`, 'tmpfs', small]);
      try {
        const r = await runCli(['--config', inst.configPath, 'backup', 'full']);
        outcomes.push(`${kib}: ${r.exitCode}`);
        // One line and a hint, or nothing: never a raw Node error or stack.
        if (r.stderr)
          expect([kib, r.stderr]).toEqual([
            kib,
            expect.stringMatching(/^attendux: [^\n]*\n  hint: [^\n]*\n?$/),
          ]);
        expect(existsSync(join(inst.dataDir, 'backup.lock'))).toBe(false);
        const names = await readdir(small);
        expect(names.filter((n) => n.startsWith('.staging-') || n.endsWith('.part'))).toEqual([]);
        if (r.exitCode === 0) {
          expect(names.filter((n) => n.endsWith('.tar.age'))).toHaveLength(1);
        } else {
          expect([kib, r.exitCode]).toEqual([kib, 1]);
          expect(r.stderr).toMatch(/^attendux: full backup failed: disk full while /);
          expect(names.filter((n) => n.endsWith('.tar.age'))).toEqual([]);
          const status = await runCli(['--config', inst.configPath, '--json', 'backup', 'status']);
          expect(status.exitCode).toBe(1);
          expect(JSON.parse(status.stdout).kinds[0].lastRun).toMatchObject({ outcome: 'failure' });
          const { rows } = await admin.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM audit_log WHERE action = 'backup.full' AND details->>'outcome' = 'failure'
               AND at > now() - interval '1 minute'`,
          );
          expect(rows[0]!.n).toBeGreaterThan(0);
        }
        await expectNoPlaintext(small);
      } finally {
        execFileSync('umount', [small]);
      }
    }
    console.log(`disk-full outcomes (KiB: exit code): ${outcomes.join(', ')}`);
    // The sizes span both sides: the smallest fail, the largest hold a backup.
    expect(outcomes[0]).toMatch(/: 1$/);
    expect(outcomes[outcomes.length - 1]).toMatch(/: 0$/);
  });

  it('a run killed while staging leaves only ciphertext, and the next run removes it', async () => {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', small]);
    try {
      const r = await execa('node', [BIN, '--config', inst.configPath, 'backup', 'full'], {
        env: { ATTENDUX_CONFIG: '', ATTENDUX_TEST_KILL_AT: 'backup:table-staged' },
        reject: false,
        stdin: 'ignore',
      });
      expect(r.signal).toBe('SIGKILL');
      const staged = (await walk(small)).filter((f) => f.includes('.staging-'));
      expect(staged.length).toBeGreaterThan(0);
      for (const f of staged) expect((await stat(f)).mode & 0o077).toBe(0);
      await expectNoPlaintext(small);
      const next = await runCli(['--config', inst.configPath, '--json', 'backup', 'full']);
      expect(next.exitCode).toBe(0);
      expect((await readdir(small)).filter((n) => n.startsWith('.staging-'))).toEqual([]);
    } finally {
      execFileSync('umount', [small]);
    }
  });
});
