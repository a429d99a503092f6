import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { ensureEmbeddedCluster } from '../../src/db/embedded.js';
import { connectClient, ddl } from '../../src/db/pool.js';
import { provisionDatabase } from '../../src/db/provision.js';
import { runMigrations } from '../../src/db/migrate.js';
import { TEST_APP_ROLE, TEST_OWNER_ROLE, TEST_PASSWORD, type TestCluster } from './db.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pg: TestCluster;
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * One PostgreSQL for the whole run: the one ATTENDUX_TEST_DATABASE_URL names (a superuser URL), or an
 * embedded cluster started here. A template database is migrated once; each test file clones it.
 */
export default async function setup(project: TestProject) {
  let superuserUrl = process.env.ATTENDUX_TEST_DATABASE_URL;
  let stopCluster: (() => Promise<void>) | undefined;
  let clusterDir: string | undefined;
  if (!superuserUrl) {
    clusterDir = await mkdtemp(join(tmpdir(), 'attendux-test-pg-'));
    const port = await freePort();
    const cluster = await ensureEmbeddedCluster({
      dataDir: clusterDir,
      port,
      superuserPassword: TEST_PASSWORD,
    });
    stopCluster = () => cluster.stop();
    superuserUrl = `postgres://postgres:${TEST_PASSWORD}@127.0.0.1:${port}/postgres`;
  }
  const template = `attendux_tpl_${project.name.replace(/\W/g, '')}_${process.pid}`;
  await provisionDatabase({
    existingRoles: 'reset',
    superuserUrl,
    database: template,
    ownerRole: TEST_OWNER_ROLE,
    ownerPassword: TEST_PASSWORD,
    appRole: TEST_APP_ROLE,
    appPassword: TEST_PASSWORD,
  });
  const tplUrl = new URL(superuserUrl);
  tplUrl.username = TEST_OWNER_ROLE;
  tplUrl.password = TEST_PASSWORD;
  tplUrl.pathname = `/${template}`;
  await runMigrations({ adminUrl: tplUrl.toString(), appRole: TEST_APP_ROLE, direction: 'up' });
  project.provide('pg', { superuserUrl, template });

  return async () => {
    const su = await connectClient(superuserUrl);
    try {
      await ddl(su, 'DROP DATABASE IF EXISTS %I WITH (FORCE)', template);
    } finally {
      await su.end();
    }
    if (stopCluster) await stopCluster();
    if (clusterDir) await rm(clusterDir, { recursive: true, force: true });
  };
}
