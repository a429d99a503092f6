import type pg from 'pg';
import { AttenduxError } from '../../errors.js';
import { ddl, formatSql, type Queryable } from '../../db/pool.js';
import type { OpenedChain } from './chain.js';

/**
 * The keys, indexes and foreign keys of a restore: read from the migrated schema, dropped for the load, and
 * re-made after it. Every index is built by CREATE INDEX (a primary or unique key as its unique index,
 * attached afterwards with ADD CONSTRAINT ... USING INDEX): CREATE INDEX takes a SHARE lock, so two builds
 * on one table run at once, where ALTER TABLE ADD PRIMARY KEY locks the table exclusively and the other
 * connection waits.
 */

export interface SavedConstraint {
  table: string;
  name: string;
  def: string;
  type: string;
  /** The definition of the index behind a primary key or unique constraint. */
  indexDef: string | null;
  deferrable: boolean;
}

export interface SavedIndex {
  table: string;
  name: string;
  def: string;
}

export interface Keys {
  cons: SavedConstraint[];
  idx: SavedIndex[];
}

/** The unquoted table name of a regclass text. */
const bare = (tbl: string) => tbl.replace(/^"|"$/g, '');

/** The keys and indexes (not the foreign keys) of some tables. */
export function keysOf(keys: Keys, tables: Set<string>): Keys {
  return {
    cons: keys.cons.filter((c) => c.type !== 'f' && tables.has(bare(c.table))),
    idx: keys.idx.filter((i) => tables.has(bare(i.table))),
  };
}

/**
 * Many DDL statements in one round trip: each formatted by PostgreSQL's format() (%I, %L) in one query,
 * then sent as one multi-statement query (one implicit transaction: all or none).
 */
export async function ddlBatch(c: Queryable, stmts: string[][]): Promise<void> {
  if (!stmts.length) return;
  const { rows } = await c.query<{ sql: string }>(
    `SELECT string_agg(format(s->>0, VARIADIC ARRAY(SELECT jsonb_array_elements_text(s - 0))), E';\n'
                       ORDER BY o) AS sql
       FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(s, o)`,
    [JSON.stringify(stmts)],
  );
  await c.query(rows[0]!.sql);
}

/** Drop every key and index of the tables and switch their user triggers off, in one round trip. */
export async function dropKeys(c: Queryable, keys: Keys, names: string[]): Promise<void> {
  await ddlBatch(c, [
    ...keys.cons
      .filter((k) => k.type === 'f')
      .map((k) => ['ALTER TABLE %s DROP CONSTRAINT %I', k.table, k.name]),
    ...keys.cons
      .filter((k) => k.type !== 'f')
      .map((k) => ['ALTER TABLE %s DROP CONSTRAINT %I', k.table, k.name]),
    ...keys.idx.map((i) => ['DROP INDEX %s', i.name]),
    ...names.map((t) => ['ALTER TABLE %I DISABLE TRIGGER USER', t]),
  ]);
}

/** The keys and indexes of the full's tables as migrated (they are dropped for the load, then re-made). */
export async function readKeys(main: pg.Client, chain: OpenedChain, names: string[]): Promise<Keys> {
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
            c.contype::text AS type, c.condeferrable AS deferrable,
            CASE WHEN c.contype IN ('p', 'u') THEN pg_get_indexdef(c.conindid) END AS "indexDef"
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

/** A constraint definition goes into a format() template: its own % signs must stay literal. */
function escapePercent(s: string): string {
  return s.replace(/%/g, '%%');
}

const addConstraint = (c: Queryable, k: SavedConstraint) =>
  ddl(c, 'ALTER TABLE %s ADD CONSTRAINT %I ' + escapePercent(k.def), k.table, k.name);

// Deferrable keys and exclusion constraints cannot be attached to a prebuilt index.
const viaIndex = (k: SavedConstraint) => k.indexDef !== null && !k.deferrable;

/**
 * Build the keys and indexes (no foreign keys) on the given sessions, biggest tables first, then attach the
 * keys to their unique indexes in one round trip.
 */
export async function buildKeys(
  clients: pg.Client[],
  keys: Keys,
  rows: Record<string, number>,
): Promise<void> {
  const size = (tbl: string) => rows[bare(tbl)] ?? 0;
  const jobs = [
    ...keys.cons.map((k) => ({
      weight: size(k.table),
      run: (c: pg.Client) => (viaIndex(k) ? c.query(k.indexDef!) : addConstraint(c, k)),
    })),
    ...keys.idx.map((i) => ({ weight: size(i.table), run: (c: pg.Client) => c.query(i.def) })),
  ];
  await runOn(byWeight(jobs), clients);
  await ddlBatch(
    clients[0]!,
    keys.cons
      .filter(viaIndex)
      .map((k) => [
        `ALTER TABLE %s ADD CONSTRAINT %I ${k.type === 'p' ? 'PRIMARY KEY' : 'UNIQUE'} USING INDEX %I`,
        k.table,
        k.name,
        k.name,
      ]),
  );
}

/**
 * The foreign keys (each checks every row: a join over the whole table, planned with the statistics taken
 * before) and the sequences, on two sessions; then the user triggers back on.
 */
export async function addForeignKeys(
  main: pg.Client,
  helper: pg.Client,
  keys: Keys,
  names: string[],
  rows: Record<string, number>,
): Promise<void> {
  const fks = keys.cons
    .filter((c) => c.type === 'f')
    .map((f) => ({ weight: rows[bare(f.table)] ?? 0, run: (c: pg.Client) => addConstraint(c, f) }));
  const tail = [
    ...fks,
    { weight: (rows.attendance_events ?? 0) / 2, run: (c: pg.Client) => resetSequences(c, names) },
  ];
  await runOn(byWeight(tail), [main, helper]);
  await ddlBatch(
    main,
    names.map((t) => ['ALTER TABLE %I ENABLE TRIGGER USER', t]),
  );
}

const byWeight = <T extends { weight: number }>(xs: T[]) => xs.sort((a, b) => b.weight - a.weight);

/** ANALYZE every table on two sessions, biggest first. */
export async function analyzeTables(
  clients: pg.Client[],
  names: string[],
  rows: Record<string, number>,
): Promise<void> {
  const jobs = names.map((t) => ({ weight: rows[t] ?? 0, run: (c: pg.Client) => ddl(c, 'ANALYZE %I', t) }));
  await runOn(byWeight(jobs), clients);
}

/** Jobs from one queue on each session at once. */
async function runOn(
  jobs: { run: (c: pg.Client) => Promise<unknown> }[],
  clients: pg.Client[],
): Promise<void> {
  const queue = [...jobs];
  const worker = async (c: pg.Client) => {
    for (let j = queue.shift(); j; j = queue.shift()) await j.run(c);
  };
  await Promise.all(clients.map(worker));
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
