import type { Queryable } from '../pool.js';

/**
 * Data retention and company deletion (issue 12). Every statement is set-based: one statement per table and
 * company, never a round trip per row. A set of events is named by its count and a fingerprint (md5 of the
 * ids in order), so that a plan can be checked against what its execution touched without carrying a million
 * ids around.
 */

/** What retention deletes or strips in one company: events at or below `maxEventId` older than the cutoffs. */
export interface RetentionBounds {
  tenantId: string;
  /** Events older than this are deleted (null: none). */
  deleteBefore: string | null;
  /** Events older than this lose latitude, longitude and accuracy (null: none). */
  stripBefore: string | null;
  /** Events older than the attendance retention but younger than this are kept under legal hold. */
  retainBefore: string | null;
  /** The newest event id when the plan was made: events recorded later are never touched. */
  maxEventId: string;
}

export interface RetentionCounts {
  deleteEvents: number;
  deleteFingerprint: string;
  deleteCorrections: number;
  stripEvents: number;
  stripFingerprint: string;
  heldEvents: number;
}

const FINGERPRINT = `coalesce(md5(string_agg(id::text, ',' ORDER BY id)), '')`;
const HAS_POSITION = '(latitude IS NOT NULL OR longitude IS NOT NULL OR accuracy_m IS NOT NULL)';

export async function maxEventId(q: Queryable, tenantId: string): Promise<string> {
  const { rows } = await q.query<{ m: string }>(
    'SELECT coalesce(max(id), 0)::text AS m FROM attendance_events WHERE tenant_id = $1',
    [tenantId],
  );
  return rows[0]!.m;
}

/** What applying `b` would delete, strip and keep under legal hold (one scan of the old events). */
export async function countRetention(q: Queryable, b: RetentionBounds): Promise<RetentionCounts> {
  const { rows } = await q.query<RetentionCounts>(
    `WITH e AS (
       SELECT id, coalesce(occurred_at < $2::timestamptz, false) AS d,
              coalesce(occurred_at < $3::timestamptz, false) AND ${HAS_POSITION} AS s,
              coalesce(occurred_at < $4::timestamptz, false) AS h
         FROM attendance_events
        WHERE tenant_id = $1 AND id <= $5::bigint
          AND occurred_at < greatest($2::timestamptz, $3::timestamptz, $4::timestamptz))
     SELECT count(*) FILTER (WHERE d)::int AS "deleteEvents",
            coalesce(md5(string_agg(id::text, ',' ORDER BY id) FILTER (WHERE d)), '') AS "deleteFingerprint",
            count(*) FILTER (WHERE s AND NOT d)::int AS "stripEvents",
            coalesce(md5(string_agg(id::text, ',' ORDER BY id) FILTER (WHERE s AND NOT d)), '') AS "stripFingerprint",
            count(*) FILTER (WHERE h AND NOT d)::int AS "heldEvents",
            (SELECT count(*)::int FROM correction_requests c
              WHERE c.tenant_id = $1 AND c.event_id IN (SELECT id FROM e WHERE d)) AS "deleteCorrections"
       FROM e`,
    [b.tenantId, b.deleteBefore, b.stripBefore, b.retainBefore, b.maxEventId],
  );
  return rows[0]!;
}

const OLD_EVENTS = `SELECT id FROM attendance_events
                     WHERE tenant_id = $1 AND occurred_at < $2::timestamptz AND id <= $3::bigint`;

/** Delete the old events and the correction requests about them; returns what was deleted. */
export async function deleteOldEvents(
  q: Queryable,
  b: RetentionBounds,
): Promise<{ events: number; fingerprint: string; corrections: number }> {
  if (!b.deleteBefore) return { events: 0, fingerprint: '', corrections: 0 };
  const values = [b.tenantId, b.deleteBefore, b.maxEventId];
  const c = await q.query(
    `DELETE FROM correction_requests WHERE tenant_id = $1 AND event_id IN (${OLD_EVENTS})`,
    values,
  );
  const { rows } = await q.query<{ events: number; fingerprint: string }>(
    `WITH d AS (DELETE FROM attendance_events WHERE id IN (${OLD_EVENTS}) AND tenant_id = $1 RETURNING id)
     SELECT count(*)::int AS events, ${FINGERPRINT} AS fingerprint FROM d`,
    values,
  );
  return { ...rows[0]!, corrections: c.rowCount ?? 0 };
}

