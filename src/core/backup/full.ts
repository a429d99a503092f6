import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ByteCounter } from '../archive/bytes.js';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type pg from 'pg';
import { connectClient } from '../../db/pool.js';
import { schemaVersion } from '../../db/migrate.js';
import { VERSION } from '../../version.js';
import { newBackupId, type ManifestTable, type Sidecar } from '../archive/format.js';
import {
  backupFailure,
  runDatabaseBackup,
  type BackupRunOptions,
  type BackupRunResult,
  type RunEnv,
} from './run.js';
import { faultPoint } from '../fault.js';
import { RESTORE_SCRIPT, SCHEMA_SCRIPT, restoreScript, schemaScript } from './scripts.js';
import { StagingCipher } from './staging.js';
import { EntryQueue, writeArchive } from '../archive/writer.js';
import { auditForBackup, backupAuditWarning } from '../audit/service.js';

/** Tables bigger than this many 8 KiB blocks are copied as several ctid ranges, spread over the connections. */
const SPLIT_BLOCKS = 4096;
const MAX_PARTS = 8;
/** Connections copying in parallel, sharing one exported snapshot: one per core of the reference machine. */
const COPY_CONNECTIONS = 2;

interface TableInfo {
  name: string;
  blocks: number;
  pk: string[];
  refs: string[];
}

interface WorkItem {
  table: string;
  part: number;
  /** Tar entry name: data/<table>.copy.gz, or data/<table>.<part>.copy.gz for a table copied in parts. */
  entry: string;
  /** ctid block range [from, to); to null = to the end. Both null = the whole table. */
  from: number | null;
  to: number | null;
  weight: number;
  file: string;
  rows: number;
}

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

async function copyItem(
  c: pg.ClientBase,
  item: WorkItem,
  cipher: StagingCipher,
  onBytes: (delta: number) => void,
): Promise<void> {
  const { to: copyTo } = await import('pg-copy-streams');
  const { rows } = await c.query<{ sql: string }>(
    item.from === null && item.to === null
      ? `SELECT format('COPY %I TO STDOUT', $1::text) AS sql`
      : item.to === null
        ? `SELECT format('COPY (SELECT * FROM %I WHERE ctid >= %L::tid) TO STDOUT', $1::text, $2::text) AS sql`
        : `SELECT format('COPY (SELECT * FROM %I WHERE ctid >= %L::tid AND ctid < %L::tid) TO STDOUT',
                         $1::text, $2::text, $3::text) AS sql`,
    item.from === null && item.to === null
      ? [item.table]
      : item.to === null
        ? [item.table, `(${item.from},0)`]
        : [item.table, `(${item.from},0)`, `(${item.to},0)`],
  );
  const source = c.query(copyTo(rows[0]!.sql));
  const count = new ByteCounter(onBytes, true);
  // zlib runs in libuv's thread pool, so two tables compress on the two cores while the main thread moves bytes.
  await pipeline(
    source,
    createGzip({ level: 1, memLevel: 9, chunkSize: 256 * 1024 }),
    count,
    cipher.encryptTo(item.file),
    createWriteStream(item.file, { mode: 0o600 }),
  );
  item.rows = source.rowCount ?? 0;
}

async function lockTables(c: pg.ClientBase, names: string[], nowait = false): Promise<void> {
  if (!names.length) return;
  const { rows } = await c.query<{ sql: string }>(
    `SELECT 'LOCK TABLE ' || string_agg(format('%I', t), ', ') || ' IN ACCESS SHARE MODE' || $2 AS sql
       FROM unnest($1::text[]) t`,
    [names, nowait ? ' NOWAIT' : ''],
  );
  await c.query(rows[0]!.sql);
}

/**
 * Open the backup's repeatable-read transaction with an ACCESS SHARE lock on every application table taken
 * BEFORE its snapshot (LOCK TABLE takes none, so the snapshot is that of the next statement), as pg_dump
 * does: a TRUNCATE or an ALTER TABLE that rewrites a table (neither is MVCC-safe: a running snapshot would see
 * the table empty or in its new shape) then waits for the backup instead of emptying or reshaping the table
 * in it. A table dropped between listing and locking is retried.
 */
