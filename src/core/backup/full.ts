import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type pg from 'pg';
import { connectClient } from '../../db/pool.js';
import { schemaVersion } from '../../db/migrate.js';
import { VERSION } from '../../version.js';
import { newBackupId, type ManifestTable, type Sidecar } from './format.js';
import {
  backupFailure,
  runDatabaseBackup,
  type BackupRunOptions,
  type BackupRunResult,
  type RunEnv,
} from './run.js';
import { writeArchive, type StagedEntry } from './writer.js';

/** Tables bigger than this many 8 KiB blocks are copied as two ctid ranges, one per connection. */
const SPLIT_BLOCKS = 4096;

interface TableInfo {
  name: string;
  blocks: number;
  pk: string[];
  refs: string[];
}

interface WorkItem {
  table: string;
  part: number;
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

async function copyItem(c: pg.ClientBase, item: WorkItem, onBytes: (delta: number) => void): Promise<void> {
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
  const count = new Transform({
    transform(chunk: Buffer, _e, cb) {
      onBytes(chunk.length);
      cb(null, chunk);
    },
  });
  // zlib runs in libuv's thread pool, so two tables compress on the two cores while the main thread moves bytes.
  await pipeline(
    source,
    createGzip({ level: 1, memLevel: 9 }),
    count,
    createWriteStream(item.file, { mode: 0o600 }),
  );
  item.rows = source.rowCount ?? 0;
}

/** Copy every application table at one snapshot into gzip files under `staging`, in parallel. */
async function stageTables(
  env: RunEnv,
  staging: string,
  opts: BackupRunOptions,
  stage: (s: string) => void,
): Promise<{
  snapshot: string;
  postgresVersion: string;
  databaseId: string | null;
  schemaVersion: string | null;
  tables: ManifestTable[];
  entries: StagedEntry[];
  rows: number;
}> {
  const adminUrl = env.install.db.adminUrl;
  // New tables (from a migration that forgot to attach capture) get the trigger before the snapshot, so
  // that every change after this full is captured.
  stage('preparing change capture');
  await env.lockClient.query('SELECT attendux_capture_all()');
  const main = await connectClient(adminUrl, 'attendux-backup');
  const helpers: pg.Client[] = [];
  try {
    stage('opening the snapshot');
    await main.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const { rows: snap } = await main.query<{
      snapshot: string;
      exported: string;
      version: string;
      dbid: string | null;
    }>(
      `SELECT pg_current_snapshot()::text AS snapshot, pg_export_snapshot() AS exported,
              current_setting('server_version') AS version,
              (SELECT database_id::text FROM backup_meta LIMIT 1) AS dbid`,
    );
    const s = snap[0]!;
    const version = await schemaVersion(main);
    const tables = await listTables(main);
    const items: WorkItem[] = [];
    for (const t of tables) {
      if (t.blocks > SPLIT_BLOCKS) {
        const mid = Math.floor(t.blocks / 2);
        items.push({
          table: t.name,
          part: 0,
          from: 0,
          to: mid,
          weight: mid,
          file: join(staging, `${t.name}.0.gz`),
          rows: 0,
        });
        items.push({
          table: t.name,
          part: 1,
          from: mid,
          to: null,
          weight: t.blocks - mid,
          file: join(staging, `${t.name}.1.gz`),
          rows: 0,
        });
      } else {
        items.push({
          table: t.name,
          part: 0,
          from: null,
          to: null,
          weight: t.blocks,
          file: join(staging, `${t.name}.0.gz`),
          rows: 0,
        });
      }
    }
    const helper = await connectClient(adminUrl, 'attendux-backup');
    helpers.push(helper);
    await helper.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await helper.query(`SET TRANSACTION SNAPSHOT '${s.exported.replace(/[^0-9A-F-]/gi, '')}'`);

    // Largest first onto whichever connection is free: two workers on two cores.
    const queue = [...items].sort((a, b) => b.weight - a.weight);
    let staged = 0;
    const worker = async (c: pg.Client) => {
      for (let item = queue.shift(); item; item = queue.shift()) {
        const it = item;
        stage(`copying table ${it.table}`);
        const pid = (c as unknown as { processID?: number }).processID ?? 0;
        await opts.onCopyStarted?.(it.table, pid);
        await copyItem(c, it, (d) => {
          staged += d;
          opts.onProgress?.({ phase: 'copy', table: it.table, bytes: staged });
        }).catch((err: unknown) => {
          // Two workers share one stage line; name the table of the copy that actually failed.
          throw backupFailure(err, 'full', `copying table ${it.table}`);
        });
      }
    };
    await Promise.all([worker(main), worker(helper)]);
    await helper.query('COMMIT');
    await main.query('COMMIT');

    const entries: StagedEntry[] = [];
    const out: ManifestTable[] = [];
    let total = 0;
    for (const t of tables) {
      const parts = items.filter((i) => i.table === t.name).sort((a, b) => a.part - b.part);
      const rows = parts.reduce((n, p) => n + p.rows, 0);
      total += rows;
      const entry = `data/${t.name}.copy.gz`;
      entries.push({ name: entry, files: parts.map((p) => p.file) });
      out.push({ name: t.name, rows, entry, primaryKey: t.pk });
    }
    return {
      snapshot: s.snapshot,
      postgresVersion: s.version,
      databaseId: s.dbid,
      schemaVersion: version,
      tables: out,
      entries,
      rows: total,
    };
  } finally {
    for (const h of helpers) await h.end().catch(() => undefined);
    await main.end().catch(() => undefined);
  }
}

/** The body of a full backup, run inside runDatabaseBackup (lock, audit, last-run record around it). */
export async function fullBackupBody(
  env: RunEnv,
  opts: BackupRunOptions,
  stage: (s: string) => void,
): Promise<{ sidecar: Sidecar }> {
  const startedAt = new Date();
  const id = newBackupId('full', startedAt);
  const staging = join(env.backupDir, `.staging-${id}`);
  await mkdir(staging, { mode: 0o700 });
  try {
    const st = await stageTables(env, staging, opts, stage);
    stage('writing the archive');
    const sidecar = await writeArchive({
      backupDir: env.backupDir,
      id,
      recipients: env.recipients,
      entries: st.entries,
      startedAt,
      rows: st.rows,
      onBytes: (n) => opts.onProgress?.({ phase: 'archive', bytes: n }),
      manifest: {
        id,
        kind: 'full',
        parent: null,
        chainRoot: id,
        createdAt: startedAt.toISOString(),
        attenduxVersion: VERSION,
        schemaVersion: st.schemaVersion,
        postgresVersion: st.postgresVersion,
        snapshot: st.snapshot,
        parentSnapshot: null,
        databaseId: st.databaseId,
        tables: st.tables,
        changes: null,
        contentHash: null,
      },
    });
    stage('trimming the change log');
    // Best effort: the backup is complete and recorded; a failed trim only leaves rows for the next run.
    await trimChangeLog(env.lockClient, st.snapshot).catch(() => undefined);
    return { sidecar };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/**
 * Changes whose transaction finished before the newest backup's snapshot can never be selected again by a
 * later incremental (they are visible in every future parent snapshot): drop them so change_log stays small.
 */
export async function trimChangeLog(c: pg.ClientBase, snapshot: string): Promise<void> {
  await c.query('DELETE FROM change_log WHERE txid < pg_snapshot_xmin($1::pg_snapshot)', [snapshot]);
}

export async function backupFull(opts: BackupRunOptions = {}): Promise<BackupRunResult> {
  return runDatabaseBackup('full', opts, (env, stage) => fullBackupBody(env, opts, stage));
}
