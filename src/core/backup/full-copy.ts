import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type pg from 'pg';
import { connectClient } from '../../db/pool.js';
import { ByteCounter } from '../archive/bytes.js';
import type { EntryQueue } from '../archive/writer.js';
import { faultPoint } from '../fault.js';
import { backupFailure, type BackupRunOptions } from './run.js';
import type { StagingCipher } from './staging.js';

/**
 * Tables bigger than this many 8 KiB blocks (8 MiB) are copied as ctid ranges of about that size, spread over
 * the connections. Small parts keep both connections busy to the end: with 32 MiB parts the last one ran
 * alone for up to 0.5 s of a 2.5 s backup (README "Performance (backup)"). Each part costs a query and a tar
 * entry (a few ms), so very big tables get at most MAX_PARTS bigger ones.
 */
const SPLIT_BLOCKS = 1024;
const MAX_PARTS = 1024;

export interface TableInfo {
  name: string;
  blocks: number;
  pk: string[];
  refs: string[];
}

export interface WorkItem {
  table: string;
  part: number;
  /** Tar entry name: data/<table>.bin.gz, or data/<table>.<part>.bin.gz for a table copied in parts. */
  entry: string;
  /** ctid block range [from, to); to null = to the end. Both null = the whole table. */
  from: number | null;
  to: number | null;
  weight: number;
  file: string;
  rows: number;
}

async function copyItem(
  c: pg.ClientBase,
  item: WorkItem,
  cipher: StagingCipher,
  onBytes: (delta: number) => void,
): Promise<void> {
  const { to: copyTo } = await import('pg-copy-streams');
  // Binary, not text: PostgreSQL writes it in about half the time (no output functions for timestamps,
  // uuids, floats) and it compresses smaller and faster (README "Performance (backup)").
  const { rows } = await c.query<{ sql: string }>(
    item.from === null && item.to === null
      ? `SELECT format('COPY %I TO STDOUT (FORMAT binary)', $1::text) AS sql`
      : item.to === null
        ? `SELECT format('COPY (SELECT * FROM %I WHERE ctid >= %L::tid) TO STDOUT (FORMAT binary)',
                         $1::text, $2::text) AS sql`
        : `SELECT format('COPY (SELECT * FROM %I WHERE ctid >= %L::tid AND ctid < %L::tid)
                            TO STDOUT (FORMAT binary)', $1::text, $2::text, $3::text) AS sql`,
    item.from === null && item.to === null
      ? [item.table]
      : item.to === null
        ? [item.table, `(${item.from},0)`]
        : [item.table, `(${item.from},0)`, `(${item.to},0)`],
  );
  const source = c.query(copyTo(rows[0]!.sql));
  const count = new ByteCounter(onBytes, true);
  // zlib runs in libuv's thread pool, so two tables compress on the two cores while the main thread moves bytes.
  // (Gathering the socket-sized chunks into 1 MiB ones before zlib, for fewer thread hand-offs, cost 15 MB of
  // peak RSS and showed no measurable gain on the loaded reference machine.) 64 KiB output chunks, not 256:
  // the same speed, and peak RSS at 5M events 148-153 MB instead of 152-164 (README "Performance (backup)").
  await pipeline(
    source,
    createGzip({ level: 1, memLevel: 9, chunkSize: 64 * 1024 }),
    count,
    cipher.encryptTo(item.file),
    createWriteStream(item.file, { mode: 0o600 }),
  );
  // The stream ends at CopyDone, but pg-copy-streams sets rowCount only when the CommandComplete that follows
  // is handled, which under load can be after pipeline() resolved (a manifest then said 0 rows). The client runs
  // queries in order, so once this one answers, that message has been handled.
  await c.query('SELECT 1');
  item.rows = source.rowCount;
}

export async function lockTables(c: pg.ClientBase, names: string[], nowait = false): Promise<void> {
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
export async function openLockedSnapshot(main: pg.ClientBase): Promise<{
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

/** Each table's work items (ctid block ranges) and the tar entries they become, in table order. */
export function planWorkItems(
  tables: TableInfo[],
  staging: string,
): { items: WorkItem[]; entriesOf: Map<string, string[]> } {
  const items: WorkItem[] = [];
  const entriesOf = new Map<string, string[]>();
  for (const t of tables) {
    // Big tables become up to MAX_PARTS block ranges so that both connections stay busy to the end,
    // whatever else the machine is doing; each range is its own tar entry, archived as soon as it is done.
    const parts = Math.min(MAX_PARTS, Math.max(1, Math.ceil(t.blocks / SPLIT_BLOCKS)));
    const step = Math.ceil(t.blocks / parts);
    const names: string[] = [];
    for (let p = 0; p < parts; p++) {
      const entry = parts === 1 ? `data/${t.name}.bin.gz` : `data/${t.name}.${p}.bin.gz`;
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
  return { items, entriesOf };
}

/**
 * Open `count` helper connections on the main connection's exported snapshot, each holding its own locks on
 * `tables`; pushed onto `helpers` as they open, so the caller closes them whatever happens.
 */
export async function openHelpers(
  adminUrl: string,
  exported: string,
  tables: string[],
  count: number,
  helpers: pg.Client[],
): Promise<void> {
  for (let n = 0; n < count; n++) {
    const helper = await connectClient(adminUrl, 'attendux-backup');
    await helper.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await helper.query(`SET TRANSACTION SNAPSHOT '${exported.replace(/[^0-9A-F-]/gi, '')}'`);
    // A helper takes its own locks, without waiting: once a TRUNCATE or ALTER TABLE queues for a table,
    // a new lock request behind it would wait for it, while it waits for our main connection, which waits
    // for the helper: a deadlock PostgreSQL cannot see. If they are not free, the main copies alone.
    try {
      await lockTables(helper, tables, true);
      helpers.push(helper);
    } catch (err) {
      await helper.end().catch(() => undefined); // closing a helper that failed: its error is handled below
      if ((err as { code?: string }).code !== '55P03') throw err;
    }
  }
}

/** Copy every work item on the given connections, handing each finished file to `ready`. */
export async function copyWorkItems(
  connections: pg.Client[],
  items: WorkItem[],
  opts: BackupRunOptions,
  stage: (s: string) => void,
  ready: EntryQueue,
  aborted: () => boolean,
  cipher: StagingCipher,
): Promise<void> {
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
  await Promise.all(connections.map((c) => worker(c)));
}
