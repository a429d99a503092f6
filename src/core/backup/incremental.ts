import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ByteCounter } from '../archive/bytes.js';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type pg from 'pg';
import { AttenduxError } from '../../errors.js';
import { readChainState } from '../../db/queries/backup.js';
import { schemaVersion } from '../../db/migrate.js';
import { VERSION } from '../../version.js';
import { chainHead, readCatalog, type CatalogEntry } from '../archive/catalog.js';
import { CHANGES_ENTRY, changeColumnsSelect, newBackupId, type Sidecar } from '../archive/format.js';
import { fullBackupBody, trimChangeLog } from './full.js';
import { auditForBackup, backupAuditWarning } from '../audit/backup.js';
import { runDatabaseBackup, type BackupRunOptions, type BackupRunResult, type RunEnv } from './run.js';
import { APPLY_SCRIPT, applyChangesScript } from './scripts.js';
import { StagingCipher } from './staging.js';
import { writeArchive } from '../archive/writer.js';

export interface IncrementalOptions extends BackupRunOptions {
  /** Take a full backup instead when there is no usable parent (no full, broken chain, schema changed). */
  fullIfNeeded?: boolean;
}

const SNAPSHOT = /^\d+:\d+:(\d+(,\d+)*)?$/;

/** Why the chain head cannot be the parent of a new incremental, or null when it can. */
function unusableParent(
  head: CatalogEntry,
  dbId: string | null,
  version: string | null,
  trimmedBefore: string,
): string | null {
  if (head.status !== 'ok')
    return `the newest backup ${head.id} is unusable (${head.problem ?? head.status})`;
  if (!head.snapshot || !SNAPSHOT.test(head.snapshot))
    return `the newest backup ${head.id} records no snapshot`;
  if (head.databaseId !== dbId) return `the newest backup ${head.id} was taken from another database`;
  // Every change it needs has txid >= its snapshot's xmin; a later backup (since deleted, or written to
  // another backup dir) may have trimmed some of them away.
  if (BigInt(head.snapshot.split(':')[0]!) < BigInt(trimmedBefore))
    return `changes after ${head.id} were already trimmed by a newer backup that is not in this backup dir`;
  if (head.schemaVersion !== version)
    return `the schema changed since ${head.id} (${head.schemaVersion ?? 'none'} -> ${version ?? 'none'})`;
  return null;
}

/** The chain head and why it cannot be the parent of a new incremental (null when it can). */
async function findParent(env: RunEnv): Promise<{
  head: CatalogEntry | undefined;
  why: string | null;
  dbId: string | null;
  version: string | null;
}> {
  const catalog = await readCatalog(env.backupDir);
  const head = chainHead(catalog);
  // One statement for backup_meta and the capture check; the schema version was read when the install
  // was opened (checking that no migration is pending), so it is not asked again.
  const { dbId, trimmedBefore, attached } = await readChainState(env.lockClient);
  const version =
    env.install.schemaVersion !== undefined ? env.install.schemaVersion : await schemaVersion(env.lockClient);
  let why: string | null = null;
  if (!head) why = 'there is no full backup yet';
  else if (attached.length) why = `change capture was missing on ${attached.join(', ')}`;
  else why = unusableParent(head, dbId, version, trimmedBefore);
  return { head, why, dbId, version };
}

/** Change counts per table, their total and the first and last change_log ids. */
function summarizeChanges(counts: { table_name: string; n: number; first: number; last: number }[]) {
  const byTable: Record<string, number> = {};
  let count = 0;
  let first: number | null = null;
  let last: number | null = null;
  for (const r of counts.sort((a, b) => a.table_name.localeCompare(b.table_name))) {
    byTable[r.table_name] = r.n;
    count += r.n;
    first = first === null ? r.first : Math.min(first, r.first);
    last = last === null ? r.last : Math.max(last, r.last);
  }
  return { count, byTable, first, last };
}

/** Copy the selected changes, gzip'd and encrypted, into `file`. */
async function copyChanges(
  c: pg.ClientBase,
  where: string,
  file: string,
  cipher: StagingCipher,
  opts: IncrementalOptions,
): Promise<void> {
  const { to: copyTo } = await import('pg-copy-streams');
  // `at` is the transaction's commit time (migration 0005's marker) where one was recorded, else the time
  // of the change (rows captured before that migration): --at keeps whole transactions by it.
  const source = c.query(
    copyTo(
      `COPY (SELECT ${changeColumnsSelect({ at: 'coalesce(cc.committed_at, l.at)' })}
               FROM change_log l LEFT JOIN change_commits cc ON cc.txid = l.txid
              WHERE ${where.replace(/\btxid\b/g, 'l.txid')} ORDER BY l.id) TO STDOUT`,
    ),
  );
  await pipeline(
    source,
    createGzip({ level: 1 }),
    new ByteCounter((bytes) => opts.onProgress?.({ phase: 'copy', table: 'change_log', bytes })),
    cipher.encryptTo(file),
    createWriteStream(file, { mode: 0o600 }),
  );
}

