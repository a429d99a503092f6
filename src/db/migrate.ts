import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { AttenduxError } from '../errors.js';
import { connectClient, type Queryable } from './pool.js';

/** Migrations ship at the package root and are found through the package, never the cwd. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));
export const MIGRATIONS_TABLE = 'pgmigrations';

export interface MigrateOptions {
  adminUrl: string;
  /** Role the migrations grant table privileges to (config database.appRole). */
  appRole: string;
  direction: 'up' | 'down';
  /** How many to run; up defaults to all, down to one. */
  count?: number;
  dryRun?: boolean;
  log?: (line: string) => void;
}

export interface MigrationState {
  applied: { name: string; runOn: string }[];
  pending: string[];
}

/** The migration names in a folder (the shipped ones by default), oldest first. */
export async function migrationFiles(dir = MIGRATIONS_DIR): Promise<string[]> {
  const files = await readdir(dir);
  return files
    .filter((f) => /^\d{4}_[a-z0-9-]+\.sql$/.test(f))
    .map((f) => f.replace(/\.sql$/, ''))
    .sort();
}

/**
 * Run migrations through node-pg-migrate on one connection that carries attendux.app_role, which the SQL
 * migrations read to grant privileges. A concurrent run waits on the advisory lock instead of failing.
 */
export async function runMigrations(opts: MigrateOptions): Promise<string[]> {
  const { runner } = await import('node-pg-migrate');
  const client = await connectClient(opts.adminUrl, 'attendux-migrate');
  try {
    await client.query("SELECT set_config('attendux.app_role', $1, false)", [opts.appRole]);
    const ran = await runner({
      dbClient: client,
      dir: MIGRATIONS_DIR,
      migrationsTable: MIGRATIONS_TABLE,
      direction: opts.direction,
      count: opts.count ?? (opts.direction === 'up' ? Infinity : 1),
      singleTransaction: true,
      checkOrder: true,
      dryRun: opts.dryRun ?? false,
      advisoryLockMode: 'wait',
      ignorePattern: '(\\..*|.*\\.md)',
      log: () => undefined,
      logger: {
        debug: () => undefined,
        info: () => undefined,
        warn: (m: string) => opts.log?.(m),
        error: () => undefined,
      },
    });
    return ran.map((m) => m.name);
  } catch (err) {
    throw new AttenduxError(
      'MIGRATION_FAILED',
      `migration ${opts.direction} failed: ${(err as Error).message}`,
      {
        cause: err,
        hint: 'the failed migration was rolled back; fix the cause and run it again',
      },
    );
  } finally {
    await client.end().catch(() => undefined); // a broken connection: the migration's own error is thrown
  }
}

export async function appliedMigrations(c: Queryable): Promise<{ name: string; runOn: string }[]> {
  const exists = await c.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [MIGRATIONS_TABLE]);
  if (!exists.rows[0]?.t) return [];
  const { rows } = await c.query<{ name: string; run_on: Date }>(
    `SELECT name, run_on FROM ${MIGRATIONS_TABLE} ORDER BY run_on, id`,
  );
  return rows.map((r) => ({ name: r.name, runOn: r.run_on.toISOString() }));
}

/** The names of the applied migrations as the app role may read them (GET /readyz: a SECURITY DEFINER function). */
export async function appliedMigrationNames(q: Queryable): Promise<string[]> {
  const { rows } = await q.query<{ name: string }>('SELECT attendux_applied_migrations() AS name');
  return rows.map((r) => r.name);
}

/**
 * Which migrations are applied and which are pending. `c` must not be inside a transaction (every caller
 * opens a fresh connection or uses a pool): the list is read in one round trip, and a database never
 * migrated shows as the error of a missing table rather than by asking for the table first.
 */
export async function migrationState(c: Queryable): Promise<MigrationState> {
  const read = c
    .query<{ name: string; run_on: Date }>(`SELECT name, run_on FROM ${MIGRATIONS_TABLE} ORDER BY run_on, id`)
    .then(
      ({ rows }) => rows.map((r) => ({ name: r.name, runOn: r.run_on.toISOString() })),
      (err: unknown) => {
        // undefined_table: no migration ever ran, so none is applied; anything else is a real failure
        if ((err as { code?: string }).code === '42P01') return [];
        throw err;
      },
    );
  // The shipped files are listed while the database answers.
  const [applied, files] = await Promise.all([read, migrationFiles()]);
  const done = new Set(applied.map((a) => a.name));
  const pending = files.filter((f) => !done.has(f));
  return { applied, pending };
}

/** The schema version a backup records: the name of the newest applied migration. */
export async function schemaVersion(c: Queryable): Promise<string | null> {
  const applied = await appliedMigrations(c);
  return applied.length ? applied[applied.length - 1]!.name : null;
}
