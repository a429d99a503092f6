import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedReference } from '../../bench/seed.js';
import { backupFull } from '../../src/core/backup/full.js';
import { backupIncremental } from '../../src/core/backup/incremental.js';
import { readMaintenance } from '../../src/core/maintenance.js';
import { restoreDrill, sweepOldDrills } from '../../src/core/restore/drill.js';
import { stamp } from '../../src/core/restore/toolkit.js';
import { planInPlace, restoreInPlace } from '../../src/core/restore/in-place.js';
import { describePlan } from '../../src/core/restore/plan.js';
import { AttenduxError } from '../../src/errors.js';
import { connectClient, createPool, ddl, withTenant, type Pool } from '../../src/db/pool.js';
import { makeInstall, type TestInstall } from '../helpers/backup.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { databaseExists, dropDatabases, tableChecksums, urlOf } from '../helpers/restore.js';

let db: TestDatabase;
let admin: Pool;
let app: Pool;
let inst: TestInstall;
let tenant: string;
let atInc: Record<string, string>;
let incId: string;
const old: string[] = [];
const cfg = () => ({ configPath: inst.configPath, identityFile: inst.identityFile });

async function oldDatabases(): Promise<string[]> {
  const c = await connectClient(db.superuserUrl);
  try {
    const { rows } = await c.query<{ datname: string }>(
      `SELECT datname FROM pg_database WHERE datname LIKE $1 || '\\_%' ORDER BY 1`,
      [db.name],
    );
    return rows.map((r) => r.datname);
  } finally {
    await c.end();
  }
}

async function disaster(): Promise<void> {
  await withTenant(app, tenant, (c) =>
    c.query('DELETE FROM attendance_events WHERE tenant_id = $1', [tenant]),
  );
}

beforeAll(async () => {
  db = await createTestDatabase('rinplace');
  admin = createPool(db.adminUrl, 2);
  app = createPool(db.appUrl, 2);
  await seedReference(admin, { companies: 2, employees: 20, events: 8_000 });
  tenant = (await admin.query<{ id: string }>('SELECT id FROM tenants ORDER BY slug LIMIT 1')).rows[0]!.id;
  inst = await makeInstall(db);
  await backupFull({ configPath: inst.configPath });
  await withTenant(app, tenant, (c) =>
    c.query(`UPDATE employees SET full_name = full_name || ' (inc)' WHERE tenant_id = $1`, [tenant]),
  );
  atInc = await tableChecksums(db.adminUrl);
  incId = (await backupIncremental({ configPath: inst.configPath })).sidecar.id;
});

afterAll(async () => {
  await app.end();
  await admin.end();
  await dropDatabases(db.superuserUrl, [...old, ...(await oldDatabases())]);
  await db.drop();
  await inst.cleanup();
});