/**
 * Open the incremental's repeatable-read transaction: its snapshot, the server version and createdAt.
 */
async function openChangeSnapshot(
  c: pg.ClientBase,
  parentSnapshot: string | null,
): Promise<{ snapshot: string; version: string; at: Date }> {
  await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  // The parent snapshot travels as a transaction-local setting: COPY cannot take bind parameters.
  await c.query("SELECT set_config('attendux.parent_snapshot', $1, true)", [parentSnapshot]);
  // createdAt is the snapshot's time (read just after it, rounded up to the millisecond): every change in
  // this backup committed before it, every later one is in the next incremental.
  const { rows } = await c.query<{ snapshot: string; version: string; at: Date }>(
    `SELECT pg_current_snapshot()::text AS snapshot, current_setting('server_version') AS version,
            date_trunc('milliseconds', clock_timestamp()) + interval '1 millisecond' AS at`,
  );
  return rows[0]!;
}

async function incrementalBody(
  env: RunEnv,
  opts: IncrementalOptions,
  stage: (s: string) => void,
): Promise<{ sidecar: Sidecar; note?: string }> {
  stage('finding the parent backup');
  const { head, why, dbId, version } = await findParent(env);
  if (why) {
    if (!opts.fullIfNeeded) {
      throw new AttenduxError(
        head ? 'BACKUP_CHAIN_BROKEN' : 'BACKUP_NO_FULL',
        `cannot take an incremental backup: ${why}`,
        {
          hint: 'run `attendux backup full` (or pass --full-if-needed)',
        },
      );
    }
    const full = await fullBackupBody(env, opts, stage);
    return { sidecar: full.sidecar, note: `took a full backup instead: ${why}` };
  }
  const parent = head!;
  const startedAt = new Date();
  const id = newBackupId('incremental', startedAt);
  const staging = join(env.backupDir, `.staging-${id}`);
  await mkdir(staging, { mode: 0o700 });
  // Before the snapshot: it then holds every entry the backup's audit checkpoints name.
  stage('verifying the audit log');
  const audit = await auditForBackup(env.install);
  // The snapshot runs on the lock's connection (the advisory lock is held by the session, not a
  // transaction): one connection fewer to open, which is a visible part of a small incremental.
  const c = env.lockClient;
  try {
    stage('opening the snapshot');
    const snap = await openChangeSnapshot(c, parent.snapshot);
    // Changes of transactions not visible in the parent's snapshot; this transaction's own snapshot (MVCC)
    // hides those that commit later: they go to the next incremental. txid >= xmin(parent) uses the index.
    const where = `txid >= pg_snapshot_xmin(current_setting('attendux.parent_snapshot')::pg_snapshot)
                   AND NOT pg_visible_in_snapshot(txid, current_setting('attendux.parent_snapshot')::pg_snapshot)`;
    const { rows: counts } = await c.query<{ table_name: string; n: number; first: number; last: number }>(
      `SELECT table_name, count(*)::int AS n, min(id) AS first, max(id) AS last FROM change_log WHERE ${where} GROUP BY table_name`,
    );
    const { count, byTable, first, last } = summarizeChanges(counts);
    stage('copying the changes');
    const file = join(staging, 'changes.gz');
    const cipher = new StagingCipher();
    await copyChanges(c, where, file, cipher, opts);
    await c.query('COMMIT');
    const snapshot = snap.snapshot;
    stage('writing the archive');
    const sidecar = await writeArchive({
      backupDir: env.backupDir,
      id,
      recipients: env.recipients,
      entries: [
        { name: APPLY_SCRIPT, content: Buffer.from(applyChangesScript(id, parent.id)) },
        { name: CHANGES_ENTRY, files: [file], open: (f) => cipher.read(f) },
      ],
      startedAt,
      rows: () => count,
      onBytes: (n) => opts.onProgress?.({ phase: 'archive', bytes: n }),
      manifest: () => ({
        id,
        kind: 'incremental',
        parent: parent.id,
        chainRoot: parent.chainRoot ?? parent.chain[0] ?? null,
        createdAt: snap.at.toISOString(),
        attenduxVersion: VERSION,
        schemaVersion: version,
        postgresVersion: snap.version,
        snapshot,
        parentSnapshot: parent.snapshot,
        databaseId: dbId,
        tables: [],
        changes: { count, byTable, firstId: first, lastId: last },
        contentHash: null,
        audit,
      }),
    });
    // trimming the change log is housekeeping: the next backup trims it
    await trimChangeLog(env.lockClient, snapshot).catch(() => undefined);
    return { sidecar, note: backupAuditWarning(audit) };
  } finally {
    // On failure the lock's connection may be left inside the snapshot: run.ts ends it, which rolls back.
    await rm(staging, { recursive: true, force: true });
  }
}

export async function backupIncremental(opts: IncrementalOptions = {}): Promise<BackupRunResult> {
  return runDatabaseBackup('incremental', opts, (env, stage) => incrementalBody(env, opts, stage));
}
