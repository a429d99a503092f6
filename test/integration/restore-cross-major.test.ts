import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedReference } from '../../bench/seed.js';
import { backupFull } from '../../src/core/backup/full.js';
import { backupIncremental } from '../../src/core/backup/incremental.js';
import { restoreInto } from '../../src/core/restore/execute.js';
import { ensureEmbeddedCluster, type EmbeddedCluster } from '../../src/db/embedded.js';
import { runMigrations } from '../../src/db/migrate.js';
import { connectClient, createPool, withTenant, type Pool } from '../../src/db/pool.js';
import { provisionDatabase } from '../../src/db/provision.js';
import { freePort } from '../helpers/global-setup.js';
import { makeInstall, patchConfig, type TestInstall } from '../helpers/backup.js';
import { createTestDatabase, urlFor, type TestDatabase } from '../helpers/db.js';
import { dropDatabases, tableChecksums, urlOf } from '../helpers/restore.js';

const PASSWORD = 'cross-major-password';
let pg15: TestDatabase;
let pool15: Pool;
let dir: string;
let cluster: EmbeddedCluster;
let superuser17: string;
let install15: TestInstall;
let install17: TestInstall;
let source15: Record<string, string>;
const made15: string[] = [];

async function serverMajor(url: string): Promise<number> {
  const c = await connectClient(url);
  try {
    const { rows } = await c.query<{ v: string }>("SELECT current_setting('server_version_num') AS v");
    return Math.floor(Number(rows[0]!.v) / 10000);
  } finally {
    await c.end();
  }
}

/** A test database stand-in on the embedded cluster: same shape as createTestDatabase's. */
function on17(name: string): TestDatabase {
  return {
    name,
    superuserUrl: superuser17,
    adminUrl: urlFor(superuser17, 'attendux_owner', PASSWORD, name),
    appUrl: urlFor(superuser17, 'attendux_app', PASSWORD, name),
    appRole: 'attendux_app',
    drop: () => Promise.resolve(),
  };
}

beforeAll(async () => {
  pg15 = await createTestDatabase('xmajor');
  pool15 = createPool(pg15.adminUrl, 2);
  await seedReference(pool15, { companies: 2, employees: 20, events: 10_000 });
  install15 = await makeInstall(pg15);
  await backupFull({ configPath: install15.configPath });
  const t = (await pool15.query<{ id: string }>('SELECT id FROM tenants LIMIT 1')).rows[0]!.id;
  await withTenant(pool15, t, (c) =>
    c.query('DELETE FROM attendance_events WHERE tenant_id = $1 AND id % 3 = 0', [t]),
  );
  source15 = await tableChecksums(pg15.adminUrl);
  await backupIncremental({ configPath: install15.configPath });

  // As root the cluster runs as the postgres OS user, which must traverse the temp dir.
  dir = await mkdtemp(join(tmpdir(), 'attendux-xmajor-'));
  await chmod(dir, 0o711);
  const port = await freePort();
  cluster = await ensureEmbeddedCluster({ dataDir: join(dir, 'data'), port, superuserPassword: PASSWORD });
  superuser17 = `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres`;
  await provisionDatabase({
    existingRoles: 'reset',
    superuserUrl: superuser17,
    database: 'attendux',
    ownerRole: 'attendux_owner',
    ownerPassword: PASSWORD,
    appRole: 'attendux_app',
    appPassword: PASSWORD,
  });
  await runMigrations({ adminUrl: on17('attendux').adminUrl, appRole: 'attendux_app', direction: 'up' });
  // The second install reads the first one's backups, as a new server with the old backup dir copied over.
  install17 = await makeInstall(on17('attendux'), { backup: { dir: install15.backupDir } });
  await patchConfig(install17, (c) => {
    c.backup.recipients = [install15.recipient];
  });
}, 240_000);

afterAll(async () => {
  await pool15.end();
  await dropDatabases(pg15.superuserUrl, made15);
  await pg15.drop();
  await cluster?.stop();
  await rm(dir, { recursive: true, force: true });
  await install15.cleanup();
  await install17?.cleanup();
});

describe('restore across PostgreSQL majors', () => {
  it('restores a chain taken on PostgreSQL 15 into an embedded PostgreSQL 17 cluster, and back', async () => {
    // The source is the run's test cluster: the PostgreSQL 15 service in CI and on the development machines
    // (ATTENDUX_TEST_DATABASE_URL); on a machine with no PostgreSQL at all it is itself an embedded 17, and
    // this test then proves a restore across clusters rather than across majors.
    if (process.env.ATTENDUX_TEST_DATABASE_URL) expect(await serverMajor(pg15.adminUrl)).toBe(15);
    expect(await serverMajor(superuser17)).toBe(17);

    await restoreInto({
      configPath: install17.configPath,
      identityFile: install15.identityFile,
      into: 'from15',
    });
    const on17copy = await tableChecksums(on17('from15').adminUrl);
    expect(on17copy).toEqual(source15);

    // Back: a full backup of the PostgreSQL 17 copy, restored into the PostgreSQL 15 service.
    const back = await makeInstall(on17('from15'));
    try {
      await backupFull({ configPath: back.configPath });
      const to15 = await makeInstall(pg15, { backup: { dir: back.backupDir } });
      try {
        const into = `${pg15.name}_from17`.slice(0, 63);
        made15.push(into);
        await restoreInto({ configPath: to15.configPath, identityFile: back.identityFile, into });
        expect(await tableChecksums(urlOf(pg15, into))).toEqual(source15);
      } finally {
        await to15.cleanup();
      }
    } finally {
      await back.cleanup();
    }
  });
});
