import { databaseOf, rewriteDbUrl } from '../../lib/db-url.js';
import { createReadStream } from 'node:fs';
import { once } from 'node:events';
import { ByteCounter } from '../archive/bytes.js';
import { finished, pipeline } from 'node:stream/promises';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import type pg from 'pg';
import { copyOptions, type ManifestTable } from '../archive/format.js';
import { connectClient, formatSql } from '../../db/pool.js';
import type { OpenedChain } from './chain.js';
import { applyPrepared, prepareChanges } from './apply.js';
import { addForeignKeys, analyzeTables, buildKeys, dropKeys, keysOf, readKeys } from './keys.js';

// applyChanges lives in apply.ts; its names stay importable from here.
export { applyChanges, type ApplyOptions } from './apply.js';

export const databaseUrl = (url: string, database: string): string => rewriteDbUrl(url, { database });
export { databaseOf };

export interface LoadProgress {
  phase: 'decrypt' | 'schema' | 'load' | 'index' | 'apply' | 'constraints' | 'migrate' | 'check';
  table?: string;
  bytes?: number;
}

/**
 * Stream one gzip COPY file into one or two COPY FROM STDIN streams. Rows of COPY text never contain a raw
 * newline, so cutting chunks at the last newline splits between rows; both backends parse in parallel.
 */
async function copyFileInto(
  clients: pg.Client[],
  sql: string,
  file: string,
  onBytes: (n: number) => void,
): Promise<number> {
  const { from: copyFrom } = await import('pg-copy-streams');
  if (clients.length === 1) {
    // One backend: no need to look at the rows at all.
    const stream = clients[0]!.query(copyFrom(sql));
    await pipeline(
      createReadStream(file, { highWaterMark: 1 << 20 }),
      createGunzip({ chunkSize: 1 << 18 }),
      new ByteCounter(onBytes),
      stream,
    );
    return stream.rowCount ?? 0;
  }
  const streams = clients.map((c) => c.query(copyFrom(sql)));
  const done = streams.map((s) => finished(s));
  // A failing backend must stop the read loop, not leave it waiting for 'drain'.
  const state: { failure?: Error } = {};
  for (const p of done)
    p.catch((err: unknown) => {
      state.failure ??= err as Error;
    });
  const source = createGunzip({ chunkSize: 1 << 18 });
  // A read error destroys the gunzip stream with it, which ends the loop below with that error.
  pipeline(createReadStream(file, { highWaterMark: 1 << 20 }), source).catch(() => undefined);
  let carry: Buffer | null = null;
  let next = 0;
  let bytes = 0;
  const check = (): void => {
    if (state.failure) throw state.failure;
  };
  const write = async (part: Buffer) => {
    check();
    // Prefer a stream that is not backed up; with one client this is always that one.
    let s = streams.find((x) => !x.writableNeedDrain);
    if (!s) {
      s = streams[next++ % streams.length]!;
      await Promise.race([once(s, 'drain'), ...done]);
      check();
    }
    s.write(part);
  };
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      bytes += chunk.length;
      onBytes(bytes);
      const buf: Buffer = carry ? Buffer.concat([carry, chunk]) : chunk;
      const nl = buf.lastIndexOf(10);
      if (nl < 0) {
        carry = buf;
        continue;
      }
      carry = nl + 1 < buf.length ? buf.subarray(nl + 1) : null;
      await write(buf.subarray(0, nl + 1));
    }
    if (carry) await write(carry);
  } catch (err) {
    for (const s of streams) s.destroy(err as Error);
    await Promise.allSettled(done);
    throw err;
  }
  for (const s of streams) s.end();
  await Promise.all(done);
  return streams.reduce((n, s) => n + (s.rowCount ?? 0), 0);
}

/** What loadFull found: rows per table as COPY counted them. */
export interface LoadResult {
  rows: Record<string, number>;
  changes: number;
  changesByBackup: Record<string, number>;
}

/**
 * Load a chain into a freshly migrated database: drop keys and indexes, COPY every table, apply the
 * incrementals' changes, rebuild the keys, re-add the foreign keys (which checks them), reset sequences.
 * Triggers (change capture, audit chain) are off meanwhile, so loaded rows keep their audit hashes and the
 * restored database starts with an empty change log.
 *
 * Three sessions: two load (the small tables, then the big ones split between them); the third meanwhile
 * prepares the changes and builds the keys of the small tables they do not touch. Then the changes go in
 * while the two take the statistics, and the two build the remaining keys and the foreign keys.
 */
