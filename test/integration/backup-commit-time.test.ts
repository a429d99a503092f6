/**
 * Point-in-time restores pick whole transactions by their COMMIT time (migration 0005's marker), and a
 * backup's createdAt is the time of its snapshot, not of the start of the run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedReference } from '../../bench/seed.js';
import { backupFull } from '../../src/core/backup/full.js';
import { backupIncremental } from '../../src/core/backup/incremental.js';
import { restoreInto } from '../../src/core/restore/execute.js';
import { connectClient, createPool, type Pool } from '../../src/db/pool.js';
import { makeInstall, type TestInstall } from '../helpers/backup.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { dropDatabases, urlOf } from '../helpers/restore.js';

let db: TestDatabase;
let admin: Pool;
let inst: TestInstall;
let tenant: string;
const made: string[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  db = await createTestDatabase('committime');
  admin = createPool(db.adminUrl, 2);
  await seedReference(admin, { companies: 2, employees: 10, events: 1_000 });
  tenant = (await admin.query<{ id: string }>('SELECT id FROM tenants ORDER BY slug LIMIT 1')).rows[0]!.id;
  inst = await makeInstall(db);
});

afterAll(async () => {
  await admin.end();
  await dropDatabases(db.superuserUrl, made);
  await db.drop();
  await inst.cleanup();
});

async function keysIn(name: string): Promise<string[]> {
  const c = await connectClient(urlOf(db, name));
  try {
    const { rows } = await c.query<{ key: string }>(
      `SELECT key FROM tenant_settings WHERE key LIKE 'pit%' ORDER BY key`,
    );
    return rows.map((r) => r.key);
  } finally {
    await c.end();
  }
}

describe('restore --at', () => {
  it('leaves out a transaction whose last change was before the time but that committed after it', async () => {
    await backupFull({ configPath: inst.configPath });
    const long = await connectClient(db.adminUrl);
    try {
      await long.query('BEGIN');
      await long.query(`INSERT INTO tenant_settings (tenant_id, key, value) VALUES ($1, 'pit_late', '1')`, [
        tenant,
      ]);
      await admin.query(`INSERT INTO tenant_settings (tenant_id, key, value) VALUES ($1, 'pit_early', '1')`, [
        tenant,
      ]);
      await sleep(30);
      const at = (await admin.query<{ t: Date }>('SELECT clock_timestamp() AS t')).rows[0]!.t;
      await sleep(30);
      await long.query('COMMIT');
      await sleep(5);
      const after = (await admin.query<{ t: Date }>('SELECT clock_timestamp() AS t')).rows[0]!.t;
      await backupIncremental({ configPath: inst.configPath });

      const before = `${db.name}_at`;
      made.push(before);
      await restoreInto({
        configPath: inst.configPath,
        identityFile: inst.identityFile,
        at: at.toISOString(),
        into: before,
      });
      expect(await keysIn(before)).toEqual(['pit_early']);

      const later = `${db.name}_after`;
      made.push(later);
      await restoreInto({
        configPath: inst.configPath,
        identityFile: inst.identityFile,
        at: after.toISOString(),
        into: later,
      });
      expect(await keysIn(later)).toEqual(['pit_early', 'pit_late']);
    } finally {
      await long.end();
    }
  });
});

describe('createdAt of a full backup', () => {
  it('is the time of its snapshot: every transaction it holds committed before it', async () => {
    const writer = await connectClient(db.adminUrl);
    const commits: { txid: string; t: Date }[] = [];
    let stop = false;
    const writing = (async () => {
      for (let i = 0; !stop; i++) {
        await writer.query('BEGIN');
        await writer.query(`INSERT INTO tenant_settings (tenant_id, key, value) VALUES ($1, $2, '1')`, [
          tenant,
          `w${i}`,
        ]);
        // The time just before COMMIT: the commit itself is later still.
        const { rows } = await writer.query<{ txid: string; t: Date }>(
          'SELECT pg_current_xact_id()::text AS txid, clock_timestamp() AS t',
        );
        await writer.query('COMMIT');
        commits.push(rows[0]!);
      }
    })();
    try {
      await sleep(50);
      // The window between the run's start and its snapshot is short: take backups until a commit fell
      // into it (each one must hold the property), so that the test can fail without the fix.
      let hit = false;
      for (let attempt = 0; attempt < 8 && !hit; attempt++) {
        const r = await backupFull({ configPath: inst.configPath });
        const seen = [...commits];
        const { rows } = await admin.query<{ txid: string; visible: boolean }>(
          `SELECT x AS txid, pg_visible_in_snapshot(x::xid8, $2::pg_snapshot) AS visible FROM unnest($1::text[]) x`,
          [seen.map((c) => c.txid), r.sidecar.snapshot],
        );
        const visible = new Set(rows.filter((x) => x.visible).map((x) => x.txid));
        const createdAt = Date.parse(r.sidecar.createdAt);
        const inBackup = seen.filter((c) => visible.has(c.txid));
        // Transactions that committed after the run started and before its snapshot are in the backup,
        // so the backup's time must not be before them (it was the run's start time before).
        const m = /-(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z$/.exec(r.sidecar.id)!;
        const started = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!, +m[7]!);
        expect(inBackup.filter((c) => c.t.getTime() > createdAt)).toEqual([]);
        hit = inBackup.some((c) => c.t.getTime() > started);
      }
      expect(hit).toBe(true);
      stop = true;
      await writing;
    } finally {
      stop = true;
      await writing.catch(() => undefined);
      await writer.end();
    }
  });
});
