import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { connectClient } from '../../db/pool.js';
import { schemaVersion } from '../../db/migrate.js';
import { VERSION } from '../../version.js';
import { newBackupId, type ManifestTable, type Sidecar } from '../archive/format.js';
import { runDatabaseBackup, type BackupRunOptions, type BackupRunResult, type RunEnv } from './run.js';
import { RESTORE_SCRIPT, SCHEMA_SCRIPT, restoreScript, schemaScript } from './scripts.js';
import { StagingCipher } from './staging.js';
import { EntryQueue, writeArchive } from '../archive/writer.js';
import { auditForBackup, backupAuditWarning } from '../audit/backup.js';
import {
  copyWorkItems,
  lockTables,
  openHelpers,
  openLockedSnapshot,
  planWorkItems,
  type TableInfo,
  type WorkItem,
} from './full-copy.js';

/** Connections copying in parallel, sharing one exported snapshot: one per core of the reference machine. */
const COPY_CONNECTIONS = 2;

/** Referenced tables first, so that a restore can load the files in manifest order. */
export function foreignKeyOrder<T extends { name: string; refs: string[] }>(tables: T[]): T[] {
  const byName = new Map(tables.map((t) => [t.name, t]));
  const done = new Set<string>();
  const out: T[] = [];
  const visit = (t: T, path: Set<string>) => {
    if (done.has(t.name) || path.has(t.name)) return;
    path.add(t.name);
    for (const r of [...t.refs].sort()) {
      const dep = byName.get(r);
      if (dep) visit(dep, path);
    }
    done.add(t.name);
    out.push(t);
  };
  for (const t of [...tables].sort((a, b) => a.name.localeCompare(b.name))) visit(t, new Set());
  return out;
}

export async function listTables(c: pg.ClientBase): Promise<TableInfo[]> {
  const { rows } = await c.query<TableInfo>(
    `SELECT t AS name,
            (pg_relation_size(format('%I', t)::regclass) / current_setting('block_size')::int)::int AS blocks,
            coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                        FROM pg_index i
                        CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                       WHERE i.indrelid = format('%I', t)::regclass AND i.indisprimary), '{}') AS pk,
            ARRAY(SELECT DISTINCT cf.relname::text FROM pg_constraint c JOIN pg_class cf ON cf.oid = c.confrelid
                   WHERE c.conrelid = format('%I', t)::regclass AND c.contype = 'f'
                     AND c.confrelid <> c.conrelid) AS refs
       FROM attendux_backup_tables() t`,
  );
  return foreignKeyOrder(rows);
}

interface Staged {
  /** When the snapshot was taken (the backup's createdAt: the state it holds is the state of this time). */
  createdAt: string;
  snapshot: string;
  postgresVersion: string;
  databaseId: string | null;
  schemaVersion: string | null;
  tables: ManifestTable[];
  rows: number;
}
/**
 * Copy every application table at one snapshot into gzip files under `staging`, on two connections that
 * share the snapshot, and hand each finished file to `ready` so that archiving overlaps copying.
 */
async function stageTables(
  env: RunEnv,
  staging: string,
  opts: BackupRunOptions,
  stage: (s: string) => void,
  ready: EntryQueue,
  aborted: () => boolean,
  cipher: StagingCipher,
  id: string,
): Promise<Staged> {
  const adminUrl = env.install.db.adminUrl;
  // New tables (from a migration that forgot to attach capture) get the trigger before the snapshot, so
  // that every change after this full is captured.
  stage('preparing change capture');
  await env.lockClient.query('SELECT attendux_capture_all()');
  const main = await connectClient(adminUrl, 'attendux-backup');
  const helpers: pg.Client[] = [];
  try {
    stage('opening the snapshot');
    const s = await openLockedSnapshot(main);
    const version = await schemaVersion(main);
    const tables = await listTables(main);
    // A table created between the lock and the snapshot: lock it too before its rows are read.
    const unlocked = tables.filter((t) => !s.locked.includes(t.name)).map((t) => t.name);
    if (unlocked.length) await lockTables(main, unlocked);
    const { items, entriesOf } = planWorkItems(tables, staging);
    await pushRestoreScripts(ready, id, version, tables, entriesOf);
    const names = tables.map((t) => t.name);
    await openHelpers(adminUrl, s.exported, names, COPY_CONNECTIONS - 1, helpers);
    await copyWorkItems([main, ...helpers], items, opts, stage, ready, aborted, cipher);
    for (const h of helpers) await h.query('COMMIT');
    await main.query('COMMIT');
    const { out, total } = manifestTables(tables, items, entriesOf);
    return {
      createdAt: s.at,
      snapshot: s.snapshot,
      postgresVersion: s.version,
      databaseId: s.dbid,
      schemaVersion: version,
      tables: out,
      rows: total,
    };
  } finally {
    // closing the clients: the dump's outcome is decided
    for (const h of helpers) await h.end().catch(() => undefined);
    await main.end().catch(() => undefined);
  }
}