export async function loadChain(
  url: string,
  chain: OpenedChain,
  opts: { until?: string | null; onProgress?: (p: LoadProgress) => void },
): Promise<LoadResult> {
  const clients: pg.Client[] = [];
  const progress = opts.onProgress ?? (() => undefined);
  try {
    for (let i = 0; i < 3; i++) clients.push(await connectClient(url, 'attendux-restore'));
    const [main, helper, applier] = clients as [pg.Client, pg.Client, pg.Client];
    // Index builds sort whole tables: give them memory to sort in (per session, this restore only).
    // and the change set (sorted, joined) room in memory instead of temp files; temp_buffers must be set
    // before the session's first temporary table.
    for (const c of clients)
      await c.query(
        "SET maintenance_work_mem = '256MB'; SET work_mem = '64MB'; SET temp_buffers = '256MB'; " +
          // Crash-safe here: a commit lost in a crash is one of a database still marked as being built (the
          // marker is cleared later, on another connection, by a synchronous commit that flushes all WAL
          // before it), and a marked database is dropped by the next restore.
          'SET synchronous_commit = off',
      );
    const names = chain.full.tables.map((t) => t.name);
    const keys = await readKeys(main, chain, names);
    progress({ phase: 'schema' });
    await dropKeys(main, keys, names);

    const applyOpts = {
      until: opts.until ?? null,
      target: (t: string) => t,
      onTable: (t: string) => progress({ phase: 'apply', table: t }),
    };
    const sizes = new Map(chain.steps[0]!.backup.entries.map((e) => [e.name, e.bytes]));
    const bytes = (t: ManifestTable) => t.entries.reduce((a, e) => a + (sizes.get(e) ?? 0), 0);
    const big = chain.full.tables.filter((t) => bytes(t) > BIG);
    const small = chain.full.tables.filter((t) => bytes(t) <= BIG);
    const prepared = prepareChanges(applier, chain, applyOpts);
    prepared.catch(() => undefined); // awaited below; this only keeps it from counting as unhandled meanwhile
    const rows = await loadSmall(main, helper, chain, small, progress);
    // A failure of either is the load's failure (the other one stops when the clients end).
    const [, early] = await Promise.all([
      loadBig(main, helper, chain, big, rows, progress),
      prepared.then(async (p) => {
        const touched = new Set(p.tables.map((x) => x.t));
        const done = new Set(small.map((t) => t.name).filter((t) => !touched.has(t)));
        await buildKeys([applier], keysOf(keys, done), rows);
        return done;
      }),
    ]);
    const applied = await prepared;
    // The changes go in before the keys exist: matching them is one hash join per table, and inserting
    // them an append, instead of random index lookups and updates in freshly built indexes.
    // Meanwhile the other two sessions take the planner statistics (ANALYZE and the DELETE of the changed
    // keys do not block each other): the foreign-key checks below are joins over whole tables, and without
    // statistics the planner picked plans 3-5x slower than the hash anti-joins it picks with them. They are
    // of the full's rows; the changes are a small part (autovacuum analyses again after a large one).
    await Promise.all([
      applyPrepared(applier, applied, applyOpts),
      analyzeTables([main, helper], names, rows),
    ]);

    progress({ phase: 'index' });
    await buildKeys([main, helper], keysOf(keys, new Set(names.filter((t) => !early.has(t)))), rows);
    progress({ phase: 'constraints' });
    await addForeignKeys(main, helper, keys, names, rows);
    return { rows, changes: applied.total, changesByBackup: applied.byBackup };
  } finally {
    // closing the clients: the load's outcome is decided
    for (const c of clients) await c.end().catch(() => undefined);
  }
}

/** A table above this many compressed bytes is loaded on two sessions at once. */
const BIG = 4 << 20;

/** COPY the small tables, each on one of two sessions; rows per table as COPY counted them. */
async function loadSmall(
  main: pg.Client,
  helper: pg.Client,
  chain: OpenedChain,
  tables: ManifestTable[],
  progress: (p: LoadProgress) => void,
): Promise<Record<string, number>> {
  const rows: Record<string, number> = {};
  const dir = chain.steps[0]!.backup.dir;
  const queue = [...tables];
  const worker = async (c: pg.Client) => {
    for (let t = queue.shift(); t; t = queue.shift()) {
      const sql = await formatSql(c, 'COPY %I FROM STDIN' + copyOptions(t), t.name);
      let n = 0;
      for (const e of t.entries) {
        progress({ phase: 'load', table: t.name });
        n += await copyFileInto([c], sql, join(dir, e), () => undefined);
      }
      rows[t.name] = n;
    }
  };
  await Promise.all([worker(main), worker(helper)]);
  return rows;
}

/** COPY the big tables in turn, each on two sessions at once (into `rows`). */
async function loadBig(
  main: pg.Client,
  helper: pg.Client,
  chain: OpenedChain,
  tables: ManifestTable[],
  rows: Record<string, number>,
  progress: (p: LoadProgress) => void,
): Promise<void> {
  // A table's block-range entries go to both connections at once, and a single big entry is split
  // between them (COPY parsing is the server's work, one core per connection).
  const dir = chain.steps[0]!.backup.dir;
  for (const t of tables) {
    const sql = await formatSql(main, 'COPY %I FROM STDIN' + copyOptions(t), t.name);
    const entries = tableEntries(t);
    const seen = new Map<string, number>();
    const onBytes = (name: string) => (b: number) => {
      seen.set(name, b);
      progress({ phase: 'load', table: t.name, bytes: [...seen.values()].reduce((x, y) => x + y, 0) });
    };
    if (entries.length === 1) {
      // Only text can be cut between rows (at a newline); a binary COPY file goes to one connection.
      rows[t.name] = await copyFileInto(
        t.copyFormat === 'binary' ? [main] : [main, helper],
        sql,
        join(dir, entries[0]!),
        onBytes(entries[0]!),
      );
    } else {
      const queue = [...entries];
      let n = 0;
      const worker = async (c: pg.Client) => {
        for (let e = queue.shift(); e; e = queue.shift()) {
          // Not `n += await ...`: that reads n before the await, so two workers would overwrite each
          // other's running total (the row-count check then failed on every table loaded in parts).
          const loaded = await copyFileInto([c], sql, join(dir, e), onBytes(e));
          n += loaded;
        }
      };
      await Promise.all([worker(main), worker(helper)]);
      rows[t.name] = n;
    }
  }
}

/** The tar entries holding a table's rows (parseManifest gives version-1 tables their `entries` too). */
export function tableEntries(t: ManifestTable): string[] {
  return t.entries;
}

export { resetSequences } from './keys.js';
