import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrationFiles, migrationState, runMigrations, schemaVersion } from '../../src/db/migrate.js';
import { createPool, type Pool } from '../../src/db/pool.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

let db: TestDatabase;
let admin: Pool;

beforeAll(async () => {
  db = await createTestDatabase('migrations');
  admin = createPool(db.adminUrl, 2);
});

afterAll(async () => {
  await admin.end();
  await db.drop();
});

const tableExists = async (name: string) =>
  (await admin.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [name])).rows[0]!.t !== null;

describe('migrations', () => {
  it('reports every shipped migration as applied on a migrated database', async () => {
    const state = await migrationState(admin);
    expect(state.pending).toEqual([]);
    expect(state.applied.map((a) => a.name)).toEqual(await migrationFiles());
    expect(await schemaVersion(admin)).toBe((await migrationFiles()).at(-1));
  });

  it('reverts all the way down and back up', async () => {
    const files = await migrationFiles();
    const down = await runMigrations({
      adminUrl: db.adminUrl,
      appRole: db.appRole,
      direction: 'down',
      count: files.length,
    });
    expect(down).toEqual([...files].reverse());
    expect(await tableExists('attendance_events')).toBe(false);
    expect((await migrationState(admin)).pending).toEqual(files);

    const up = await runMigrations({ adminUrl: db.adminUrl, appRole: db.appRole, direction: 'up' });
    expect(up).toEqual(files);
    expect(await tableExists('attendance_events')).toBe(true);
  });

  it('lists pending migrations in a dry run without applying them', async () => {
    const files = await migrationFiles();
    await runMigrations({
      adminUrl: db.adminUrl,
      appRole: db.appRole,
      direction: 'down',
      count: files.length,
    });
    const wouldRun = await runMigrations({
      adminUrl: db.adminUrl,
      appRole: db.appRole,
      direction: 'up',
      dryRun: true,
    });
    expect(wouldRun).toEqual(files);
    expect(await tableExists('tenants')).toBe(false);
    await runMigrations({ adminUrl: db.adminUrl, appRole: db.appRole, direction: 'up' });
  });

  it('lets concurrent runs wait for each other instead of failing', async () => {
    const files = await migrationFiles();
    await runMigrations({
      adminUrl: db.adminUrl,
      appRole: db.appRole,
      direction: 'down',
      count: files.length,
    });
    const [a, b] = await Promise.all([
      runMigrations({ adminUrl: db.adminUrl, appRole: db.appRole, direction: 'up' }),
      runMigrations({ adminUrl: db.adminUrl, appRole: db.appRole, direction: 'up' }),
    ]);
    expect([...a, ...b].sort()).toEqual([...files].sort());
    expect((await migrationState(admin)).pending).toEqual([]);
  });

  it('rolls a failing run back whole and names the failure', async () => {
    const files = await migrationFiles();
    await runMigrations({
      adminUrl: db.adminUrl,
      appRole: db.appRole,
      direction: 'down',
      count: files.length,
    });
    // The first migration grants to the app role; a role that does not exist makes it fail part-way.
    await expect(
      runMigrations({ adminUrl: db.adminUrl, appRole: 'no_such_role_here', direction: 'up' }),
    ).rejects.toMatchObject({ code: 'MIGRATION_FAILED' });
    expect((await migrationState(admin)).pending).toEqual(files);
    expect(await tableExists('tenants')).toBe(false);
    await runMigrations({ adminUrl: db.adminUrl, appRole: db.appRole, direction: 'up' });
    expect((await migrationState(admin)).pending).toEqual([]);
  });
});
