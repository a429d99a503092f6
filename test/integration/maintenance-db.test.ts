import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createPool, type Pool } from '../../src/db/pool.js';
import {
  enterMaintenance,
  leaveMaintenance,
  maintenanceWatcher,
  readMaintenanceDb,
} from '../../src/core/maintenance.js';
import { databaseUrl } from '../../src/core/restore/load.js';

/** Maintenance mode as a row in the database (migrations/0010), for serve instances on other hosts. */

let db: TestDatabase;
let admin: Pool;
let app: Pool;
let dir: string;

beforeAll(async () => {
  db = await createTestDatabase('maintdb');
  admin = createPool(db.adminUrl, 2);
  app = createPool(db.appUrl, 2);
  dir = await mkdtemp(join(tmpdir(), 'attendux-maint-'));
});
afterAll(async () => {
  await admin?.end();
  await app?.end();
  await rm(dir, { recursive: true, force: true });
  await db?.drop();
});

/** A pid that is not running. */
async function deadPid(): Promise<number> {
  const { spawn } = await import('node:child_process');
  const p = spawn(process.execPath, ['-e', '0']);
  await new Promise((r) => p.once('exit', r));
  return p.pid!;
}

describe('maintenance mode in the database', () => {
  it('restore --in-place writes the row with the file; the app role reads it; leaving removes both', async () => {
    await enterMaintenance(dir, { reason: 'restore of full-1', retryAfterSeconds: 90, dbUrl: db.adminUrl });
    expect(await readMaintenanceDb(app)).toMatchObject({
      reason: 'restore of full-1',
      retryAfterSeconds: 90,
      pid: process.pid,
    });
    // Another host's view: no file there, only the row.
    const elsewhere = maintenanceWatcher(join(dir, 'no-such-dir'), 0, app);
    expect(await elsewhere()).toMatchObject({ reason: 'restore of full-1' });
    expect(await leaveMaintenance(dir, [db.adminUrl])).toBe(true);
    expect(await readMaintenanceDb(app)).toBeUndefined();
    // The watcher reads the row in the background after its first answer: it sees the end soon after.
    const deadline = Date.now() + 5000;
    while ((await elsewhere()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(await elsewhere()).toBeUndefined();
  });

  it('ignores a row left by a writer on this host that is gone, not one from another host', async () => {
    const pid = await deadPid();
    await admin.query(
      `INSERT INTO server_maintenance (reason, retry_after_seconds, host, pid) VALUES ('killed restore', 60, $1, $2)`,
      [hostname(), pid],
    );
    expect(await readMaintenanceDb(app)).toBeUndefined();
    await admin.query(`UPDATE server_maintenance SET host = 'db-host-2'`);
    expect(await readMaintenanceDb(app)).toMatchObject({ reason: 'killed restore' });
    await leaveMaintenance(dir, [db.adminUrl]);
    expect(await readMaintenanceDb(app)).toBeUndefined();
  });

  it('leaving names no error for a database that does not exist (dropped, or never swapped in)', async () => {
    expect(await leaveMaintenance(dir, [databaseUrl(db.adminUrl, `${db.name}_gone`)])).toBe(false);
  });

  it('the row is bookkeeping: never backed up, the app role cannot write it', async () => {
    const { rows } = await admin.query<{ t: string }>('SELECT attendux_backup_tables() AS t');
    expect(rows.map((r) => r.t)).not.toContain('server_maintenance');
    await expect(
      app.query(
        `INSERT INTO server_maintenance (reason, retry_after_seconds, host, pid) VALUES ('x', 1, 'h', 1)`,
      ),
    ).rejects.toMatchObject({ code: '42501' });
  });
});
