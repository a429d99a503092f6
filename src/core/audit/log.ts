import { stringify } from 'csv-stringify/sync';
import { auditWhere, type AuditFilter, type AuditRow } from '../../db/queries/audit.js';
import type { Queryable } from '../../db/pool.js';

/** An entry as `audit log` prints it: the time as ISO text with microseconds. */
export type LogRow = Omit<AuditRow, 'at'> & { at: string };

/** `audit log`: newest first, in pages of 1000 (keyset, so a large range streams in constant memory). */
export async function streamAuditLog(
  q: Queryable,
  filter: AuditFilter & { limit?: number },
  onRow: (r: LogRow) => void | Promise<void>,
): Promise<number> {
  const w = auditWhere({ ...filter, limit: undefined });
  let n = 0;
  let cursor: [string, string, number] | null = null;
  const limit = filter.limit ?? Infinity;
  for (;;) {
    const page = Math.min(1000, limit - n);
    if (page <= 0) break;
    const k = w.values.length;
    const { rows }: { rows: (LogRow & { atText: string })[] } = await q.query<LogRow & { atText: string }>(
      `SELECT tenant_id::text AS "tenantId", seq, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at,
              at::text AS "atText", actor, action, entity_type AS "entityType", entity_id AS "entityId",
              ip_hash AS "ipHash", details
         FROM audit_log
        WHERE ${w.sql} AND ($${k + 1}::timestamptz IS NULL OR (at, tenant_id, seq) < ($${k + 1}::timestamptz, $${k + 2}::uuid, $${k + 3}::bigint))
        ORDER BY at DESC, tenant_id DESC, seq DESC LIMIT $${k + 4}`,
      [...w.values, cursor?.[0] ?? null, cursor?.[1] ?? null, cursor?.[2] ?? null, page],
    );
    for (const r of rows) {
      const { atText, ...row } = r;
      void atText;
      await onRow(row);
      n++;
    }
    if (rows.length < page) break;
    const last: LogRow & { atText: string } = rows[rows.length - 1]!;
    cursor = [last.atText, last.tenantId, last.seq];
  }
  return n;
}

export const CSV_COLUMNS = [
  'tenantId',
  'seq',
  'at',
  'actor',
  'action',
  'entityType',
  'entityId',
  'ipHash',
  'details',
] satisfies (keyof LogRow)[];

/**
 * One CSV record (no line end) by csv-stringify: quoted where needed, and formula injection defused (a cell
 * starting with = + - @ tab or CR gets a leading ', so a spreadsheet shows it as text; numbers stay as they
 * are). JSON for objects, `true`/`false` for booleans, nothing for null.
 */
export function csvLine(values: unknown[]): string {
  return stringify([values], {
    escape_formulas: true,
    record_delimiter: '',
    cast: { boolean: (v) => String(v), object: (v) => JSON.stringify(v), date: (v) => v.toISOString() },
  });
}
