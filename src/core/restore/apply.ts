import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import type pg from 'pg';
import { AttenduxError } from '../../errors.js';
import { CHANGES_ENTRY, changeColumnsDdl, type ManifestTable } from '../archive/format.js';
import { formatSql } from '../../db/pool.js';
import type { OpenedChain } from './chain.js';

export interface ApplyOptions {
  /** Only transactions whose last change is at or before this time (--at). */
  until: string | null;
  /** The table the changes of `table` are applied to (the table itself, or a staging table). */
  target: (table: string) => string;
  /** Only changes of this company (restore --tenant); truncates then only clear its rows. */
  tenantId?: string;
  /** Tables to skip (restore --tenant keeps the live audit log). */
  skip?: string[];
  onTable?: (table: string) => void;
}

/** The incrementals' changes, reduced to each touched key's last state, in temp tables of one session. */
export interface PreparedChanges {
  total: number;
  byBackup: Record<string, number>;
  /** Touched tables in the full's order: the last truncate's change id, and the temp tables' number, its key. */
  tables: { t: string; trunc: number | null; n: number; pk: string[] }[];
}

/**
 * Apply the incrementals of a chain: load all their change rows into a temporary table, keep whole
 * transactions up to --at, and per table replace every touched key by its last state. Conflicting writes
 * to one row are serialised by PostgreSQL's row locks, so the change with the highest id is the row's
 * final state even across incrementals; no foreign keys exist on the targets meanwhile.
 */
export async function applyChanges(
  c: pg.Client,
  chain: OpenedChain,
  opts: ApplyOptions,
): Promise<{ total: number; byBackup: Record<string, number> }> {
  const prepared = await prepareChanges(c, chain, opts);
  await applyPrepared(c, prepared, opts);
  return { total: prepared.total, byBackup: prepared.byBackup };
}

/**
 * The first half of applyChanges, which reads nothing of the target tables (only their row types): a
 * full restore runs it on a connection of its own while the full's rows still load. Per touched table it
 * leaves restore_keys_N (the typed keys to replace) and restore_rows_N (their last states, typed rows).
 */
export async function prepareChanges(
  c: pg.Client,
  chain: OpenedChain,
  opts: ApplyOptions,
): Promise<PreparedChanges> {
  const incs = chain.steps.filter((s) => s.step.kind === 'incremental');
  const byBackup: Record<string, number> = {};
  if (!incs.length) return { total: 0, byBackup, tables: [] };
  await c.query(`CREATE TEMP TABLE restore_changes (${changeColumnsDdl()})`);
  try {
    Object.assign(byBackup, await readChanges(c, incs));
    if (opts.until)
      await c.query(
        `DELETE FROM restore_changes WHERE txid IN
           (SELECT txid FROM restore_changes GROUP BY txid HAVING max(at) > $1::timestamptz)`,
        [opts.until],
      );
    if (opts.tenantId)
      await c.query('DELETE FROM restore_changes WHERE tenant_id IS DISTINCT FROM $1 AND op <> $2', [
        opts.tenantId,
        'T',
      ]);
    const { rows: touched } = await c.query<{ t: string; trunc: number | null }>(
      `SELECT table_name AS t, max(id) FILTER (WHERE op = 'T') AS trunc FROM restore_changes GROUP BY table_name`,
    );
    const order = chain.full.tables.map((t) => t.name);
    const pkOf = new Map(chain.full.tables.map((t: ManifestTable) => [t.name, t.primaryKey]));
    const tables: PreparedChanges['tables'] = [];
    for (const { t, trunc } of touched.sort((a, b) => order.indexOf(a.t) - order.indexOf(b.t))) {
      if (opts.skip?.includes(t)) continue;
      const pk = pkOf.get(t);
      if (!pk || !pk.length)
        throw new AttenduxError(
          'RESTORE_FAILED',
          `changes for table ${t}, which the full backup ${chain.full.id} does not hold`,
        );
      const n = tables.length;
      await prepareTable(c, t, pk, trunc, n);
      tables.push({ t, trunc, n, pk });
    }
    const total = Object.values(byBackup).reduce((a, b) => a + b, 0);
    return { total, byBackup, tables };
  } finally {
    // a temp table: it goes with the session anyway
    await c.query('DROP TABLE IF EXISTS restore_changes').catch(() => undefined);
  }
}