/** What a person needs to restore this backup without attendux (README "Restoring by hand"). */
async function pushRestoreScripts(
  ready: EntryQueue,
  id: string,
  version: string | null,
  tables: TableInfo[],
  entriesOf: Map<string, string[]>,
): Promise<void> {
  if (version) ready.push({ name: SCHEMA_SCRIPT, content: Buffer.from(await schemaScript(version)) });
  ready.push({
    name: RESTORE_SCRIPT,
    content: Buffer.from(
      restoreScript(
        id,
        tables.map((t) => ({ name: t.name, entries: entriesOf.get(t.name)!, copyFormat: 'binary' as const })),
      ),
    ),
  });
}

/** The manifest's table list, each with the rows of all its parts, and the total row count. */
function manifestTables(
  tables: TableInfo[],
  items: WorkItem[],
  entriesOf: Map<string, string[]>,
): { out: ManifestTable[]; total: number } {
  const out: ManifestTable[] = [];
  let total = 0;
  for (const t of tables) {
    const rows = items.filter((i) => i.table === t.name).reduce((n, p) => n + p.rows, 0);
    total += rows;
    out.push({ name: t.name, rows, entries: entriesOf.get(t.name)!, primaryKey: t.pk, copyFormat: 'binary' });
  }
  return { out, total };
}

/** The body of a full backup, run inside runDatabaseBackup (lock, audit, last-run record around it). */
export async function fullBackupBody(
  env: RunEnv,
  opts: BackupRunOptions,
  stage: (s: string) => void,
): Promise<{ sidecar: Sidecar; note?: string }> {
  const startedAt = new Date();
  const id = newBackupId('full', startedAt);
  const staging = join(env.backupDir, `.staging-${id}`);
  await mkdir(staging, { mode: 0o700 });
  // Before the snapshot: it then holds every entry the backup's audit checkpoints name.
  stage('verifying the audit log');
  const audit = await auditForBackup(env.install);
  const ready = new EntryQueue();
  let abort = false;
  let st: Staged | undefined;
  try {
    const copying = stageTables(env, staging, opts, stage, ready, () => abort, new StagingCipher(), id).then(
      (r) => {
        st = r;
        stage('writing the archive');
        ready.close();
      },
      (err: unknown) => {
        ready.close(err);
        throw err;
      },
    );
    const writing = writeArchive({
      backupDir: env.backupDir,
      id,
      recipients: env.recipients,
      entries: ready,
      startedAt,
      rows: () => st!.rows,
      onBytes: (n) => opts.onProgress?.({ phase: 'archive', bytes: n }),
      manifest: () => ({
        id,
        kind: 'full',
        parent: null,
        chainRoot: id,
        createdAt: st!.createdAt,
        attenduxVersion: VERSION,
        schemaVersion: st!.schemaVersion,
        postgresVersion: st!.postgresVersion,
        snapshot: st!.snapshot,
        parentSnapshot: null,
        databaseId: st!.databaseId,
        tables: st!.tables,
        changes: null,
        contentHash: null,
        audit,
      }),
    }).catch((err: unknown) => {
      // Disk full or similar: stop taking new tables; the copy in flight finishes, then we report.
      abort = true;
      throw err;
    });
    const [c, w] = await Promise.allSettled([copying, writing]);
    if (c.status === 'rejected') throw c.reason;
    if (w.status === 'rejected') throw w.reason;
    const sidecar = w.value;
    stage('trimming the change log');
    // Best effort: the backup is complete and recorded; a failed trim only leaves rows for the next run.
    await trimChangeLog(env.lockClient, st!.snapshot).catch(() => undefined);
    return { sidecar, note: backupAuditWarning(audit) };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/**
 * Changes whose transaction finished before the newest backup's snapshot can never be selected again by a
 * later incremental (they are visible in every future parent snapshot): drop them so change_log stays small.
 */
export async function trimChangeLog(c: pg.ClientBase, snapshot: string): Promise<void> {
  await c.query('BEGIN');
  try {
    await c.query(
      'UPDATE backup_meta SET trimmed_before = greatest(trimmed_before, pg_snapshot_xmin($1::pg_snapshot))',
      [snapshot],
    );
    await c.query('DELETE FROM change_log WHERE txid < pg_snapshot_xmin($1::pg_snapshot)', [snapshot]);
    await c.query('DELETE FROM change_commits WHERE txid < pg_snapshot_xmin($1::pg_snapshot)', [snapshot]);
    await c.query('COMMIT');
  } catch (err) {
    // ROLLBACK of a failed transaction: its error is rethrown
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

export async function backupFull(opts: BackupRunOptions = {}): Promise<BackupRunResult> {
  return runDatabaseBackup('full', opts, (env, stage) => fullBackupBody(env, opts, stage));
}
