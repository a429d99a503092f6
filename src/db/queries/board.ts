import type { Queryable } from '../pool.js';
import { employeeScope, type Viewer } from './scope.js';

/** One active employee on today's board: their latest event of the company's local day, and what today held. */
export interface BoardRow {
  employeeId: string;
  fullName: string;
  employeeNumber: string | null;
  team: string | null;
  /** The latest event today (null: not yet in). */
  lastKind: 'check_in' | 'check_out' | null;
  /** Its local time in the company's zone, HH:MM. */
  lastAt: string | null;
  geofence: string | null;
  site: string | null;
  /** Any event today flagged for review, sent late from a device that was offline, or outside every geofence. */
  flagged: boolean;
  offline: boolean;
  outside: boolean;
}

/**
 * Today's board (the company's local day containing `at`): every active employee the caller may see, with the
 * latest event of the day and what the day's events say. One statement; a manager sees their teams only.
 */
export async function boardRows(
  q: Queryable,
  v: Viewer,
  at: Date,
): Promise<{ day: string; rows: BoardRow[] }> {
  const s = employeeScope(v, 'e', 3);
  const { rows } = await q.query<BoardRow & { day: string }>(
    `WITH d AS (
       SELECT t.time_zone AS tz, (($2::timestamptz) AT TIME ZONE t.time_zone)::date AS day FROM tenants t WHERE t.id = $1),
     w AS (SELECT tz, day, day::timestamp AT TIME ZONE tz AS since, (day + 1)::timestamp AT TIME ZONE tz AS until FROM d)
     SELECT e.id AS "employeeId", e.full_name AS "fullName", e.employee_number AS "employeeNumber", t.name AS team,
            to_char(w.day, 'YYYY-MM-DD') AS day, last.kind AS "lastKind",
            to_char(last.occurred_at AT TIME ZONE w.tz, 'HH24:MI') AS "lastAt", last.geofence, last.site,
            coalesce(agg.flagged, false) AS flagged, coalesce(agg.offline, false) AS offline,
            coalesce(agg.outside, false) AS outside
       FROM w CROSS JOIN employees e
       LEFT JOIN teams t ON t.tenant_id = e.tenant_id AND t.id = e.team_id
       LEFT JOIN LATERAL (
         SELECT a.kind, a.occurred_at, a.geofence, st.name AS site
           FROM attendance_events a LEFT JOIN sites st ON st.tenant_id = a.tenant_id AND st.id = a.site_id
          WHERE a.tenant_id = e.tenant_id AND a.employee_id = e.id AND a.occurred_at >= w.since AND a.occurred_at < w.until
          ORDER BY a.occurred_at DESC, a.id DESC LIMIT 1) last ON true
       LEFT JOIN LATERAL (
         SELECT bool_or(a.flagged) AS flagged, bool_or(a.offline) AS offline, bool_or(a.geofence = 'outside') AS outside
           FROM attendance_events a
          WHERE a.tenant_id = e.tenant_id AND a.employee_id = e.id AND a.occurred_at >= w.since AND a.occurred_at < w.until
       ) agg ON true
      WHERE e.tenant_id = $1 AND e.status = 'active' AND ${s.sql}
      ORDER BY e.full_name, e.id
      LIMIT 2000`,
    [v.tenantId, at, ...s.params],
  );
  const day = rows[0]?.day ?? at.toISOString().slice(0, 10);
  return { day, rows: rows.map(({ day: _day, ...r }) => r) };
}