/** Drop the position of the old events (the geofence verdict, site and distance stay). */
export async function stripOldPositions(
  q: Queryable,
  b: RetentionBounds,
): Promise<{ events: number; fingerprint: string }> {
  if (!b.stripBefore) return { events: 0, fingerprint: '' };
  const { rows } = await q.query<{ events: number; fingerprint: string }>(
    `WITH u AS (UPDATE attendance_events SET latitude = NULL, longitude = NULL, accuracy_m = NULL
                 WHERE tenant_id = $1 AND occurred_at < $2::timestamptz AND id <= $3::bigint AND ${HAS_POSITION}
                 RETURNING id)
     SELECT count(*)::int AS events, ${FINGERPRINT} AS fingerprint FROM u`,
    [b.tenantId, b.stripBefore, b.maxEventId],
  );
  return rows[0]!;
}

/** Record a change in the security ledger (src/core/ledger), so that every restore repeats it. */
export async function insertLedgerEntry(
  q: Queryable,
  e: { tenantId: string; kind: string; entityId: string; data: Record<string, unknown> },
): Promise<void> {
  await q.query('INSERT INTO security_ledger (tenant_id, kind, entity_id, data) VALUES ($1, $2, $3, $4)', [
    e.tenantId,
    e.kind,
    e.entityId,
    JSON.stringify(e.data),
  ]);
}

/** Rows of one company per table (migrations/0009_retention.sql). */
export async function tenantRowCounts(q: Queryable, tenantId: string): Promise<Record<string, number>> {
  const { rows } = await q.query<{ table_name: string; n: number }>(
    'SELECT table_name, n::int AS n FROM attendux_tenant_rows($1) ORDER BY table_name',
    [tenantId],
  );
  return Object.fromEntries(rows.map((r) => [r.table_name, r.n]));
}

/** Delete every row of one company but its audit log (migrations/0009_retention.sql); returns the count. */
export async function deleteTenantRows(q: Queryable, tenantId: string): Promise<number> {
  const { rows } = await q.query<{ n: string }>('SELECT attendux_delete_tenant($1)::text AS n', [tenantId]);
  return Number(rows[0]!.n);
}

/** The head of a company's audit chain (seq and MAC), for the install-wide record of its deletion. */
export async function auditHead(
  q: Queryable,
  tenantId: string,
): Promise<{ seq: number; mac: string } | null> {
  const { rows } = await q.query<{ seq: string; mac: string }>(
    `SELECT seq::text, encode(hash, 'hex') AS mac FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1`,
    [tenantId],
  );
  return rows[0] ? { seq: Number(rows[0].seq), mac: rows[0].mac } : null;
}

/**
 * Restores re-apply the ledger (src/core/ledger): every retention run again (the events each deleted, the
 * positions each stripped: older than its cutoff and not newer than its newest event), whatever the restored
 * point. `tenantId` null: every company.
 */
