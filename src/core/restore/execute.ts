import { AttenduxError, isAttenduxError } from '../../errors.js';
import { cliActor } from '../actor.js';
import type { ConfigLocation, LoadedConfig } from '../config/load.js';
import { openInstall, type Install } from '../install.js';
import { registerAuditKey } from '../audit/mac.js';
import { connectClient, ddl, type Queryable } from '../../db/pool.js';
import { migrationFiles, runMigrations } from '../../db/migrate.js';
import { appendAudit, SYSTEM_TENANT } from '../../db/queries/audit.js';
import { openChain, planFromCatalog, restoreIdentities, type OpenedChain } from './chain.js';
import { databaseOf, databaseUrl, loadChain, type LoadProgress, type LoadResult } from './load.js';
import type { RestoreMode, RestorePlan } from './plan.js';

export interface RestoreProgress extends LoadProgress {
  backup?: string;
}

export interface RestoreOptions extends ConfigLocation {
  backupId?: string;
  /** ISO time: the newest state at or before it. */
  at?: string;
  /** Target database (default `<live>_restore_<time>`). */
  into?: string;
  /** Replace a target database that holds data. */
  force?: boolean;
  identityFile?: string;
  /** Parent of the private temp dir for decrypted files (default the OS temp dir). */
  tempRoot?: string;
  onProgress?: (p: RestoreProgress) => void;
}

export interface RestoreResult {
  plan: RestorePlan;
  database: string;
  /** The restored database's owner URL without password, for the switch-over instructions. */
  databaseUrl: string;
  rows: Record<string, number>;
  changes: number;
  changesByBackup: Record<string, number>;
  seconds: number;
  /** How to make the server use the restored database. */
  next: string[];
}

const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * The time part of generated database names, down to the millisecond: a restore killed and run again within
 * the same second must not find its own leftover under the name it is about to create.
 */
export function stamp(d = new Date()): string {
  return d.toISOString().replace(/[-:.]/g, '').replace('Z', '').replace('T', '_').toLowerCase();
}

export function checkDatabaseName(name: string): string {
  if (!IDENT.test(name))
    throw new AttenduxError(
      'USAGE',
      `database name "${name}" must be lower-case letters, digits and _ (max 63)`,
    );
  return name;
}

/** A connection to the cluster's maintenance database, for CREATE/ALTER/DROP DATABASE. */
export async function maintenanceClient(adminUrl: string) {
  return connectClient(databaseUrl(adminUrl, 'postgres'), 'attendux-restore');
}

export interface TargetState {
  exists: boolean;
  /** It has tables in schema public. */
  notEmpty: boolean;
}

