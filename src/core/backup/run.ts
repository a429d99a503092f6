import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { AttenduxError, isAttenduxError } from '../../errors.js';
import { actorOf, type Acting } from '../actor.js';
import { loadConfig, type ConfigLocation, type LoadedConfig } from '../config/load.js';
import { writeFileAtomic } from '../../lib/fs.js';
import { openInstall, withInstall, type Install } from '../install.js';
import { connectClient } from '../../db/pool.js';
import { appendAudit, SYSTEM_TENANT } from '../../db/queries/audit.js';
import type { BackupKind, Sidecar } from '../archive/format.js';
import { acquireAdvisoryLock, acquireFileLock } from './lock.js';
import { cleanupLeftovers } from '../archive/writer.js';
import { signBackup } from './signature.js';
import { copyAfterBackup, type CopyOutcome, type OffsiteProgress } from '../offsite/copy.js';
import { isConnectionLost } from '../../lib/pg-errors.js';
import { warnSwallowed } from '../../lib/log.js';

/** Progress of a running backup, for a terminal progress line. */
export interface BackupProgress {
  phase: 'copy' | 'archive' | 'config';
  table?: string;
  /** Compressed bytes staged so far (copy) or encrypted bytes written (archive). */
  bytes: number;
  rows?: number;
}

export interface BackupRunOptions extends ConfigLocation, Acting {
  onProgress?: (p: BackupProgress) => void;
  onOffsiteProgress?: (p: OffsiteProgress) => void;
  /** Test hook: called with each table's COPY stream once it is running. */
  onCopyStarted?: (table: string, backendPid: number) => void | Promise<void>;
}

export interface BackupRunResult {
  sidecar: Sidecar;
  /** Leftovers of earlier killed or failed runs that were removed first. */
  cleanedUp: string[];
  /** Set when the incremental turned into a full (--full-if-needed). */
  note?: string;
  /** Copies to backup.targets (src/core/offsite); a failed copy never fails the backup. */
  offsite?: CopyOutcome[];
}

export interface RunEnv {
  loaded: LoadedConfig;
  install: Install;
  backupDir: string;
  recipients: string[];
  /** The connection holding the advisory lock; also used for short writes outside the snapshot. */
  lockClient: pg.Client;
}

/** What `backup status` reads: the last attempt of each kind, failed or not. */
export interface LastRun {
  kind: BackupKind;
  id: string | null;
  startedAt: string;
  finishedAt: string;
  outcome: 'success' | 'failure';
  error?: { code: string; message: string };
}

export const lastRunFile = (backupDir: string, kind: BackupKind) => join(backupDir, `last-run-${kind}.json`);

export async function readLastRun(backupDir: string, kind: BackupKind): Promise<LastRun | null> {
  try {
    return JSON.parse(await readFile(lastRunFile(backupDir, kind), 'utf8')) as LastRun;
  } catch {
    // no run recorded yet (or a torn file): no last run
    return null;
  }
}

export function requireRecipients(loaded: LoadedConfig): string[] {
  const r = loaded.config.backup.recipients;
  if (!r.length) {
    throw new AttenduxError(
      'BACKUP_NO_RECIPIENTS',
      'no backup recipients configured (backup.recipients is empty)',
      {
        hint: 'add an age public key: `attendux backup add-recipient age1...` (keep its identity off this server)',
      },
    );
  }
  return r;
}