export async function reapplyRetention(
  q: Queryable,
  tenantId: string | null,
): Promise<{ events: number; positions: number }> {
  const entries = `SELECT tenant_id, (data->>'deleteBefore')::timestamptz AS del,
                          (data->>'stripBefore')::timestamptz AS strip, (data->>'maxEventId')::bigint AS max_id
                     FROM security_ledger WHERE kind = 'attendance.retention' AND ($1::uuid IS NULL OR tenant_id = $1)`;
  // Most restores have no retention entry: skip the scans of the events table.
  const { rowCount } = await q.query(`${entries} LIMIT 1`, [tenantId]);
  if (!rowCount) return { events: 0, positions: 0 };
  const old = (col: string, a: string) =>
    `EXISTS (SELECT 1 FROM (${entries}) l WHERE l.tenant_id = ${a}.tenant_id AND ${a}.occurred_at < l.${col}
                                             AND ${a}.id <= l.max_id)`;
  await q.query(
    `DELETE FROM correction_requests c USING attendance_events e
      WHERE c.tenant_id = e.tenant_id AND c.event_id = e.id AND ${old('del', 'e')}`,
    [tenantId],
  );
  const del = await q.query(`DELETE FROM attendance_events a WHERE ${old('del', 'a')}`, [tenantId]);
  const strip = await q.query(
    `UPDATE attendance_events a SET latitude = NULL, longitude = NULL, accuracy_m = NULL
      WHERE (a.latitude IS NOT NULL OR a.longitude IS NOT NULL OR a.accuracy_m IS NOT NULL) AND ${old('strip', 'a')}`,
    [tenantId],
  );
  return { events: del.rowCount ?? 0, positions: strip.rowCount ?? 0 };
}

/** Companies the ledger says were deleted (`tenant.deleted`), of one company or all. */
export async function deletedTenants(
  q: Queryable,
  tenantId: string | null,
): Promise<{ id: string; slug: string; deletedAt: string }[]> {
  const { rows } = await q.query<{ id: string; slug: string; deletedAt: string }>(
    `SELECT DISTINCT ON (entity_id) entity_id::text AS id, data->>'slug' AS slug, to_json(at)#>>'{}' AS "deletedAt"
       FROM security_ledger WHERE kind = 'tenant.deleted' AND ($1::uuid IS NULL OR tenant_id = $1)
      ORDER BY entity_id, at`,
    [tenantId],
  );
  return rows;
}

/*
 * Incremental backups read changed rows from change_log (migrations/0003): older copies of rows that
 * retention deleted or stripped, or of a deleted company, would carry the data into the next backup. Restores
 * only use the newest change of a row, and the ledger repeats these deletions after every restore, so the older
 * copies can go (deleted rows: their inserts and updates; the delete itself stays) or lose the position.
 */

/** change_log copies of the events (and correction requests) retention deleted and stripped in `b`. */
export async function scrubRetentionChanges(q: Queryable, b: RetentionBounds): Promise<number> {
  const old = `tenant_id = $1 AND table_name = 'attendance_events' AND op IN ('I', 'U')
               AND (pk->>'id')::bigint <= $3::bigint AND ("row"->>'occurred_at')::timestamptz < $2::timestamptz`;
  let n = 0;
  if (b.deleteBefore) {
    const d = await q.query(`DELETE FROM change_log WHERE ${old}`, [
      b.tenantId,
      b.deleteBefore,
      b.maxEventId,
    ]);
    n += d.rowCount ?? 0;
  }
  if (b.stripBefore) {
    const u = await q.query(
      `UPDATE change_log SET "row" = "row" || '{"latitude": null, "longitude": null, "accuracy_m": null}'::jsonb
        WHERE ${old} AND ("row"->>'latitude' IS NOT NULL OR "row"->>'longitude' IS NOT NULL
                          OR "row"->>'accuracy_m' IS NOT NULL)`,
      [b.tenantId, b.stripBefore, b.maxEventId],
    );
    n += u.rowCount ?? 0;
  }
  return n;
}

/** change_log copies of a deleted company's rows (its deletes stay, so the next incremental carries them). */
export async function scrubTenantChanges(q: Queryable, tenantId: string): Promise<number> {
  const r = await q.query(
    `DELETE FROM change_log WHERE tenant_id = $1 AND op IN ('I', 'U') AND table_name NOT IN ('audit_log', 'security_ledger')`,
    [tenantId],
  );
  return r.rowCount ?? 0;
}
