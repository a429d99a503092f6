import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile, open } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedReference } from '../../bench/seed.js';
import { createPool, type Pool } from '../../src/db/pool.js';
import { makeInstall, patchConfig, type TestInstall } from '../helpers/backup.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

const BIN = join(import.meta.dirname, '../../bin/attendux.js');
const isRoot = process.getuid?.() === 0;
if (!isRoot) console.log('backup-cli: the disk-full test is skipped, mounting a tmpfs needs root');

let db: TestDatabase;
let admin: Pool;
const installs: TestInstall[] = [];

async function install(opts: Parameters<typeof makeInstall>[1] = {}): Promise<TestInstall> {
  const i = await makeInstall(db, opts);
  installs.push(i);
  return i;
}

/** The real binary, no terminal attached (stdin ignored, stdout/stderr piped), as cron runs it. */
function run(i: TestInstall, ...args: string[]) {
  return execa('node', [BIN, '--config', i.configPath, ...args], {
    reject: false,
    stdin: 'ignore',
    env: { ATTENDUX_BACKUP_IDENTITY: '' },
  });
}

beforeAll(async () => {
  db = await createTestDatabase('bcli');
  admin = createPool(db.adminUrl, 2);
  // Enough for a backup well past the 256 KiB disk below and with attendance_events as most of the file.
  await seedReference(admin, { companies: 4, employees: 40, events: 40_000 });
});

afterAll(async () => {
  await admin.end();
  await db.drop();
  for (const i of installs) await i.cleanup();
});