export async function targetState(adminUrl: string, name: string): Promise<TargetState> {
  const m = await maintenanceClient(adminUrl);
  try {
    const { rowCount } = await m.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (!rowCount) return { exists: false, notEmpty: false };
  } finally {
    await m.end().catch(() => undefined);
  }
  const c = await connectClient(databaseUrl(adminUrl, name), 'attendux-restore');
  try {
    const { rows } = await c.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
        WHERE s.nspname = 'public' AND c.relkind IN ('r', 'p')`,
    );
    return { exists: true, notEmpty: rows[0]!.n > 0 };
  } finally {
    await c.end().catch(() => undefined);
  }
}

export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  const m = await maintenanceClient(adminUrl);
  try {
    await ddl(m, 'DROP DATABASE IF EXISTS %I WITH (FORCE)', name);
  } finally {
    await m.end().catch(() => undefined);
  }
}

async function createDatabase(adminUrl: string, name: string, appRole: string): Promise<void> {
  const m = await maintenanceClient(adminUrl);
  try {
    await ddl(m, "CREATE DATABASE %I ENCODING 'UTF8' TEMPLATE template0", name);
    await ddl(m, 'REVOKE ALL ON DATABASE %I FROM PUBLIC', name);
    await ddl(m, 'GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', name, appRole);
  } finally {
    await m.end().catch(() => undefined);
  }
}

export async function writeRestoreAudit(
  q: Queryable,
  plan: RestorePlan,
  details: Record<string, unknown>,
  tenantId = SYSTEM_TENANT,
): Promise<void> {
  await appendAudit(q, {
    tenantId,
    actor: cliActor(),
    action: plan.mode === 'tenant' ? 'restore.tenant' : plan.mode === 'drill' ? 'restore.drill' : 'restore',
    entityType: 'backup',
    entityId: plan.steps[plan.steps.length - 1]!.id,
    details: {
      mode: plan.mode,
      backups: plan.steps.map((s) => s.id),
      at: plan.at,
      pointInTime: plan.pointInTime,
      schemaVersion: plan.schemaVersion,
      ...details,
    },
  });
}

/**
 * A failed restore has no restored database to record itself in: note it in the live database's install-wide
 * audit chain instead (best effort: the database may be what failed).
 */
export async function auditFailure(
  prep: Prepared,
  mode: RestoreMode,
  err: unknown,
  details: Record<string, unknown> = {},
): Promise<void> {
  const e = err as { code?: string; message?: string };
  if (e?.code === 'USAGE') return;
  const c = await connectClient(prep.install.db.adminUrl, 'attendux-restore').catch(() => null);
  if (!c) return;
  registerAuditKey(c, prep.install.secrets.auditKey);
  try {
    await appendAudit(c, {
      tenantId: SYSTEM_TENANT,
      actor: cliActor(),
      action: mode === 'tenant' ? 'restore.tenant' : mode === 'drill' ? 'restore.drill' : 'restore',
      entityType: 'backup',
      details: {
        mode,
        outcome: 'failure',
        error: e?.code ?? 'INTERNAL',
        message: e?.message ?? String(err),
        ...details,
      },
    });
  } catch {
    // The live database may be unmigrated or gone; the error itself still reaches the user.
  } finally {
    await c.end().catch(() => undefined);
  }
}

export interface Prepared {
  loaded: LoadedConfig;
  install: Install;
  live: string;
}

/** Open the install without requiring it to be migrated (a fresh server restores into a new database). */
export async function prepare(opts: ConfigLocation): Promise<Prepared> {
  const install = await openInstall({ ...opts, requireMigrated: false });
  return { loaded: install.loaded, install, live: databaseOf(install.db.adminUrl) };
}

function restoreFailure(err: unknown, stage: string, name: string, dropped: boolean): AttenduxError {
  if (
    isAttenduxError(err) &&
    err.code !== 'DB_ERROR' &&
    err.code !== 'INTERNAL' &&
    err.code !== 'MIGRATION_FAILED'
  )
    return err;
  return new AttenduxError(
    'RESTORE_FAILED',
    `restore into ${name} failed while ${stage}: ${(err as Error).message}`,
    {
      cause: err,
      hint: dropped
        ? `the partial database ${name} was removed; the live database was not touched`
        : 'the live database was not touched',
    },
  );
}

/**
 * Build database `name` from an opened chain: create it, migrate to the backup's schema version, load,
 * apply the changes, run the newer migrations, write the audit entry. On failure it is dropped again.
 */
export async function buildDatabase(
  prep: Prepared,
  plan: RestorePlan,
  chain: OpenedChain,
  name: string,
  opts: { onProgress?: (p: RestoreProgress) => void; audit?: Record<string, unknown> } = {},
): Promise<LoadResult> {
  const { install, loaded } = prep;
  const appRole = loaded.config.database.appRole;
  const url = databaseUrl(install.db.adminUrl, name);
  const progress = opts.onProgress ?? (() => undefined);
  let stage = 'creating the database';
  await createDatabase(install.db.adminUrl, name, appRole).catch((err: unknown) => {
    throw restoreFailure(err, stage, name, false);
  });
  try {
    stage = `creating the schema at version ${plan.schemaVersion}`;
    progress({ phase: 'schema' });
    const files = await migrationFiles();
    await runMigrations({
      adminUrl: url,
      appRole,
      direction: 'up',
      count: files.indexOf(plan.schemaVersion) + 1,
    });
    stage = 'loading the data';
    const r = await loadChain(url, chain, {
      until: plan.at,
      onProgress: (p) => {
        stage =
          p.phase === 'load'
            ? `loading table ${p.table ?? ''}`
            : p.phase === 'apply'
              ? `applying changes to ${p.table ?? ''}`
              : stage;
        progress(p);
      },
    });
    if (plan.newerMigrations.length) {
      stage = `running the newer migrations ${plan.newerMigrations.join(', ')}`;
      progress({ phase: 'migrate' });
      await runMigrations({ adminUrl: url, appRole, direction: 'up' });
    }
    stage = 'writing the audit entry';
    const c = await connectClient(url, 'attendux-restore');
    registerAuditKey(c, install.secrets.auditKey);
    try {
      await writeRestoreAudit(c, plan, { database: name, outcome: 'success', ...(opts.audit ?? {}) });
    } finally {
      await c.end().catch(() => undefined);
    }
    return r;
  } catch (err) {
    await dropDatabase(install.db.adminUrl, name).catch(() => undefined);
    throw restoreFailure(err, stage, name, true);
  }
}

/** What --dry-run prints: the plan and the target's state, with nothing decrypted or written. */
export async function previewRestore(
  opts: RestoreOptions,
  mode: RestoreMode = 'into',
): Promise<{ plan: RestorePlan; target: TargetState; database: string }> {
  const prep = await prepare(opts);
  try {
    const database = checkDatabaseName(opts.into ?? `${prep.live}_restore_${stamp()}`.slice(0, 63));
    const target = await targetState(prep.install.db.adminUrl, database);
    const plan = await planFromCatalog(prep.loaded, {
      backupId: opts.backupId,
      at: opts.at,
      mode,
      database,
      liveDatabase: prep.live,
      targetNotEmpty: target.notEmpty,
    });
    return { plan, target, database };
  } finally {
    await prep.install.close();
  }
}

/**
 * `attendux restore [--into NAME]`: the chain's state in a new database; the live database is never touched.
 * Every file is decrypted and verified before any database is created or replaced.
 */
export async function restoreInto(opts: RestoreOptions): Promise<RestoreResult> {
  const t0 = Date.now();
  const prep = await prepare(opts);
  try {
    return await restoreIntoPrepared(prep, opts, t0);
  } catch (err) {
    await auditFailure(prep, 'into', err, { database: opts.into ?? null });
    throw err;
  } finally {
    await prep.install.close();
  }
}

async function restoreIntoPrepared(prep: Prepared, opts: RestoreOptions, t0: number): Promise<RestoreResult> {
  const name = checkDatabaseName(opts.into ?? `${prep.live}_restore_${stamp()}`.slice(0, 63));
  if (name === prep.live)
    throw new AttenduxError('USAGE', `${name} is the live database of this install`, {
      hint: 'use --in-place to replace the live database, or pick another --into name',
    });
  const target = await targetState(prep.install.db.adminUrl, name);
  if (target.notEmpty && !opts.force)
    throw new AttenduxError('RESTORE_TARGET_EXISTS', `database ${name} already exists and holds tables`, {
      hint: 'pick another --into name, or pass --force to replace it',
    });
  const plan = await planFromCatalog(prep.loaded, {
    backupId: opts.backupId,
    at: opts.at,
    mode: 'into',
    database: name,
    targetNotEmpty: target.notEmpty,
  });
  const identities = await restoreIdentities(prep.loaded, opts.identityFile);
  const chain = await openChain(prep.loaded.backupDir, plan, identities, {
    tempRoot: opts.tempRoot,
    onStep: (id) => opts.onProgress?.({ phase: 'decrypt', backup: id }),
  });
  try {
    if (target.exists) await dropDatabase(prep.install.db.adminUrl, name);
    const r = await buildDatabase(prep, plan, chain, name, { onProgress: opts.onProgress });
    const url = new URL(databaseUrl(prep.install.db.adminUrl, name));
    url.password = '';
    return {
      plan,
      database: name,
      databaseUrl: url.toString(),
      rows: r.rows,
      changes: r.changes,
      changesByBackup: r.changesByBackup,
      seconds: (Date.now() - t0) / 1000,
      next: [
        `the server still uses ${prep.live}; to switch it to ${name}, point database.url and database.adminUrl at it`,
        `(e.g. attendux config set database.adminUrl ${url.toString()}) and restart the server,`,
        'or run `attendux restore --in-place` to swap it in under the live name.',
      ],
    };
  } finally {
    await chain.cleanup();
  }
}
