/**
 * A damaged or missing sidecar, a data file without one, a gap in a chain: never silent. The real binary
 * reports each as an error in list, status, verify, restore and the drill; a backup run sets an orphan data
 * file aside instead of deleting it, and `backup repair` rebuilds its sidecar from the encrypted file.
 */
import { existsSync } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedReference } from '../../bench/seed.js';
import { backupFull } from '../../src/core/backup/full.js';
import { backupIncremental } from '../../src/core/backup/incremental.js';
import { createPool, type Pool } from '../../src/db/pool.js';
import { makeInstall, type TestInstall } from '../helpers/backup.js';
import { runCli } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

let db: TestDatabase;
let admin: Pool;
let inst: TestInstall;
let fullId: string;
let inc1: string;
let inc2: string;

const run = (...args: string[]) =>
  runCli(['--config', inst.configPath, ...args], { env: { ATTENDUX_BACKUP_IDENTITY: inst.identityFile } });
const sidecar = (id: string) => join(inst.backupDir, `${id}.json`);
const data = (id: string) => join(inst.backupDir, `${id}.tar.age`);

beforeAll(async () => {
  db = await createTestDatabase('sidecars');
  admin = createPool(db.adminUrl, 2);
  await seedReference(admin, { companies: 2, employees: 10, events: 1_000 });
  inst = await makeInstall(db);
  fullId = (await backupFull({ configPath: inst.configPath })).sidecar.id;
  await admin.query(`UPDATE employees SET full_name = full_name || ' 1'`);
  inc1 = (await backupIncremental({ configPath: inst.configPath })).sidecar.id;
  await admin.query(`UPDATE employees SET full_name = full_name || ' 2'`);
  inc2 = (await backupIncremental({ configPath: inst.configPath })).sidecar.id;
}, 120_000);

afterAll(async () => {
  await admin.end();
  await db.drop();
  await inst.cleanup();
});

/** Every command that reads the catalog fails, naming the file. */
async function everyCommandFails(name: string): Promise<void> {
  const list = await run('backup', 'list');
  expect(list.exitCode).toBe(1);
  expect(list.stdout + list.stderr).toContain(name);
  const status = await run('backup', 'status');
  expect(status.exitCode).toBe(1);
  expect(status.stderr).toContain(name);
  const verify = await run('backup', 'verify', '--all');
  expect(verify.exitCode).toBe(1);
  expect(verify.stdout).toContain(`BAD  ${inc2}`);
  const verifyNewest = await run('backup', 'verify');
  expect(verifyNewest.exitCode).toBe(1);
  const drill = await run('restore', '--drill');
  expect(drill.exitCode).toBe(1);
  expect(drill.stderr).toContain(name);
  const restore = await run('--json', 'restore', '--into', `${db.name}_x`);
  expect(restore.exitCode).toBe(1);
  expect(JSON.parse(restore.stdout)).toMatchObject({ error: { code: 'BACKUP_CORRUPT' } });
}

describe('sidecar problems', () => {
  it('a damaged sidecar of the newest backup is an error everywhere, never an older point', async () => {
    const good = await readFile(sidecar(inc2));
    await writeFile(sidecar(inc2), good.subarray(0, 40));
    try {
      await everyCommandFails(`${inc2}.json`);
    } finally {
      await writeFile(sidecar(inc2), good);
    }
    expect((await run('backup', 'status')).exitCode).toBe(0);
  });

  it('a missing sidecar is an error everywhere; a backup run quarantines the data file and repair brings it back', async () => {
    const good = JSON.parse(await readFile(sidecar(inc2), 'utf8')) as Record<string, unknown>;
    await rm(sidecar(inc2));
    await everyCommandFails(`${inc2}.tar.age`);
    // A backup run cleans up leftovers: the orphan is set aside, not deleted.
    const full = await run('--json', 'backup', 'full');
    expect(full.exitCode).toBe(0);
    expect(JSON.parse(full.stdout).cleanedUp).toContain(`quarantine/${inc2}.tar.age`);
    expect(existsSync(join(inst.backupDir, 'quarantine', `${inc2}.tar.age`))).toBe(true);
    const status = await run('backup', 'status');
    expect(status.exitCode).toBe(1);
    expect(status.stderr).toContain(`quarantine/${inc2}.tar.age`);

    const repair = await run('--json', 'backup', 'repair');
    expect(repair.stderr).toBe('');
    expect(repair.exitCode).toBe(0);
    expect(JSON.parse(repair.stdout).items).toMatchObject([
      { id: inc2, was: 'quarantined', outcome: 'repaired' },
    ]);
    const rebuilt = JSON.parse(await readFile(sidecar(inc2), 'utf8')) as Record<string, unknown>;
    for (const k of [
      'id',
      'kind',
      'parent',
      'chainRoot',
      'createdAt',
      'bytes',
      'sha256',
      'tarBytes',
      'snapshot',
      'schemaVersion',
      'databaseId',
      'rows',
      'recipients',
    ])
      expect([k, rebuilt[k]]).toEqual([k, good[k]]);
    expect(existsSync(data(inc2))).toBe(true);
    expect((await run('backup', 'status')).exitCode).toBe(0);
    const verify = await run('backup', 'verify', inc2);
    expect(verify.exitCode).toBe(0);
  });

  it('repair keeps a data file that does not decrypt in quarantine and says so', async () => {
    const bogus = 'incremental-20200101T000000000Z';
    await writeFile(data(bogus), 'age-encryption.org/v1\n-> X25519 garbage\n--- AAAA\nnot a backup');
    try {
      const r = await run('--json', 'backup', 'repair');
      expect(r.exitCode).toBe(1);
      expect(JSON.parse(r.stdout).items).toMatchObject([{ id: bogus, outcome: 'quarantined' }]);
      expect(existsSync(join(inst.backupDir, 'quarantine', `${bogus}.tar.age`))).toBe(true);
      expect((await run('backup', 'status')).exitCode).toBe(1);
    } finally {
      await rm(join(inst.backupDir, 'quarantine', `${bogus}.tar.age`), { force: true });
    }
    expect((await run('backup', 'status')).exitCode).toBe(0);
  });
});

describe('backup verify --all', () => {
  it('fails on a gap in a chain (a middle incremental deleted, file and sidecar)', async () => {
    expect((await run('backup', 'verify', '--all')).exitCode).toBe(0);
    const aside = join(inst.dir, 'aside');
    await rename(data(inc1), `${aside}.tar.age`);
    await rename(sidecar(inc1), `${aside}.json`);
    try {
      const r = await run('backup', 'verify', '--all');
      expect(r.exitCode).toBe(1);
      expect(r.stdout).toMatch(new RegExp(`BAD  ${inc2}: .*chain is broken.*${inc1}`));
      expect((await run('backup', 'verify', inc2)).exitCode).toBe(1);
    } finally {
      await rename(`${aside}.tar.age`, data(inc1));
      await rename(`${aside}.json`, sidecar(inc1));
    }
    expect((await run('backup', 'verify', '--all')).exitCode).toBe(0);
    expect(fullId).toBeTruthy();
  });
});
