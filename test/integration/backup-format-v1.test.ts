import { createWriteStream } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { pack as tarPack } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedReference } from '../../bench/seed.js';
import { backupFull } from '../../src/core/backup/full.js';
import { signBackup } from '../../src/core/backup/signature.js';
import { verifyBackups } from '../../src/core/backup/verify.js';
import {
  dataFileName,
  FORMAT,
  FORMAT_V1,
  sidecarFileName,
  type Sidecar,
} from '../../src/core/archive/format.js';
import { HashTap } from '../../src/core/archive/bytes.js';
import { openBackup } from '../../src/core/archive/reader.js';
import { AgeEncryptStream } from '../../src/crypto/age-stream.js';
import { restoreInto } from '../../src/core/restore/execute.js';
import { createPool, type Pool } from '../../src/db/pool.js';
import { makeInstall, type TestInstall } from '../helpers/backup.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { dropDatabases, tableChecksums, urlOf } from '../helpers/restore.js';

// Backups written before format 2 (`attendux-backup/1`, tables named by one `entry`) must still verify and
// restore. The fixture is a fresh v2 backup rewritten in the old shape: re-tarred with a v1 manifest,
// encrypted again, with a v1 sidecar, signed with the install key like any backup.

let db: TestDatabase;
let admin: Pool;
let inst: TestInstall;
let id: string;
let v2: Sidecar;
let source: Record<string, string>;
const made: string[] = [];

async function rewriteAsV1(): Promise<void> {
  const opened = await openBackup({ backupDir: inst.backupDir, id, identities: [inst.identity] });
  try {
    const m = opened.manifest;
    // The first format 1: one `entry` per table, no `entries` (a multi-part table did not exist then).
    const tables = m.tables.map(({ entries, ...t }) => ({ ...t, entry: entries[0] }));
    expect(m.tables.every((t) => t.entries.length === 1)).toBe(true);
    const manifest = Buffer.from(JSON.stringify({ ...m, format: FORMAT_V1, tables }, null, 2));
    const pack = tarPack();
    const tar = new HashTap();
    const out = new HashTap();
    const file = join(inst.backupDir, dataFileName(id));
    const writing = pipeline(
      pack,
      tar,
      await AgeEncryptStream.create([inst.recipient]),
      out,
      createWriteStream(file),
    );
    for (const e of m.entries) pack.entry({ name: e.name }, await readFile(join(opened.dir, e.name)));
    pack.entry({ name: 'manifest.json' }, manifest);
    pack.finalize();
    await writing;
    const sidecar = {
      ...opened.sidecar,
      format: FORMAT_V1,
      bytes: out.bytes,
      sha256: out.hash.digest('hex'),
      tarBytes: tar.bytes,
    };
    await writeFile(join(inst.backupDir, sidecarFileName(id)), JSON.stringify(sidecar, null, 2) + '\n');
    const secrets = JSON.parse(await readFile(inst.secretsPath, 'utf8')) as { signingKey: string };
    await signBackup(inst.backupDir, id, secrets.signingKey);
  } finally {
    await opened.cleanup();
  }
}

beforeAll(async () => {
  db = await createTestDatabase('bformat1');
  admin = createPool(db.adminUrl, 2);
  await seedReference(admin, { companies: 2, employees: 10, events: 2_000 });
  inst = await makeInstall(db);
  source = await tableChecksums(db.adminUrl);
  v2 = (await backupFull({ configPath: inst.configPath })).sidecar;
  id = v2.id;
  await rewriteAsV1();
});

afterAll(async () => {
  await admin.end();
  await dropDatabases(db.superuserUrl, made);
  await db.drop();
  await inst.cleanup();
});

describe('backup format 1', () => {
  it('is no longer written: new backups are format 2', () => {
    expect(v2.format).toBe(FORMAT);
    expect(FORMAT).toBe('attendux-backup/2');
  });

  it('still verifies, and reads a table named by `entry` as its entries', async () => {
    const r = await verifyBackups({ configPath: inst.configPath, id, identityFile: inst.identityFile });
    expect(r.backups[0]).toMatchObject({ ok: true, depth: 'full' });
    const opened = await openBackup({ backupDir: inst.backupDir, id, identities: [inst.identity] });
    try {
      expect(opened.sidecar.format).toBe(FORMAT_V1);
      expect(opened.manifest.format).toBe(FORMAT_V1);
      const events = opened.manifest.tables.find((t) => t.name === 'attendance_events');
      expect(events?.entries).toEqual(['data/attendance_events.copy.gz']);
    } finally {
      await opened.cleanup();
    }
  });

  it('still restores into a new database equal to the source', async () => {
    const into = `${db.name}_v1`.slice(0, 63);
    made.push(into);
    const r = await restoreInto({
      configPath: inst.configPath,
      identityFile: inst.identityFile,
      backupId: id,
      into,
    });
    expect(r.rows.attendance_events).toBe(2_000);
    expect(await tableChecksums(urlOf(db, into))).toEqual(source);
  });
});
