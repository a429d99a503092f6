/**
 * The restore toolkit every restore mode builds on (--into, --in-place, --tenant, --drill): preparing the
 * install, naming and creating databases, building one from an opened chain, and the audit entries.
 * `execute.ts` is the --into command itself.
 */
import { AttenduxError, isAttenduxError } from '../../errors.js';
import { actorOf, type Acting } from '../actor.js';
import { loadConfig, loadSecrets, type ConfigLocation, type LoadedConfig } from '../config/load.js';
import { openInstall, type Install } from '../install.js';
import { resolveDatabase } from '../../db/connect.js';
import { warnSwallowed } from '../../lib/log.js';
import { registerAuditKey } from '../audit/mac.js';
import { connectClient, ddl, type Queryable } from '../../db/pool.js';
import { migrationFiles, runMigrations } from '../../db/migrate.js';
import { appendAudit, SYSTEM_TENANT } from '../../db/queries/audit.js';
import { reapplyLedger } from '../ledger/index.js';
import type { OpenedChain } from './chain.js';
import {
  buildingComment,
  faultPoint,
  readJournal,
  recoverJournal,
  sweepHalfBuilt,
  type RecoveryReport,
} from './journal.js';
import { databaseOf, databaseUrl, loadChain, type LoadProgress, type LoadResult } from './load.js';
import type { RestoreMode, RestorePlan } from './plan.js';

export interface RestoreProgress extends LoadProgress {
  backup?: string;
}