/** Create the backup dir (0700) if needed and prove it is writable by creating a file in it. */
export async function ensureBackupDir(dir: string): Promise<void> {
  const probe = join(dir, `.write-test-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const fh = await open(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    await fh.close();
    await unlink(probe);
  } catch (err) {
    throw new AttenduxError(
      'BACKUP_DIR_UNWRITABLE',
      `backup directory ${dir} is not writable: ${(err as Error).message}`,
      {
        cause: err,
        hint: 'fix its permissions or set backup.dir to a writable directory',
      },
    );
  }
}

/** Turn what went wrong into one clear line: database lost, disk full, or the error as it is. */
export function backupFailure(err: unknown, kind: BackupKind, stage: string): AttenduxError {
  if (isAttenduxError(err) && err.code !== 'DB_ERROR' && err.code !== 'IO_ERROR' && err.code !== 'INTERNAL')
    return err;
  const e = err as { code?: string; message?: string };
  const msg = e?.message ?? String(err);
  if (e?.code === 'ENOSPC')
    return new AttenduxError('BACKUP_FAILED', `${kind} backup failed: disk full while ${stage}`, {
      cause: err,
      hint: 'free space in the backup directory (or run `attendux backup prune`) and run it again',
    });
  if (isConnectionLost(err))
    return new AttenduxError(
      'BACKUP_FAILED',
      `${kind} backup failed: the database connection was lost while ${stage}`,
      {
        cause: err,
        hint: 'check that PostgreSQL is running and run the backup again; nothing was recorded as a backup',
      },
    );
  return new AttenduxError('BACKUP_FAILED', `${kind} backup failed while ${stage}: ${msg}`, {
    cause: err,
    hint: 'run it again with --debug for details; nothing was recorded as a backup',
  });
}

async function recordRun(backupDir: string, run: LastRun): Promise<void> {
  await writeFileAtomic(lastRunFile(backupDir, run.kind), JSON.stringify(run, null, 2) + '\n', 0o600).catch(
    () => undefined,
  );
}

/** A failed run on the record: the last-run file and an audit entry (when the database can be reached). */
async function recordFailure(
  kind: 'full' | 'incremental',
  opts: BackupRunOptions,
  backupDir: string,
  startedAt: Date,
  e: AttenduxError,
  install: Install | undefined,
): Promise<void> {
  await recordRun(backupDir, {
    kind,
    id: null,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    outcome: 'failure',
    error: { code: e.code, message: e.message },
  });
  const entry = {
    tenantId: SYSTEM_TENANT,
    actor: actorOf(opts),
    action: `backup.${kind}`,
    entityType: 'backup',
    details: { kind, outcome: 'failure', error: e.code, message: e.message },
  };
  // The backup's own failure is thrown by the caller; an audit entry that cannot be written is said, not dropped.
  const unaudited = (err: unknown) => warnSwallowed(`the failed ${kind} backup is not in the audit log`, err);
  if (install) await appendAudit(install.admin, entry).catch(unaudited);
  else if (e.code !== 'DB_UNAVAILABLE') {
    // Failed before the database was opened (no recipients, unwritable dir): still on the record if
    // the database is reachable.
    await withInstall({ ...opts, requireMigrated: false }, (i) => appendAudit(i.admin, entry)).catch(
      unaudited,
    );
  }
}

/**
 * Everything around one database backup run: config, recipients, backup dir, the lock file, the database,
 * the advisory lock, leftovers of earlier runs, then `fn`; afterwards the audit entry and the last-run
 * record, success or failure.
 */
export async function runDatabaseBackup(
  kind: 'full' | 'incremental',
  opts: BackupRunOptions,
  fn: (
    env: RunEnv,
    stage: (s: string) => void,
  ) => Promise<{ sidecar: Sidecar; note?: string; auditKind?: BackupKind }>,
): Promise<BackupRunResult> {
  const startedAt = new Date();
  const loaded = await loadConfig(opts);
  const backupDir = loaded.backupDir;
  let stage = 'starting';
  let install: Install | undefined;
  let lockClient: pg.Client | undefined;
  let release: (() => Promise<void>) | undefined;
  try {
    const recipients = requireRecipients(loaded);
    // Loading typage takes a noticeable part of a small incremental's time: overlap it with the database work.
    void import('age-encryption').catch(() => undefined);
    await ensureBackupDir(backupDir);
    const lock = await acquireFileLock(loaded.config.dataDir, `backup ${kind}`);
    release = () => lock.release();
    install = await openInstall({ ...opts, loaded });
    lockClient = await connectClient(install.db.adminUrl, 'attendux-backup-lock');
    await acquireAdvisoryLock(lockClient);
    const cleanedUp = await cleanupLeftovers(backupDir);
    const env: RunEnv = { loaded, install, backupDir, recipients, lockClient };
    const out = await fn(env, (s) => (stage = s));
    stage = 'signing the backup';
    await signBackup(backupDir, out.sidecar.id, install.secrets.signingKey);
    stage = 'recording the result';
    await appendAudit(install.admin, {
      tenantId: SYSTEM_TENANT,
      actor: actorOf(opts),
      action: `backup.${out.sidecar.kind}`,
      entityType: 'backup',
      entityId: out.sidecar.id,
      details: {
        kind: out.sidecar.kind,
        outcome: 'success',
        bytes: out.sidecar.bytes,
        parent: out.sidecar.parent,
      },
    }).catch((err: unknown) =>
      warnSwallowed(`the ${out.sidecar.kind} backup ${out.sidecar.id} is not in the audit log`, err),
    );
    await recordRun(backupDir, {
      kind: out.sidecar.kind,
      id: out.sidecar.id,
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      outcome: 'success',
    });
    // After the local backup is on the record: a run killed while uploading still counts locally.
    const offsite = await copyAfterBackup(loaded, out.sidecar, {
      db: install.admin,
      onProgress: opts.onOffsiteProgress,
      actor: actorOf(opts),
    });
    return { sidecar: out.sidecar, cleanedUp, note: out.note, ...(offsite.length ? { offsite } : {}) };
  } catch (err) {
    const e = backupFailure(err, kind, stage);
    if (e.code !== 'BACKUP_LOCKED') await recordFailure(kind, opts, backupDir, startedAt, e, install);
    throw e;
  } finally {
    // closing the lock client: the outcome is decided, the lock ends with the session
    await lockClient?.end().catch(() => undefined);
    await install?.close();
    await release?.();
  }
}
