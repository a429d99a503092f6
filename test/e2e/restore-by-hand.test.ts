/**
 * The README's by-hand recipe, run exactly as written (only its variable lines are replaced) with Debian's
 * age, tar, gunzip and psql against a chain of a full and two incrementals holding inserts, updates,
 * deletes and a TRUNCATE: the result equals the source, sequences included, and attendux accepts the schema.
 */
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedReference } from '../../bench/seed.js';
import { backupFull } from '../../src/core/backup/full.js';
import { backupIncremental } from '../../src/core/backup/incremental.js';
import { migrationFiles } from '../../src/db/migrate.js';
import { connectClient, createPool, type Pool } from '../../src/db/pool.js';
import { makeInstall, type TestInstall } from '../helpers/backup.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { dropDatabases, tableChecksums, urlOf } from '../helpers/restore.js';

let db: TestDatabase;
let admin: Pool;
let inst: TestInstall;
const chain: string[] = [];
let atEnd: Record<string, string>;
let atInc1: Record<string, string>;
let t1: string;
const target = () => `${db.name}_byhand`;

function recipe(): string {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const block = /<!-- by-hand-restore -->\n+```sh\n([\s\S]*?)```\n+<!-- \/by-hand-restore -->/.exec(readme);
  if (!block) throw new Error('README has no by-hand-restore block');
  return block[1]!;
}

beforeAll(async () => {
  db = await createTestDatabase('byhand');
  admin = createPool(db.adminUrl, 2);
  await seedReference(admin, { companies: 2, employees: 10, events: 2_000 });
  await admin.query(`INSERT INTO tenant_settings (tenant_id, key, value) SELECT id, 'k', '1' FROM tenants`);
  inst = await makeInstall(db);
  chain.push((await backupFull({ configPath: inst.configPath })).sidecar.id);
  await admin.query(`UPDATE employees SET full_name = full_name || ' (1)' WHERE employee_number LIKE 'E1%'`);
  await admin.query(`DELETE FROM attendance_events WHERE id % 7 = 0`);
  await admin.query(
    `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, geofence, method)
     SELECT tenant_id, id, 'check_in', now(), 'unknown', 'gps' FROM employees`,
  );
  chain.push((await backupIncremental({ configPath: inst.configPath })).sidecar.id);
  atInc1 = await tableChecksums(db.adminUrl);
  t1 = (await admin.query<{ t: Date }>('SELECT clock_timestamp() AS t')).rows[0]!.t.toISOString();
  await admin.query('TRUNCATE tenant_settings');
  await admin.query(
    `INSERT INTO tenant_settings (tenant_id, key, value) SELECT id, 'after', '2' FROM tenants`,
  );
  await admin.query(`UPDATE teams SET name = name || ' x'`);
  atEnd = await tableChecksums(db.adminUrl);
  chain.push((await backupIncremental({ configPath: inst.configPath })).sidecar.id);
}, 120_000);

afterAll(async () => {
  await admin.end();
  await dropDatabases(db.superuserUrl, [target(), `${target()}_at`]);
  await db.drop();
  await inst.cleanup();
});

function script(into: string): string {
  return recipe()
    .replace(
      /^BACKUPS=.*$/m,
      `BACKUPS=${inst.backupDir} IDENTITY=${inst.identityFile} APP_ROLE=${db.appRole}`,
    )
    .replace(/^TARGET=.*$/m, `TARGET=${urlOf(db, into, 'super')}`)
    .replace(/^CHAIN=.*$/m, `CHAIN="${chain.join(' ')}"`);
}

async function runScript(text: string, dir: string) {
  const cwd = join(inst.dir, dir);
  await mkdir(cwd);
  // Only Debian's tools on PATH: no node, no attendux.
  return execa('bash', ['-c', text], {
    cwd,
    env: { PATH: '/usr/bin:/bin', HOME: cwd },
    extendEnv: false,
    reject: false,
  });
}

describe('the README by-hand restore', () => {
  it('with -v until keeps only the transactions committed by then', async () => {
    const text = script(`${target()}_at`).replace(
      '-f apply-changes.sql',
      `-v until=${t1} -f apply-changes.sql`,
    );
    const r = await runScript(text, 'by-hand-at');
    expect(r.stderr).not.toMatch(/ERROR/);
    expect(r.exitCode).toBe(0);
    expect(await tableChecksums(urlOf(db, `${target()}_at`, 'super'))).toEqual(atInc1);
  });

  it('restores a full and two incrementals with age, tar, gunzip and psql alone', async () => {
    const r = await runScript(script(target()), 'by-hand');
    expect(r.stderr).not.toMatch(/ERROR/);
    expect(r.exitCode).toBe(0);
    // The superuser who ran the scripts owns the tables (row-level security does not apply to it).
    expect(await tableChecksums(urlOf(db, target(), 'super'))).toEqual(atEnd);

    // Sequences were moved past the loaded rows: a new event gets a fresh id.
    const c = await connectClient(urlOf(db, target(), 'super'));
    try {
      const { rows } = await c.query<{ next: string; max: string }>(
        `SELECT nextval(pg_get_serial_sequence('attendance_events', 'id'))::text AS next,
                (SELECT max(id) FROM attendance_events)::text AS max`,
      );
      expect(BigInt(rows[0]!.next)).toBeGreaterThan(BigInt(rows[0]!.max));
    } finally {
      await c.end();
    }
    // The migrations table says the backup's schema version, as `attendux migrate` would have left it.
    const m = await connectClient(urlOf(db, target(), 'super'));
    try {
      const { rows } = await m.query<{ name: string }>('SELECT name FROM pgmigrations ORDER BY id');
      expect(rows.map((x) => x.name)).toEqual(await migrationFiles());
    } finally {
      await m.end();
    }
  });
});