async function openLockedSnapshot(main: pg.ClientBase): Promise<{
  snapshot: string;
  exported: string;
  version: string;
  dbid: string | null;
  at: string;
  locked: string[];
}> {
  for (let attempt = 0; ; attempt++) {
    const { rows: names } = await main.query<{ t: string }>('SELECT t FROM attendux_backup_tables() t');
    await main.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      const locked = names.map((r) => r.t);
      await lockTables(main, locked);
      // The first statement with a snapshot: clock_timestamp() is read after the snapshot was taken, so
      // every transaction in the backup committed before `at` (its createdAt, rounded up to the millisecond).
      const { rows } = await main.query<{
        snapshot: string;
        exported: string;
        version: string;
        dbid: string | null;
        at: Date;
      }>(
        `SELECT pg_current_snapshot()::text AS snapshot, pg_export_snapshot() AS exported,
                current_setting('server_version') AS version,
                (SELECT database_id::text FROM backup_meta LIMIT 1) AS dbid,
                date_trunc('milliseconds', clock_timestamp()) + interval '1 millisecond' AS at`,
      );
      const r = rows[0]!;
      return { ...r, at: r.at.toISOString(), locked };
    } catch (err) {
      // ROLLBACK of a failed transaction: its error is handled below
      await main.query('ROLLBACK').catch(() => undefined);
      if ((err as { code?: string }).code !== '42P01' || attempt >= 2) throw err;
    }
  }
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
    const items: WorkItem[] = [];
    const entriesOf = new Map<string, string[]>();
    for (const t of tables) {
      // Big tables become up to MAX_PARTS block ranges so that both connections stay busy to the end,
      // whatever else the machine is doing; each range is its own tar entry, archived as soon as it is done.
      const parts = Math.min(MAX_PARTS, Math.max(1, Math.ceil(t.blocks / SPLIT_BLOCKS)));
      const step = Math.ceil(t.blocks / parts);
      const names: string[] = [];
      for (let p = 0; p < parts; p++) {
        const entry = parts === 1 ? `data/${t.name}.copy.gz` : `data/${t.name}.${p}.copy.gz`;
        names.push(entry);
        items.push({
          table: t.name,
          part: p,
          entry,
          from: parts === 1 ? null : p * step,
          to: parts === 1 || p === parts - 1 ? null : (p + 1) * step,
          weight: parts === 1 ? t.blocks : Math.min(step, t.blocks - p * step),
          file: join(staging, `${t.name}.${p}.gz`),
          rows: 0,
        });
      }
      entriesOf.set(t.name, names);
    }
    // What a person needs to restore this backup without attendux (README "Restoring by hand").
    if (version) ready.push({ name: SCHEMA_SCRIPT, content: Buffer.from(await schemaScript(version)) });
    ready.push({
      name: RESTORE_SCRIPT,
      content: Buffer.from(
        restoreScript(
          id,
          tables.map((t) => ({ name: t.name, entries: entriesOf.get(t.name)! })),
        ),
      ),
    });
    const connections = COPY_CONNECTIONS;
    for (let n = 1; n < connections; n++) {
      const helper = await connectClient(adminUrl, 'attendux-backup');
      await helper.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      await helper.query(`SET TRANSACTION SNAPSHOT '${s.exported.replace(/[^0-9A-F-]/gi, '')}'`);
      // A helper takes its own locks, without waiting: once a TRUNCATE or ALTER TABLE queues for a table,
      // a new lock request behind it would wait for it, while it waits for our main connection, which waits
      // for the helper: a deadlock PostgreSQL cannot see. If they are not free, the main copies alone.
      try {
        await lockTables(
          helper,
          tables.map((t) => t.name),
          true,
        );
        helpers.push(helper);
      } catch (err) {
        await helper.end().catch(() => undefined); // closing a helper that failed: its error is handled below
        if ((err as { code?: string }).code !== '55P03') throw err;
      }
    }

    // Largest first onto whichever connection is free: two workers on two cores.
    const queue = [...items].sort((a, b) => b.weight - a.weight);
    let staged = 0;
    const worker = async (c: pg.Client) => {
      for (let item = queue.shift(); item && !aborted(); item = queue.shift()) {
        const it = item;
        stage(`copying table ${it.table}`);
        const pid = (c as unknown as { processID?: number }).processID ?? 0;
        await opts.onCopyStarted?.(it.table, pid);
        await copyItem(c, it, cipher, (d) => {
          staged += d;
          opts.onProgress?.({ phase: 'copy', table: it.table, bytes: staged });
        }).catch((err: unknown) => {
          // Two workers share one stage line; name the table of the copy that actually failed.
          throw backupFailure(err, 'full', `copying table ${it.table}`);
        });
        ready.push({ name: it.entry, files: [it.file], removeAfter: true, open: (f) => cipher.read(f) });
        faultPoint('backup:table-staged');
      }
    };
    await Promise.all([worker(main), ...helpers.map((h) => worker(h))]);
    for (const h of helpers) await h.query('COMMIT');
    await main.query('COMMIT');

    const out: ManifestTable[] = [];
    let total = 0;
    for (const t of tables) {
      const rows = items.filter((i) => i.table === t.name).reduce((n, p) => n + p.rows, 0);
      total += rows;
      out.push({ name: t.name, rows, entries: entriesOf.get(t.name)!, primaryKey: t.pk });
    }
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
