import { databaseOf, rewriteDbUrl } from '../../lib/db-url.js';
import { createReadStream } from 'node:fs';
import { once } from 'node:events';
import { ByteCounter } from '../archive/bytes.js';
import { finished, pipeline } from 'node:stream/promises';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import type pg from 'pg';
import { AttenduxError } from '../../errors.js';
import { copyOptions, type ManifestTable } from '../archive/format.js';
import { connectClient, ddl, formatSql, type Queryable } from '../../db/pool.js';
import type { OpenedChain } from './chain.js';
import { applyChanges } from './apply.js';

// applyChanges lives in apply.ts; its names stay importable from here.
export { applyChanges, type ApplyOptions } from './apply.js';

export const databaseUrl = (url: string, database: string): string => rewriteDbUrl(url, { database });
export { databaseOf };

export interface LoadProgress {
  phase: 'decrypt' | 'schema' | 'load' | 'index' | 'apply' | 'constraints' | 'migrate' | 'check';
  table?: string;
  bytes?: number;
}

interface SavedConstraint {
  table: string;
  name: string;
  def: string;
  type: string;
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
 * Load a chain into a freshly migrated database: drop keys and indexes, COPY every table on two connections,
 * rebuild the keys, apply the incrementals' changes, re-add the foreign keys (which checks them), reset
 * sequences. Triggers (change capture, audit chain) are off meanwhile, so loaded rows keep their audit
 * hashes and the restored database starts with an empty change log.
 */
export async function loadChain(
  url: string,
  chain: OpenedChain,
  opts: { until?: string | null; onProgress?: (p: LoadProgress) => void },
): Promise<LoadResult> {
  const main = await connectClient(url, 'attendux-restore');
  const helper = await connectClient(url, 'attendux-restore');
  const progress = opts.onProgress ?? (() => undefined);
  try {
    // Index builds sort whole tables: give them memory to sort in (per session, this restore only).
    // and the change set (sorted, joined) room in memory instead of temp files; temp_buffers must be set
    // before the session's first temporary table.
    for (const c of [main, helper])
      await c.query("SET maintenance_work_mem = '256MB'; SET work_mem = '64MB'; SET temp_buffers = '256MB'");
    const names = chain.full.tables.map((t) => t.name);
    const { cons, idx } = await readKeys(main, chain, names);
    progress({ phase: 'schema' });
    for (const f of cons.filter((c) => c.type === 'f'))
      await ddl(main, 'ALTER TABLE %s DROP CONSTRAINT %I', f.table, f.name);
    for (const k of cons.filter((c) => c.type !== 'f'))
      await ddl(main, 'ALTER TABLE %s DROP CONSTRAINT %I', k.table, k.name);
    for (const i of idx) await ddl(main, 'DROP INDEX %s', i.name);
    for (const t of names) await ddl(main, 'ALTER TABLE %I DISABLE TRIGGER USER', t);

    const rows = await loadTables(main, helper, chain, progress);

    // The changes go in before the keys exist: matching them is one hash join per table, and inserting
    // them an append, instead of random index lookups and updates in freshly built indexes.
    const applied = await applyChanges(main, chain, {
      until: opts.until ?? null,
      target: (t) => t,
      onTable: (t) => progress({ phase: 'apply', table: t }),
    });

    progress({ phase: 'index' });
    await rebuildKeys(main, helper, cons, idx, names, rows, progress);
    for (const t of names) await ddl(main, 'ALTER TABLE %I ENABLE TRIGGER USER', t);
    return { rows, changes: applied.total, changesByBackup: applied.byBackup };
  } finally {
    await helper.end().catch(() => undefined); // closing the clients: the load's outcome is decided
    await main.end().catch(() => undefined);
  }
}

interface SavedIndex {
  table: string;
  name: string;
  def: string;
}

/** The keys and indexes of the full's tables as migrated (they are dropped for the load, then re-made). */
async function readKeys(
  main: pg.Client,
  chain: OpenedChain,
  names: string[],
): Promise<{ cons: SavedConstraint[]; idx: SavedIndex[] }> {
  const { rows: present } = await main.query<{ t: string }>(
    `SELECT c.relname::text AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname = ANY($1::text[])`,
    [names],
  );
  const missing = names.filter((n) => !present.some((p) => p.t === n));
  if (missing.length)
    throw new AttenduxError(
      'RESTORE_FAILED',
      `the schema ${chain.full.schemaVersion ?? ''} has no table ${missing.join(', ')} named in ${chain.full.id}`,
    );
  const { rows: cons } = await main.query<SavedConstraint>(
    `SELECT c.conrelid::regclass::text AS "table", c.conname::text AS name, pg_get_constraintdef(c.oid) AS def,
            c.contype::text AS type
       FROM pg_constraint c
      WHERE c.conrelid = ANY (SELECT format('%I', t)::regclass FROM unnest($1::text[]) t)
        AND c.contype IN ('p', 'u', 'f', 'x')
      ORDER BY c.contype = 'f', c.conname`,
    [names],
  );
  const { rows: idx } = await main.query<SavedIndex>(
    `SELECT i.indrelid::regclass::text AS "table", i.indexrelid::regclass::text AS name,
            pg_get_indexdef(i.indexrelid) AS def
       FROM pg_index i
      WHERE i.indrelid = ANY (SELECT format('%I', t)::regclass FROM unnest($1::text[]) t)
        AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)`,
    [names],
  );
  return { cons, idx };
}

/** COPY every table of the full; rows per table as COPY counted them. */
async function loadTables(
  main: pg.Client,
  helper: pg.Client,
  chain: OpenedChain,
  progress: (p: LoadProgress) => void,
): Promise<Record<string, number>> {
  // Load: tables in turn; a table's block-range entries go to both connections at once, and a single
  // big entry is split between them (COPY parsing is the server's work, one core per connection).
  const rows: Record<string, number> = {};
  const dir = chain.steps[0]!.backup.dir;
  const sizes = new Map(chain.steps[0]!.backup.entries.map((e) => [e.name, e.bytes]));
  for (const t of chain.full.tables) {
    const sql = await formatSql(main, 'COPY %I FROM STDIN' + copyOptions(t), t.name);
    const entries = tableEntries(t);
    const seen = new Map<string, number>();
    const onBytes = (name: string) => (b: number) => {
      seen.set(name, b);
      progress({ phase: 'load', table: t.name, bytes: [...seen.values()].reduce((x, y) => x + y, 0) });
    };
    if (entries.length === 1) {
      // Only text can be cut between rows (at a newline); a binary COPY file goes to one connection.
      const big = (sizes.get(entries[0]!) ?? 0) > 4 << 20 && t.copyFormat !== 'binary';
      rows[t.name] = await copyFileInto(
        big ? [main, helper] : [main],
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
  return rows;
}

/** Re-make the keys and indexes, then the foreign keys, sequences and statistics, on two connections. */
async function rebuildKeys(
  main: pg.Client,
  helper: pg.Client,
  cons: SavedConstraint[],
  idx: SavedIndex[],
  names: string[],
  rows: Record<string, number>,
  progress: (p: LoadProgress) => void,
): Promise<void> {
  // Keys and indexes on two connections, biggest tables first.
  const size = (tbl: string) => rows[tbl.replace(/^"|"$/g, '')] ?? 0;
  const jobs = [
    ...cons
      .filter((c) => c.type !== 'f')
      .map((k) => ({
        table: k.table,
        run: (c: pg.Client) =>
          ddl(c, 'ALTER TABLE %s ADD CONSTRAINT %I ' + escapePercent(k.def), k.table, k.name),
      })),
    ...idx.map((i) => ({ table: i.table, run: (c: pg.Client) => c.query(i.def).then(() => undefined) })),
  ].sort((a, b) => size(b.table) - size(a.table));
  await runOnTwo(jobs, main, helper);

  progress({ phase: 'constraints' });
  // Foreign keys (each validates every row), sequences and planner statistics, on two connections.
  const fks = cons
    .filter((c) => c.type === 'f')
    .map((f) => ({
      weight: size(f.table),
      run: (c: pg.Client) =>
        ddl(c, 'ALTER TABLE %s ADD CONSTRAINT %I ' + escapePercent(f.def), f.table, f.name),
    }));
  const tail = [
    ...fks,
    { weight: (rows.attendance_events ?? 0) / 2, run: (c: pg.Client) => resetSequences(c, names) },
    ...names.map((t) => ({ weight: (rows[t] ?? 0) / 4, run: (c: pg.Client) => ddl(c, 'ANALYZE %I', t) })),
  ].sort((a, b) => b.weight - a.weight);
  await runOnTwo(tail, main, helper);
}

/** The tar entries holding a table's rows (parseManifest gives version-1 tables their `entries` too). */
export function tableEntries(t: ManifestTable): string[] {
  return t.entries;
}

/** A constraint definition goes into a format() template: its own % signs must stay literal. */
function escapePercent(s: string): string {
  return s.replace(/%/g, '%%');
}

async function runOnTwo(
  jobs: { run: (c: pg.Client) => Promise<unknown> }[],
  a: pg.Client,
  b: pg.Client,
): Promise<void> {
  const queue = [...jobs];
  const worker = async (c: pg.Client) => {
    for (let j = queue.shift(); j; j = queue.shift()) await j.run(c);
  };
  await Promise.all([worker(a), worker(b)]);
}

/** Move every identity/serial sequence past the largest value loaded. */
export async function resetSequences(c: Queryable, tables: string[]): Promise<void> {
  const { rows } = await c.query<{ t: string; col: string; seq: string }>(
    `SELECT t, a.attname::text AS col, pg_get_serial_sequence(format('%I', t), a.attname) AS seq
       FROM unnest($1::text[]) t
       JOIN pg_attribute a ON a.attrelid = format('%I', t)::regclass AND a.attnum > 0 AND NOT a.attisdropped
      WHERE pg_get_serial_sequence(format('%I', t), a.attname) IS NOT NULL`,
    [tables],
  );
  for (const r of rows) {
    const sql = await formatSql(
      c,
      'SELECT setval(%L, coalesce((SELECT max(%I) FROM %I), 1), (SELECT max(%I) FROM %I) IS NOT NULL)',
      r.seq,
      r.col,
      r.t,
      r.col,
      r.t,
    );
    await c.query(sql);
  }
}