/** The second half: per table, delete every touched key and append its last state (same session). */
export async function applyPrepared(c: pg.Client, p: PreparedChanges, opts: ApplyOptions): Promise<void> {
  for (const { t, trunc, n, pk } of p.tables) {
    opts.onTable?.(t);
    const target = opts.target(t);
    if (trunc !== null) {
      if (opts.tenantId)
        await c.query(
          await formatSql(
            c,
            'DELETE FROM %I WHERE %I = %L',
            target,
            t === 'tenants' ? 'id' : 'tenant_id',
            opts.tenantId,
          ),
        );
      else await c.query(await formatSql(c, 'DELETE FROM %I', target));
    }
    const match = pk.map((_, i) => `x.%${i + 3}$I = d.%${i + 3}$I`).join(' AND ');
    await c.query(
      await formatSql(
        c,
        `DELETE FROM %1$I x USING %2$I d WHERE ${match}`,
        target,
        `restore_keys_${n}`,
        ...pk,
      ),
    );
    await c.query(await formatSql(c, 'INSERT INTO %I SELECT * FROM %I', target, `restore_rows_${n}`));
    await c.query(await formatSql(c, 'DROP TABLE %I, %I', `restore_keys_${n}`, `restore_rows_${n}`));
  }
}

/** COPY every incremental's change rows into restore_changes; rows read per backup. */
async function readChanges(c: pg.Client, incs: OpenedChain['steps']): Promise<Record<string, number>> {
  const { from: copyFrom } = await import('pg-copy-streams');
  const byBackup: Record<string, number> = {};
  for (const s of incs) {
    const stream = c.query(copyFrom('COPY restore_changes FROM STDIN'));
    await pipeline(createReadStream(join(s.backup.dir, CHANGES_ENTRY)), createGunzip(), stream);
    byBackup[s.step.id] = stream.rowCount ?? 0;
  }
  return byBackup;
}

/**
 * The last state of every key of table `t` the changes touch (after its last truncate, if any): typed keys
 * in restore_keys_N, analysed, so that the delete is a plain join on the primary key, and the rows that
 * remain in restore_rows_N, typed already, so that applying them is an append.
 */
async function prepareTable(
  c: pg.Client,
  t: string,
  pk: string[],
  trunc: number | null,
  n: number,
): Promise<void> {
  await c.query(
    `CREATE TEMP TABLE restore_last AS
       SELECT DISTINCT ON (pk) op, pk, "row" FROM restore_changes
        WHERE table_name = $1 AND op <> 'T' AND id > $2 ORDER BY pk, id DESC`,
    [t, trunc ?? 0],
  );
  try {
    const cols = pk.map((_, i) => `r.%${3 + i}$I`).join(', ');
    await c.query(
      await formatSql(
        c,
        `CREATE TEMP TABLE %1$I AS SELECT ${cols} FROM restore_last l, jsonb_populate_record(NULL::public.%2$I, l.pk) r`,
        `restore_keys_${n}`,
        t,
        ...pk,
      ),
    );
    await c.query(await formatSql(c, 'ANALYZE %I', `restore_keys_${n}`));
    await c.query(
      await formatSql(
        c,
        `CREATE TEMP TABLE %I AS SELECT r.* FROM restore_last l, jsonb_populate_record(NULL::public.%I, l."row") r WHERE l.op IN ('I', 'U')`,
        `restore_rows_${n}`,
        t,
      ),
    );
  } finally {
    // a temp table: it goes with the session anyway
    await c.query('DROP TABLE IF EXISTS restore_last').catch(() => undefined);
  }
}