export interface RestoreOptions extends ConfigLocation, Acting {
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
    await m.end().catch(() => undefined); // closing the maintenance client after the read
  }
  const c = await connectClient(databaseUrl(adminUrl, name), 'attendux-restore');
  try {
    const { rows } = await c.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
        WHERE s.nspname = 'public' AND c.relkind IN ('r', 'p')`,
    );
    return { exists: true, notEmpty: rows[0]!.n > 0 };
  } finally {
    await c.end().catch(() => undefined); // closing the client after the read
  }
}

export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  const m = await maintenanceClient(adminUrl);
  try {
    await ddl(m, 'DROP DATABASE IF EXISTS %I WITH (FORCE)', name);
  } finally {
    await m.end().catch(() => undefined); // closing the maintenance client: the outcome is decided
  }
}

async function createDatabase(adminUrl: string, name: string, appRole: string): Promise<void> {
  const m = await maintenanceClient(adminUrl);
  try {
    await ddl(m, "CREATE DATABASE %I ENCODING 'UTF8' TEMPLATE template0", name);
    // Marks it as half-built until the restore finished: a killed run's leftover is dropped by the next.
    await ddl(m, 'COMMENT ON DATABASE %I IS %L', name, buildingComment());
    await ddl(m, 'REVOKE ALL ON DATABASE %I FROM PUBLIC', name);
    await ddl(m, 'GRANT CONNECT ON DATABASE %I TO %I', name, appRole);
  } finally {
    await m.end().catch(() => undefined); // closing the maintenance client: the outcome is decided
  }
}

export async function writeRestoreAudit(
  q: Queryable,
  actor: string,
  plan: RestorePlan,
  details: Record<string, unknown>,
  tenantId = SYSTEM_TENANT,
): Promise<void> {
  await appendAudit(q, {
    tenantId,
    actor,
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
  const unaudited = (why: unknown) =>
    warnSwallowed(`the failed ${mode} restore is not in the audit log`, why);
  const c = await connectClient(prep.install.db.adminUrl, 'attendux-restore').catch((why: unknown) => {
    unaudited(why);
    return null;
  });
  if (!c) return;
  registerAuditKey(c, prep.install.secrets.auditKey);
  try {
    await appendAudit(c, {
      tenantId: SYSTEM_TENANT,
      actor: prep.actor,
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
  } catch (why) {
    // The live database may be unmigrated or gone; the error itself still reaches the user, and this says
    // that it is not on the record.
    unaudited(why);
  } finally {
    await c.end().catch(() => undefined); // closing the client: the outcome is decided
  }
}

export interface Prepared {
  loaded: LoadedConfig;
  install: Install;
  live: string;
  /** What was found and finished of an earlier in-place restore that was killed. */
  recovered: RecoveryReport | null;
  /** Half-built databases of killed restores that were dropped. */
  sweptDatabases: string[];
  /** Who the audit entries of this restore name. */
  actor: string;
}

/** Clear the building marker: the database is a finished restore from now on. */
export async function clearBuildingMarker(adminUrl: string, name: string): Promise<void> {
  const m = await maintenanceClient(adminUrl);
  try {
    await ddl(m, 'COMMENT ON DATABASE %I IS NULL', name);
  } finally {
    await m.end().catch(() => undefined); // closing the maintenance client: the outcome is decided
  }
}

/**
 * Open the install without requiring it to be migrated (a fresh server restores into a new database). An
 * in-place restore that was killed is finished first, before anything connects to the live database (which
 * may still be at CONNECTION LIMIT 0), and half-built databases of killed restores are dropped.
 */
export async function prepare(opts: ConfigLocation & Acting): Promise<Prepared> {
  const loaded = await loadConfig(opts);
  let recovered: RecoveryReport | null = null;
  if (await readJournal(loaded.config.dataDir)) {
    const target = await resolveDatabase(loaded, await loadSecrets(loaded.secretsPath));
    try {
      recovered = await recoverJournal(loaded.config.dataDir, target.adminUrl);
    } finally {
      await target.release();
    }
  }
  const install = await openInstall({ ...opts, requireMigrated: false });
  const live = databaseOf(install.db.adminUrl);
  let sweptDatabases: string[] = [];
  try {
    sweptDatabases = await sweepHalfBuilt(install.db.adminUrl, live);
  } catch (err) {
    await install.close();
    throw err;
  }
  const actor = actorOf(opts);
  if (recovered) await auditRecovery(install, recovered, actor);
  return { loaded: install.loaded, install, live, recovered, sweptDatabases, actor };
}

async function auditRecovery(install: Install, r: RecoveryReport, actor: string): Promise<void> {
  await appendAudit(install.admin, {
    tenantId: SYSTEM_TENANT,
    actor,
    action: 'restore',
    entityType: 'database',
    entityId: r.journal.live,
    details: {
      mode: 'in-place',
      outcome: 'recovered',
      recovery: r.action,
      killedPid: r.journal.pid,
      steps: r.steps,
    },
  }).catch((err: unknown) => warnSwallowed('the recovery is not in the audit log', err));
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
  opts: {
    onProgress?: (p: RestoreProgress) => void;
    audit?: Record<string, unknown>;
    /** Leave the building marker on (in-place clears it just before the swap, a drill drops the database). */
    keepMarker?: boolean;
  } = {},
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
    faultPoint('restore:loaded');
    if (plan.newerMigrations.length) {
      stage = `running the newer migrations ${plan.newerMigrations.join(', ')}`;
      progress({ phase: 'migrate' });
      await runMigrations({ adminUrl: url, appRole, direction: 'up' });
    }
    stage = 're-applying the security ledger';
    await reapplyLedger({
      targetUrl: url,
      liveAdminUrl: install.db.adminUrl,
      dataDir: loaded.config.dataDir,
      pointInTime: plan.pointInTime,
    });
    stage = 'writing the audit entry';
    const c = await connectClient(url, 'attendux-restore');
    registerAuditKey(c, install.secrets.auditKey);
    try {
      await writeRestoreAudit(c, prep.actor, plan, {
        database: name,
        outcome: 'success',
        ...(opts.audit ?? {}),
      });
    } finally {
      await c.end().catch(() => undefined); // closing the client: the outcome is decided
    }
    if (!opts.keepMarker) await clearBuildingMarker(install.db.adminUrl, name);
    return r;
  } catch (err) {
    // a half-built database keeps its building marker: the next restore sweeps it
    await dropDatabase(install.db.adminUrl, name).catch(() => undefined);
    throw restoreFailure(err, stage, name, true);
  }
}
