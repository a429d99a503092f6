import { createHash, randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { connectClient, ddl } from '../../src/db/pool.js';

export const TEST_OWNER_ROLE = 'attendux_test_owner';
export const TEST_APP_ROLE = 'attendux_test_app';
export const TEST_PASSWORD = 'attendux-test-password';

export interface TestCluster {
  superuserUrl: string;
  template: string;
}

export interface TestDatabase {
  name: string;
  superuserUrl: string;
  /** Owner role: bypasses row-level security (what the CLI and backups use). */
  adminUrl: string;
  /** The unprivileged role the server runs as. */
  appUrl: string;
  appRole: string;
  drop(): Promise<void>;
}

/**
 * The audit key of every test install on one test database: tests point several installs at the same
 * database, and entries MAC'd by one must verify under the others (a real install has one key per database).
 */
export function auditKeyFor(db: { name: string }): string {
  return createHash('sha256').update(`attendux-test-audit-key:${db.name}`).digest('base64');
}

export function urlFor(base: string, user: string, password: string, database: string): string {
  const u = new URL(base);
  u.username = user;
  u.password = password;
  u.pathname = `/${database}`;
  return u.toString();
}

/** A fresh, migrated database of its own for one test file, cloned from the run's template. */
export async function createTestDatabase(label = 'db'): Promise<TestDatabase> {
  const { superuserUrl, template } = inject('pg');
  const name = `attendux_t_${label.replace(/\W/g, '').slice(0, 20)}_${randomBytes(4).toString('hex')}`;
  const su = await connectClient(superuserUrl);
  try {
    await ddl(su, 'CREATE DATABASE %I TEMPLATE %I OWNER %I', name, template, TEST_OWNER_ROLE);
    await ddl(su, 'GRANT CONNECT ON DATABASE %I TO %I', name, TEST_APP_ROLE);
  } finally {
    await su.end();
  }
  return {
    name,
    superuserUrl,
    adminUrl: urlFor(superuserUrl, TEST_OWNER_ROLE, TEST_PASSWORD, name),
    appUrl: urlFor(superuserUrl, TEST_APP_ROLE, TEST_PASSWORD, name),
    appRole: TEST_APP_ROLE,
    drop: async () => {
      const c = await connectClient(superuserUrl);
      try {
        await ddl(c, 'DROP DATABASE IF EXISTS %I WITH (FORCE)', name);
      } finally {
        await c.end();
      }
    },
  };
}

/** Drop a database made by `attendux init` in a test, with its two roles (<db>_owner, <db>_app). */
export async function dropInstall(superuserUrl: string, database: string): Promise<void> {
  const su = await connectClient(superuserUrl);
  try {
    await ddl(su, 'DROP DATABASE IF EXISTS %I WITH (FORCE)', database);
    await ddl(su, 'DROP ROLE IF EXISTS %I', `${database}_owner`);
    await ddl(su, 'DROP ROLE IF EXISTS %I', `${database}_app`);
  } finally {
    await su.end();
  }
}