describe('restore --in-place', () => {
  it('swaps the restored database in under the live name, keeps the old one and leaves maintenance', async () => {
    await disaster();
    const damaged = await tableChecksums(db.adminUrl);
    // A connected client, like the server's pool: its session is ended by the swap and reconnects.
    const server = createPool(db.appUrl, 1);
    await server.query('SELECT 1');
    let maintenanceSeen = false;
    let liveDuring: Record<string, string> | undefined;
    // What --dry-run and the prompt print names the kept database; the restore keeps it under that name,
    // even a few milliseconds later (the name's timestamp is the plan's, not the run's).
    const planned = await planInPlace(cfg());
    const shown = [...describePlan(planned.plan), planned.plan.effect].join('\n');
    expect(shown).toContain(planned.old);
    await new Promise((r) => setTimeout(r, 5));
    const r = await restoreInPlace(
      {
        ...cfg(),
        onMaintenance: async () => {
          maintenanceSeen = (await readMaintenance(inst.dataDir)) !== undefined;
          liveDuring = await tableChecksums(db.adminUrl);
        },
      },
      planned,
    );
    expect(r.oldDatabase).toBe(planned.old);
    expect(maintenanceSeen).toBe(true);
    expect(liveDuring).toEqual(damaged);
    expect(r.database).toBe(db.name);
    expect(r.checks.every((c) => c.ok)).toBe(true);
    old.push(r.oldDatabase!);
    expect(await readMaintenance(inst.dataDir)).toBeUndefined();
    expect(await tableChecksums(db.adminUrl)).toEqual(atInc);
    expect(await tableChecksums(urlOf(db, r.oldDatabase!))).toEqual(damaged);
    await server.query('SELECT 1').catch(() => undefined);
    const after = await withTenant(server, tenant, (c) =>
      c.query<{ n: number }>('SELECT count(*)::int AS n FROM attendance_events'),
    );
    expect(after.rows[0]!.n).toBe(4_000);
    await server.end();
  });

  it('drops the replaced database with --drop-old', async () => {
    await disaster();
    const before = await oldDatabases();
    const r = await restoreInPlace({ ...cfg(), backupId: incId, dropOld: true });
    expect(r.oldDatabase).toBeNull();
    expect(await oldDatabases()).toEqual(before);
    expect(await tableChecksums(db.adminUrl)).toEqual(atInc);
  });

  it('leaves the live database unchanged and maintenance off when the swap cannot happen', async () => {
    await disaster();
    const damaged = await tableChecksums(db.adminUrl);
    const before = await oldDatabases();
    // A session of another role (a superuser's psql) that the owner may not terminate holds the database.
    const blocker = await connectClient(urlOf(db, db.name, 'super'));
    try {
      const err = (await restoreInPlace(cfg()).catch((e: unknown) => e)) as AttenduxError;
      expect(err).toBeInstanceOf(AttenduxError);
      expect(err.code).toBe('RESTORE_FAILED');
      expect(err.message).toMatch(new RegExp(`could not swap .* in for ${db.name}`));
    } finally {
      await blocker.end();
    }
    expect(await readMaintenance(inst.dataDir)).toBeUndefined();
    expect(await oldDatabases()).toEqual(before);
    expect(await tableChecksums(db.adminUrl)).toEqual(damaged);
    await restoreInPlace({ ...cfg(), dropOld: true });
  });
});

describe('restore --drill', () => {
  it('restores the newest chain into a throwaway database, passes every check and drops it', async () => {
    const before = await oldDatabases();
    const r = await restoreDrill(cfg());
    expect(r.ok).toBe(true);
    expect(r.checks.map((c) => c.name)).toEqual([
      'restore',
      'checksums',
      'row-counts',
      'change-counts',
      'foreign-keys',
      'newest-event',
      'audit-chains',
      'row-level-security',
      'security-ledger',
    ]);
    expect(await databaseExists(db, r.database)).toBe(false);
    expect(await oldDatabases()).toEqual(before);
    const { rows } = await admin.query<{ details: { outcome: string } }>(
      `SELECT details FROM audit_log WHERE action = 'restore.drill' ORDER BY at DESC LIMIT 1`,
    );
    expect(rows[0]!.details.outcome).toBe('success');
  });

  it('drops the databases of drills killed more than a day ago, and only those', async () => {
    const abandoned = `${db.name}_drill_20200101_000000`;
    const recent = `${db.name}_drill_${stamp()}`;
    const m = await connectClient(urlOf(db, 'postgres'));
    try {
      for (const n of [abandoned, recent]) await ddl(m, 'CREATE DATABASE %I', n);
    } finally {
      await m.end();
    }
    try {
      expect(await sweepOldDrills(db.adminUrl, db.name)).toEqual([abandoned]);
      expect(await databaseExists(db, abandoned)).toBe(false);
      expect(await databaseExists(db, recent)).toBe(true);
    } finally {
      await dropDatabases(db.superuserUrl, [abandoned, recent]);
    }
  });

  it('reports a corrupt backup as a failed restore check', async () => {
    const file = join(inst.backupDir, `${incId}.tar.age`);
    const original = await readFile(file);
    const bad = Buffer.from(original);
    bad[bad.length - 100]! ^= 0xff;
    await writeFile(file, bad);
    try {
      const r = await restoreDrill({ ...cfg(), backupId: incId });
      expect(r.ok).toBe(false);
      expect(r.checks).toHaveLength(1);
      expect(r.checks[0]!.name).toBe('restore');
      expect(r.checks[0]!.detail).toMatch(new RegExp(`backup ${incId} \\(link 2 of 2\\) is corrupt`));
      expect(await databaseExists(db, r.database)).toBe(false);
    } finally {
      await writeFile(file, original);
    }
  });

  it('fails the newest-event check when the newest event is older than the allowed window', async () => {
    const r = await restoreDrill({ ...cfg(), maxEventAgeHours: 0.000001 });
    expect(r.ok).toBe(false);
    expect(r.checks.filter((c) => !c.ok).map((c) => c.name)).toEqual(['newest-event']);
  });
});
