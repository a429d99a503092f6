import { open, readFile, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedReference } from '../../bench/seed.js';
import { backupFull } from '../../src/core/backup/full.js';
import { verifyBackups } from '../../src/core/backup/verify.js';
import { dataFileName, type Sidecar } from '../../src/core/archive/format.js';
import { openBackup } from '../../src/core/archive/reader.js';
import { createPool, type Pool } from '../../src/db/pool.js';
import { makeInstall, ageKeygen, type TestInstall } from '../helpers/backup.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

let db: TestDatabase;
let admin: Pool;
let inst: TestInstall;
let sidecar: Sidecar;
let file: string;
let pristine: Buffer;

beforeAll(async () => {
  db = await createTestDatabase('bverify');
  admin = createPool(db.adminUrl, 2);
  await seedReference(admin, { companies: 2, employees: 20, events: 30_000 });
  inst = await makeInstall(db);
  sidecar = (await backupFull({ configPath: inst.configPath })).sidecar;
  file = join(inst.backupDir, dataFileName(sidecar.id));
  pristine = await readFile(file);
});

afterAll(async () => {
  await admin.end();
  await db.drop();
  await inst.cleanup();
});

async function flipByte(at: number): Promise<void> {
  await writeFile(file, pristine);
  const fh = await open(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, at);
    b[0] = b[0]! ^ 0x01;
    await fh.write(b, 0, 1, at);
  } finally {
    await fh.close();
  }
}

const verify = (identity: boolean) =>
  verifyBackups({
    configPath: inst.configPath,
    id: sidecar.id,
    identityFile: identity ? inst.identityFile : undefined,
  });

describe('backup verify', () => {
  it('passes an intact backup with the identity and without it', async () => {
    await writeFile(file, pristine);
    const full = await verify(true);
    expect(full.ok).toBe(true);
    expect(full.backups[0]!.depth).toBe('full');
    expect(full.backups[0]!.entries).toBeGreaterThan(5);
    const light = await verify(false);
    expect(light.ok).toBe(true);
    expect(light.backups[0]!.depth).toBe('checksum');
  });

  it('catches one flipped byte in the header, the first chunk, the middle and the last byte', async () => {
    const positions = [30, 200, Math.floor(pristine.length / 2), pristine.length - 1];
    for (const at of positions) {
      await flipByte(at);
      const r = await verify(true);
      expect(r.ok, `flipped byte at ${at}`).toBe(false);
      expect(r.backups[0]!.error!.code).toBe('BACKUP_CORRUPT');
      const light = await verify(false);
      expect(light.ok, `checksum-only, flipped byte at ${at}`).toBe(false);
    }
    await writeFile(file, pristine);
  });

  it('names the tar entry in which the damage was found', async () => {
    await flipByte(Math.floor(pristine.length / 2));
    const r = await verify(true);
    expect(r.backups[0]!.error!.message).toMatch(/in entry data\/attendance_events(\.\d+)?\.bin\.gz/);
    expect(r.backups[0]!.error!.entry).toMatch(/^data\/attendance_events(\.\d+)?\.bin\.gz$/);
    await writeFile(file, pristine);
  });

  it('catches a truncated file, cut at a chunk boundary or in the middle of one', async () => {
    for (const cut of [pristine.length - 1, pristine.length - 20, Math.floor(pristine.length / 3), 100]) {
      await writeFile(file, pristine);
      await truncate(file, cut);
      const r = await verify(true);
      expect(r.ok, `cut at ${cut}`).toBe(false);
      expect(r.backups[0]!.error!.message).toMatch(
        /truncated|authentication failed|does not match|incomplete/,
      );
    }
    await writeFile(file, pristine);
  });

  it('refuses an identity that matches no recipient, naming the problem', async () => {
    const other = join(inst.dir, 'other-identity.txt');
    ageKeygen(other);
    await expect(
      verifyBackups({ configPath: inst.configPath, id: sidecar.id, identityFile: other }),
    ).rejects.toMatchObject({ code: 'BACKUP_BAD_IDENTITY' });
  });

  it('reports a missing backup file as corrupt', async () => {
    await rm(file);
    try {
      for (const identity of [false, true]) {
        const r = await verify(identity);
        expect(r.ok).toBe(false);
        expect(r.backups[0]!.error).toMatchObject({ code: 'BACKUP_CORRUPT' });
        expect(r.backups[0]!.error!.message).toMatch(/is missing/);
      }
    } finally {
      await writeFile(file, pristine);
    }
  });

  it('decrypts into a private temp dir for restore, and removes it when verification fails', async () => {
    await writeFile(file, pristine);
    const opened = await openBackup({
      backupDir: inst.backupDir,
      id: sidecar.id,
      identities: [inst.identity],
    });
    try {
      expect(((await stat(opened.dir)).mode & 0o777).toString(8)).toBe('700');
      expect(opened.manifest.tables.map((t) => t.name)).toContain('attendance_events');
      // Referenced tables come first: tenants before employees before attendance events.
      const order = opened.manifest.tables.map((t) => t.name);
      expect(order.indexOf('tenants')).toBeLessThan(order.indexOf('employees'));
      expect(order.indexOf('employees')).toBeLessThan(order.indexOf('attendance_events'));
    } finally {
      await opened.cleanup();
    }
    await flipByte(Math.floor(pristine.length / 2));
    const tmpRoot = join(inst.dir, 'tmp');
    await import('node:fs/promises').then((f) => f.mkdir(tmpRoot));
    await expect(
      openBackup({
        backupDir: inst.backupDir,
        id: sidecar.id,
        identities: [inst.identity],
        tempRoot: tmpRoot,
      }),
    ).rejects.toMatchObject({ code: 'BACKUP_CORRUPT' });
    expect(await readdir(tmpRoot)).toEqual([]);
    await writeFile(file, pristine);
  });
});
