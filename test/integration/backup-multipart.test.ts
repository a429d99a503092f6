/**
 * Backups and restores of a database whose big table is copied and loaded in parts (over 1024 blocks, i.e.
 * more than 8 MiB of attendance events), as every real database is: the CI-sized multi-part seed (the
 * 2,000,000-event reference database is bench/restore.ts's).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedReference } from '../../bench/seed.js';
import { backupFull } from '../../src/core/backup/full.js';
import { backupIncremental } from '../../src/core/backup/incremental.js';
import { restoreDrill } from '../../src/core/restore/drill.js';
import { restoreInto } from '../../src/core/restore/execute.js';
import { restoreInPlace } from '../../src/core/restore/in-place.js';
import { connectClient, createPool, type Pool } from '../../src/db/pool.js';
import { makeInstall, type TestInstall } from '../helpers/backup.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { dropDatabases, tableChecksums, urlOf } from '../helpers/restore.js';

/** 230,000 events fill about 4,900 blocks: five block-range parts, enough to load on both connections. */
export const MULTIPART_EVENTS = 230_000;

let db: TestDatabase;
let admin: Pool;
let inst: TestInstall;
let fullId: string;
let atFull: Record<string, string>;
const made: string[] = [];
const cfg = () => ({ configPath: inst.configPath, identityFile: inst.identityFile });

beforeAll(async () => {
  db = await createTestDatabase('multipart');
  admin = createPool(db.adminUrl, 2);
  await seedReference(admin, { companies: 4, employees: 40, events: MULTIPART_EVENTS });
  await admin.query(
    `INSERT INTO tenant_settings (tenant_id, key, value)
     SELECT t.id, 'k' || g, to_jsonb(g) FROM tenants t, generate_series(1, 5) g`,
  );
  inst = await makeInstall(db);
  atFull = await tableChecksums(db.adminUrl);
  fullId = (await backupFull({ configPath: inst.configPath })).sidecar.id;
}, 240_000);

afterAll(async () => {
  await admin.end();
  const c = await connectClient(db.superuserUrl);
  const { rows } = await c.query<{ datname: string }>(
    `SELECT datname FROM pg_database WHERE datname LIKE $1 || '\\_%'`,
    [db.name],
  );
  await c.end();
  await dropDatabases(db.superuserUrl, [...made, ...rows.map((r) => r.datname)]);
  await db.drop();
  await inst.cleanup();
});

async function manifestOf(id: string) {
  const { openBackup } = await import('../../src/core/archive/reader.js');
  const { readIdentityFile } = await import('../../src/core/archive/identity.js');
  const b = await openBackup({
    backupDir: inst.backupDir,
    id,
    identities: await readIdentityFile(inst.identityFile),
  });
  await b.cleanup();
  return b.manifest;
}

describe('a table copied in parts', () => {
  it('is backed up in several block-range entries', async () => {
    const m = await manifestOf(fullId);
    const events = m.tables.find((t) => t.name === 'attendance_events')!;
    expect(events.rows).toBe(MULTIPART_EVENTS);
    expect(events.entries.length).toBeGreaterThanOrEqual(2);
  });

  it('restores with every row counted, so the drill passes', async () => {
    const r = await restoreDrill(cfg());
    expect(r.checks.find((c) => c.name === 'row-counts')).toMatchObject({ ok: true });
    expect(r.ok).toBe(true);
  });

  it('restores into a new database equal to the source, rows as the manifest counts them', async () => {
    const into = `${db.name}_into`;
    made.push(into);
    const r = await restoreInto({ ...cfg(), into });
    expect(r.rows.attendance_events).toBe(MULTIPART_EVENTS);
    expect(await tableChecksums(urlOf(db, into))).toEqual(atFull);
  });

  it('restores in place (the row-count check no longer refuses it)', async () => {
    await admin.query('DELETE FROM attendance_events WHERE id % 2 = 0');
    await admin.end();
    const r = await restoreInPlace({ ...cfg(), backupId: fullId, dropOld: true });
    admin = createPool(db.adminUrl, 2);
    expect(r.checks.every((c) => c.ok)).toBe(true);
    expect(await tableChecksums(db.adminUrl)).toEqual(atFull);
  });
});

const pidOf = (c: object) => (c as { processID: number }).processID;

/** Wait until `pid` waits for a lock, or `done` settles (a statement that did not wait at all). */
async function waitingOrDone(pid: number, done: Promise<unknown>): Promise<'waiting' | 'done'> {
  let settled = false;
  void done.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (;;) {
    if (settled) return 'done';
    const { rows } = await admin.query<{ w: string | null }>(
      'SELECT wait_event_type AS w FROM pg_stat_activity WHERE pid = $1',
      [pid],
    );
    if (rows[0]?.w === 'Lock') return 'waiting';
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('a full backup while another session changes tables', () => {
  it('keeps the rows a concurrent TRUNCATE and a table-rewriting ALTER TABLE would have hidden', async () => {
    const before = await tableChecksums(db.adminUrl);
    const settings = (await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM tenant_settings'))
      .rows[0]!.n;
    const sites = (await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM sites')).rows[0]!.n;
    expect(settings).toBeGreaterThan(0);
    const truncater = await connectClient(db.adminUrl);
    const alterer = await connectClient(db.adminUrl);
    let truncating: Promise<unknown> | undefined;
    let altering: Promise<unknown> | undefined;
    const seen: string[] = [];
    try {
      const r = await backupFull({
        configPath: inst.configPath,
        // While the first (biggest) table is being copied, before tenant_settings and sites are read.
        onCopyStarted: async () => {
          if (truncating) return;
          truncating = truncater.query(
            `BEGIN; TRUNCATE tenant_settings;
             INSERT INTO tenant_settings (tenant_id, key, value)
               SELECT id, 'after', '1' FROM tenants ORDER BY id LIMIT 5;
             COMMIT`,
          );
          // integer -> bigint rewrites the table: a running snapshot would see it empty.
          altering = alterer.query('ALTER TABLE sites ALTER COLUMN radius_m TYPE bigint');
          seen.push(await waitingOrDone(pidOf(truncater), truncating));
          seen.push(await waitingOrDone(pidOf(alterer), altering));
        },
      });
      await Promise.all([truncating, altering]);
      const m = await manifestOf(r.sidecar.id);
      expect(m.tables.find((t) => t.name === 'tenant_settings')!.rows).toBe(settings);
      expect(m.tables.find((t) => t.name === 'sites')!.rows).toBe(sites);
      // Both waited for the backup's lock instead of changing the tables under its snapshot.
      expect(seen).toEqual(['waiting', 'waiting']);
      const into = `${db.name}_locked`;
      made.push(into);
      await restoreInto({ ...cfg(), into, backupId: r.sidecar.id });
      expect(await tableChecksums(urlOf(db, into))).toEqual(before);
      // The truncate and its inserts are in the next incremental.
      await backupIncremental({ configPath: inst.configPath });
      const next = `${db.name}_next`;
      made.push(next);
      await restoreInto({ ...cfg(), into: next });
      const c = await connectClient(urlOf(db, next));
      try {
        const { rows } = await c.query<{ key: string }>('SELECT key FROM tenant_settings');
        expect(rows.map((x) => x.key)).toEqual(['after', 'after', 'after', 'after']);
      } finally {
        await c.end();
      }
    } finally {
      await truncater.end();
      await alterer.end();
    }
  });
});
