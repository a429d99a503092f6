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
  const incs = chain.steps.filter((s) => s.step.kind === 'incremental');
  const byBackup: Record<string, number> = {};
  if (!incs.length) return { total: 0, byBackup };
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
    for (const { t, trunc } of touched.sort((a, b) => order.indexOf(a.t) - order.indexOf(b.t))) {
      if (opts.skip?.includes(t)) continue;
      const pk = pkOf.get(t);
      if (!pk || !pk.length)
        throw new AttenduxError(
          'RESTORE_FAILED',
          `changes for table ${t}, which the full backup ${chain.full.id} does not hold`,
        );
      opts.onTable?.(t);
      await applyTable(c, t, pk, trunc, opts);
    }
    const total = Object.values(byBackup).reduce((a, b) => a + b, 0);
    return { total, byBackup };
  } finally {
    // a temp table: it goes with the session anyway
    await c.query('DROP TABLE IF EXISTS restore_changes').catch(() => undefined);
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

/** Replace every key of table `t` the changes touch by its last state (after its last truncate, if any). */
async function applyTable(
  c: pg.Client,
  t: string,
  pk: string[],
  trunc: number | null,
  opts: ApplyOptions,
): Promise<void> {
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
  await c.query(
    `CREATE TEMP TABLE restore_last AS
       SELECT DISTINCT ON (pk) op, pk, "row" FROM restore_changes
        WHERE table_name = $1 AND op <> 'T' AND id > $2 ORDER BY pk, id DESC`,
    [t, trunc ?? 0],
  );
  await c.query('ANALYZE restore_last');
  // Typed keys in a table of their own, analysed, so that the delete is a plain join on the primary key.
  const cols = pk.map((_, i) => `r.%${2 + i + 1}$I`).join(', ');
  await c.query(
    await formatSql(
      c,
      `CREATE TEMP TABLE restore_keys AS SELECT ${cols} FROM restore_last l, jsonb_populate_record(NULL::public.%2$I, l.pk) r`,
      target,
      t,
      ...pk,
    ),
  );
  await c.query('ANALYZE restore_keys');
  const match = pk.map((_, i) => `x.%${2 + i + 1}$I = d.%${2 + i + 1}$I`).join(' AND ');
  await c.query(
    await formatSql(c, `DELETE FROM %1$I x USING restore_keys d WHERE ${match}`, target, t, ...pk),
  );
  await c.query('DROP TABLE restore_keys');
  await c.query(
    await formatSql(
      c,
      `INSERT INTO %I SELECT r.* FROM restore_last l, jsonb_populate_record(NULL::public.%I, l."row") r WHERE l.op IN ('I', 'U')`,
      target,
      t,
    ),
  );
  await c.query('DROP TABLE restore_last');
}
