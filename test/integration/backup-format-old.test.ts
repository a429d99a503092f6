import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { pack as tarPack } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedReference } from '../../bench/seed.js';
import { backupFull } from '../../src/core/backup/full.js';
import { RESTORE_SCRIPT, restoreScript } from '../../src/core/backup/scripts.js';
import { signBackup } from '../../src/core/backup/signature.js';
import { verifyBackups } from '../../src/core/backup/verify.js';
import {
  dataFileName,
  FORMAT,
  FORMAT_V1,
  FORMAT_V2,
  sidecarFileName,
  type Format,
  type ManifestEntry,
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

// Backups written before format 3 (COPY text: `attendux-backup/2`, and `attendux-backup/1` whose tables are
// named by one `entry`) must still verify and restore. Each fixture is a fresh backup rewritten in the old
// shape: every table's entry replaced by its COPY text (gzip) taken just before the backup (nothing writes
// in between; each backup's own audit entry comes after its snapshot), re-tarred with an old manifest (and
// restore.sql), encrypted again, with an old sidecar, signed with the install key.

let db: TestDatabase;
let admin: Pool;
let inst: TestInstall;
let current: Sidecar;
const ids: Partial<Record<Format, string>> = {};
/** Each backup's source state (checksums) and every table's COPY text of it, taken just before it ran. */
const source: Partial<Record<Format, Record<string, string>>> = {};
let texts = new Map<string, Buffer>();
const made: string[] = [];

/** Every backed-up table's COPY text, gzip. */
async function textCopies(): Promise<Map<string, Buffer>> {
  const { to: copyTo } = await import('pg-copy-streams');
  const c = await admin.connect();
  const out = new Map<string, Buffer>();
  try {
    const { rows } = await c.query<{ t: string }>('SELECT t FROM attendux_backup_tables() t');
    for (const { t } of rows) {
      const chunks: Buffer[] = [];
      await pipeline(c.query(copyTo(`COPY "${t}" TO STDOUT`)), createGzip(), async (src) => {
        for await (const ch of src as AsyncIterable<Buffer>) chunks.push(ch);
      });
      out.set(t, Buffer.concat(chunks));
    }
  } finally {
    c.release();
  }
  return out;
}

const entryOf = (name: string, body: Buffer): ManifestEntry => ({
  name,
  bytes: body.length,
  sha256: createHash('sha256').update(body).digest('hex'),
});

async function rewriteAs(id: string, format: typeof FORMAT_V1 | typeof FORMAT_V2): Promise<void> {
  const opened = await openBackup({ backupDir: inst.backupDir, id, identities: [inst.identity] });
  try {
    const m = opened.manifest;
    expect(m.tables.every((t) => t.entries.length === 1 && t.copyFormat === 'binary')).toBe(true);
    const bodies = new Map<string, Buffer>();
    for (const e of m.entries)
      if (!e.name.startsWith('data/') && e.name !== RESTORE_SCRIPT)
        bodies.set(e.name, await readFile(join(opened.dir, e.name)));
    const textTables = [];
    for (const t of m.tables) {
      const name = `data/${t.name}.copy.gz`;
      bodies.set(name, texts.get(t.name)!);
      // Formats 1 and 2 had no copyFormat: their tables are COPY text.
      textTables.push({ name: t.name, rows: t.rows, primaryKey: t.primaryKey, entries: [name] });
    }
    bodies.set(RESTORE_SCRIPT, Buffer.from(restoreScript(id, textTables)));
    // The first format 1: one `entry` per table, no `entries` (a multi-part table did not exist then).
    const tables =
      format === FORMAT_V1
        ? textTables.map(({ entries, ...t }) => ({ ...t, entry: entries[0] }))
        : textTables;
    const entries = [...bodies].map(([n, b]) => entryOf(n, b));
    const manifest = Buffer.from(JSON.stringify({ ...m, format, tables, entries }, null, 2));
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
    for (const [n, b] of bodies) pack.entry({ name: n }, b);
    pack.entry({ name: 'manifest.json' }, manifest);
    pack.finalize();
    await writing;
    const sidecar = {
      ...opened.sidecar,
      format,
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
  for (const f of [FORMAT_V1, FORMAT_V2] as const) {
    source[f] = await tableChecksums(db.adminUrl);
    texts = await textCopies();
    ids[f] = (await backupFull({ configPath: inst.configPath })).sidecar.id;
    await rewriteAs(ids[f], f);
  }
  source[FORMAT] = await tableChecksums(db.adminUrl);
  current = (await backupFull({ configPath: inst.configPath })).sidecar;
  ids[FORMAT] = current.id;
});

afterAll(async () => {
  await admin?.end();
  await dropDatabases(db.superuserUrl, made);
  await db?.drop();
  await inst?.cleanup();
});

describe('backup formats 1 and 2 (COPY text)', () => {
  it('are no longer written: new backups are format 3, COPY binary', async () => {
    expect(current.format).toBe(FORMAT);
    expect(FORMAT).toBe('attendux-backup/3');
    const opened = await openBackup({
      backupDir: inst.backupDir,
      id: current.id,
      identities: [inst.identity],
    });
    try {
      const events = opened.manifest.tables.find((t) => t.name === 'attendance_events');
      expect(events).toMatchObject({ copyFormat: 'binary', entries: ['data/attendance_events.bin.gz'] });
      // A binary COPY file starts with its signature, whatever the table holds.
      const { gunzipSync } = await import('node:zlib');
      const body = gunzipSync(await readFile(join(opened.dir, events!.entries[0]!)));
      expect(body.subarray(0, 11).toString('latin1')).toBe('PGCOPY\n\xff\r\n\0');
    } finally {
      await opened.cleanup();
    }
  });

  for (const f of [FORMAT_V1, FORMAT_V2] as const)
    it(`${f} still verifies, and reads its tables as COPY text entries`, async () => {
      const id = ids[f]!;
      const r = await verifyBackups({ configPath: inst.configPath, id, identityFile: inst.identityFile });
      expect(r.backups[0]).toMatchObject({ ok: true, depth: 'full' });
      const opened = await openBackup({ backupDir: inst.backupDir, id, identities: [inst.identity] });
      try {
        expect(opened.sidecar.format).toBe(f);
        expect(opened.manifest.format).toBe(f);
        const events = opened.manifest.tables.find((t) => t.name === 'attendance_events');
        expect(events?.entries).toEqual(['data/attendance_events.copy.gz']);
        expect(events?.copyFormat).toBeUndefined();
      } finally {
        await opened.cleanup();
      }
    });

  for (const f of [FORMAT_V1, FORMAT_V2, FORMAT] as const)
    it(`${f} restores into a new database equal to the source`, async () => {
      const into = `${db.name}_v${f.slice(-1)}`.slice(0, 63);
      made.push(into);
      const r = await restoreInto({
        configPath: inst.configPath,
        identityFile: inst.identityFile,
        backupId: ids[f]!,
        into,
      });
      expect(r.rows.attendance_events).toBe(2_000);
      expect(await tableChecksums(urlOf(db, into))).toEqual(source[f]);
    });
});