describe('attendux backup (binary)', () => {
  it('prints nothing on success without a terminal, and one JSON object with --json', async () => {
    const i = await install();
    const quiet = await run(i, 'backup', 'full');
    expect([quiet.exitCode, quiet.stdout, quiet.stderr]).toEqual([0, '', '']);
    const json = await run(i, 'backup', 'incremental', '--json');
    expect(json.exitCode).toBe(0);
    const r = JSON.parse(json.stdout) as { sidecar: { kind: string; parent: string } };
    expect(r.sidecar.kind).toBe('incremental');
    const list = JSON.parse((await run(i, 'backup', 'list', '--json')).stdout) as {
      backups: { id: string; status: string }[];
    };
    expect(list.backups.map((b) => b.status)).toEqual(['ok', 'ok']);
    expect(r.sidecar.parent).toBe(list.backups[0]!.id);
  });

  it('leaves nothing that looks like a backup when killed with SIGKILL mid-run, and the next run cleans up', async () => {
    const i = await install();
    // SIGKILL as soon as the first table is staged (src/core/fault.ts), while the others are still being
    // copied: the moment a kill hurts most, reached every time rather than by polling a large database.
    const child = spawn('node', [BIN, '--config', i.configPath, 'backup', 'full'], {
      stdio: 'ignore',
      env: { ...process.env, ATTENDUX_TEST_KILL_AT: 'backup:table-staged' },
    });
    const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, signal) => r(signal)));
    expect(await exited).toBe('SIGKILL');
    const names = await readdir(i.backupDir);
    const killedWhile = names.find((n) => n.startsWith('.staging-')) ?? '';
    expect(killedWhile).not.toBe('');
    expect((await readdir(join(i.backupDir, killedWhile))).length).toBeGreaterThan(0);
    const list = await run(i, 'backup', 'list', '--json');
    expect(JSON.parse(list.stdout)).toMatchObject({ backups: [], invalid: [] });
    expect(existsSync(join(i.dataDir, 'backup.lock'))).toBe(true);

    const next = await run(i, 'backup', 'full', '--json');
    expect(next.exitCode).toBe(0);
    const r = JSON.parse(next.stdout) as { cleanedUp: string[] };
    expect(r.cleanedUp).toContain(killedWhile);
    const left = (await readdir(i.backupDir)).filter((n) => n.startsWith('.') || n.endsWith('.part'));
    expect(left).toEqual([]);
  });

  it('exits 1 with one line and a hint when no recipients are configured', async () => {
    const i = await install({ recipients: false });
    const r = await run(i, 'backup', 'full');
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(
      /^attendux: no backup recipients configured \(backup.recipients is empty\)\n  hint: /,
    );
    expect(r.stderr).not.toMatch(/at .*\.js/);
  });

  it('exits 1 naming the directory when the backup dir cannot be written', async () => {
    const i = await install();
    await writeFile(join(i.dir, 'plain-file'), 'x');
    await patchConfig(i, (c) => (c.backup.dir = join(i.dir, 'plain-file', 'sub')));
    const r = await run(i, 'backup', 'full');
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^attendux: backup directory .*plain-file\/sub is not writable/);
  });

  it.skipIf(!isRoot)(
    'exits 1 saying the disk is full, and leaves nothing that looks like a backup',
    async () => {
      const i = await install();
      const small = join(i.dir, 'small-disk');
      await mkdir(small);
      // A real full disk: a 256 KiB tmpfs (mounting needs root) that the backup cannot fit in.
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', small]);
      try {
        await patchConfig(i, (c) => (c.backup.dir = small));
        const r = await run(i, 'backup', 'full');
        expect(r.exitCode).toBe(1);
        expect(r.stderr).toMatch(/^attendux: full backup failed: disk full while /);
        expect(r.stderr).toContain('hint: free space in the backup directory');
        expect((await readdir(small)).filter((n) => n.endsWith('.tar.age') || n.endsWith('.part'))).toEqual(
          [],
        );
        const list = await run(i, '--json', 'backup', 'list');
        expect(JSON.parse(list.stdout)).toMatchObject({ backups: [] });
      } finally {
        execFileSync('umount', [small]);
      }
    },
  );

  it('exits 1 when an incremental has no full to build on', async () => {
    const i = await install();
    const r = await run(i, 'backup', 'incremental', '--json');
    expect(r.exitCode).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ error: { code: 'BACKUP_NO_FULL' } });
    expect(r.stderr).toMatch(/there is no full backup yet/);
  });

  it('exits 75 naming the pid and start time of the running backup', async () => {
    const i = await install();
    const { mkdir } = await import('node:fs/promises');
    await mkdir(i.dataDir, { recursive: true });
    await writeFile(
      join(i.dataDir, 'backup.lock'),
      JSON.stringify({
        pid: process.pid,
        host: hostname(),
        startedAt: '2026-11-23T02:00:00.000Z',
        command: 'backup full',
      }),
    );
    const r = await run(i, 'backup', 'incremental', '--full-if-needed');
    expect(r.exitCode).toBe(75);
    expect(r.stderr).toMatch(
      new RegExp(
        `another backup is running: pid ${process.pid} on .*, started 2026-11-23T02:00:00.000Z \\(backup full\\)`,
      ),
    );
  });

  it('verify exits 1 naming the damaged entry, and 0 on intact backups', async () => {
    const i = await install();
    await run(i, 'backup', 'full');
    const ok = await run(i, 'backup', 'verify', '--all', '--identity', i.identityFile);
    expect(ok.exitCode).toBe(0);
    expect(ok.stdout).toMatch(/^ok {3}full-/);
    const file = join(
      i.backupDir,
      (await readdir(i.backupDir)).find((n) => n.endsWith('.tar.age'))!,
    );
    const fh = await open(file, 'r+');
    const size = (await fh.stat()).size;
    await fh.write(Buffer.from([0x55]), 0, 1, Math.floor(size * 0.6));
    await fh.close();
    const bad = await run(i, 'backup', 'verify', '--identity', i.identityFile);
    expect(bad.exitCode).toBe(1);
    expect(bad.stdout).toMatch(/^BAD {2}full-.*in entry data\/attendance_events(\.\d+)?\.bin\.gz/);
    const light = await run(i, 'backup', 'verify', '--json');
    expect(light.exitCode).toBe(1);
    expect(JSON.parse(light.stdout)).toMatchObject({
      ok: false,
      backups: [{ depth: 'checksum', ok: false }],
    });
  });

  it('status exits 1 when stale, 0 when fresh, and writes Prometheus metrics', async () => {
    const i = await install();
    const stale = await run(i, 'backup', 'status', '--json');
    expect(stale.exitCode).toBe(1);
    expect(JSON.parse(stale.stdout)).toMatchObject({ ok: false });
    await run(i, 'backup', 'full');
    await run(i, 'backup', 'incremental');
    const prom = join(i.dir, 'attendux.prom');
    const fresh = await run(i, 'backup', 'status', '--prometheus', prom);
    expect(fresh.exitCode).toBe(0);
    expect(await readFile(prom, 'utf8')).toMatch(
      /^attendux_backup_last_success_timestamp_seconds\{kind="full"\} \d+/m,
    );
  });

  it('config set takes a config backup, and only warns when no recipient is configured', async () => {
    const i = await install();
    const set = await run(i, 'config', 'set', 'server.port', '9091');
    expect(set.exitCode).toBe(0);
    const list = JSON.parse((await run(i, 'backup', 'list', '--json')).stdout) as {
      backups: { kind: string }[];
    };
    expect(list.backups.map((b) => b.kind)).toEqual(['config']);

    const none = await install({ recipients: false });
    const warned = await run(none, 'config', 'set', 'server.port', '9092');
    expect(warned.exitCode).toBe(0);
    expect(warned.stderr).toMatch(/warning: the change was not backed up: no backup recipients configured/);
  });

  it('add-recipient adds an age key and refuses something that is not one', async () => {
    const i = await install();
    const other = await install();
    const ok = await run(i, 'backup', 'add-recipient', other.recipient);
    expect(ok.exitCode).toBe(0);
    const cfg = JSON.parse(await readFile(i.configPath, 'utf8')) as { backup: { recipients: string[] } };
    expect(cfg.backup.recipients).toEqual([i.recipient, other.recipient]);
    const bad = await run(i, 'backup', 'add-recipient', 'age1notakey');
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/"age1notakey" is not an age public key/);
  });
});
