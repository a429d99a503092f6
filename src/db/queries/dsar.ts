import type { Queryable } from '../pool.js';
import type { AuditRow } from './audit.js';

/** The person a data subject request is about, found by employee id or by email (employee or user). */
export interface Subject {
  tenantId: string;
  employeeId: string;
  employeeNumber: string | null;
  fullName: string;
  email: string | null;
  status: string;
  hourlyRateMinor: number;
  currency: string;
  timeZone: string;
  teamId: string | null;
  teamName: string | null;
  faceTemplate: boolean;
  faceEnrolledAt: string | null;
  createdAt: string;
}

const SUBJECT_COLUMNS = `e.tenant_id AS "tenantId", e.id AS "employeeId", e.employee_number AS "employeeNumber",
  e.full_name AS "fullName", e.email, e.status, e.hourly_rate_minor::int AS "hourlyRateMinor", e.currency,
  e.time_zone AS "timeZone", e.team_id AS "teamId", t.name AS "teamName",
  e.face_template IS NOT NULL AS "faceTemplate", to_json(e.face_enrolled_at)#>>'{}' AS "faceEnrolledAt",
  to_json(e.created_at)#>>'{}' AS "createdAt"`;

export async function findSubject(
  q: Queryable,
  tenantId: string,
  by: { employeeId?: string; email?: string },
): Promise<Subject[]> {
  const { rows } = await q.query<Subject>(
    `SELECT ${SUBJECT_COLUMNS} FROM employees e
       LEFT JOIN teams t ON t.tenant_id = e.tenant_id AND t.id = e.team_id
      WHERE e.tenant_id = $1
        AND ($2::uuid IS NULL OR e.id = $2)
        AND ($3::text IS NULL OR lower(e.email) = lower($3)
             OR e.id IN (SELECT u.employee_id FROM users u WHERE u.tenant_id = $1 AND u.email = lower($3)))`,
    [tenantId, by.employeeId ?? null, by.email ?? null],
  );
  return rows;
}

export interface SubjectUser {
  id: string;
  email: string;
  displayName: string;
  role: string;
  disabledAt: string | null;
  lastLoginAt: string | null;
  createdAt: string;
}

export async function subjectUsers(
  q: Queryable,
  tenantId: string,
  employeeId: string,
): Promise<SubjectUser[]> {
  const { rows } = await q.query<SubjectUser>(
    `SELECT id, email, display_name AS "displayName", role, to_json(disabled_at)#>>'{}' AS "disabledAt",
            to_json(last_login_at)#>>'{}' AS "lastLoginAt", to_json(created_at)#>>'{}' AS "createdAt"
       FROM users WHERE tenant_id = $1 AND employee_id = $2 ORDER BY created_at, id`,
    [tenantId, employeeId],
  );
  return rows;
}

/** Every user of the company with its role: other staff appear in an export by role only. */
export async function userRoles(q: Queryable, tenantId: string): Promise<Map<string, string>> {
  const { rows } = await q.query<{ id: string; role: string }>(
    'SELECT id, role FROM users WHERE tenant_id = $1',
    [tenantId],
  );
  return new Map(rows.map((r) => [r.id, r.role]));
}

export const EVENT_COLUMNS = [
  'id',
  'kind',
  'occurred_at',
  'recorded_at',
  'method',
  'latitude',
  'longitude',
  'accuracy_m',
  'site',
  'geofence',
  'distance_m',
  'face_score',
  'device_id',
  'flagged',
  'correction_id',
  'offline',
] as const;

/** One page of the subject's events after id `after` (keyset paging: constant memory for any count). */
export async function eventPage(
  q: Queryable,
  tenantId: string,
  employeeId: string,
  after: string,
  limit: number,
): Promise<Record<(typeof EVENT_COLUMNS)[number], unknown>[]> {
  const { rows } = await q.query<Record<(typeof EVENT_COLUMNS)[number], unknown>>(
    `SELECT a.id::text, a.kind, to_json(a.occurred_at)#>>'{}' AS occurred_at,
            to_json(a.recorded_at)#>>'{}' AS recorded_at, a.method, a.latitude, a.longitude, a.accuracy_m,
            s.name AS site, a.geofence, a.distance_m, a.face_score, a.device_id, a.flagged, a.correction_id,
            a.offline
       FROM attendance_events a LEFT JOIN sites s ON s.tenant_id = a.tenant_id AND s.id = a.site_id
      WHERE a.tenant_id = $1 AND a.employee_id = $2 AND a.id > $3::bigint
      ORDER BY a.id LIMIT $4`,
    [tenantId, employeeId, after, limit],
  );
  return rows;
}

/**
 * Worked minutes per local day of the subject (the pairing of the timesheet report: a check-in and the
 * next event when that is a check-out within 24 hours), one page of days after `after` (YYYY-MM-DD).
 */
export async function timesheetPage(
  q: Queryable,
  tenantId: string,
  employeeId: string,
  after: string,
  limit: number,
): Promise<{ day: string; workedMinutes: number }[]> {
  const { rows } = await q.query<{ day: string; workedMinutes: number }>(
    `WITH tz AS (SELECT time_zone FROM tenants WHERE id = $1),
     ev AS (
       SELECT a.kind, a.occurred_at, lead(a.kind) OVER w AS next_kind, lead(a.occurred_at) OVER w AS next_at
         FROM attendance_events a, tz
        WHERE a.tenant_id = $1 AND a.employee_id = $2
          AND a.occurred_at >= (($3::date + 1)::timestamp AT TIME ZONE tz.time_zone) - interval '24 hours'
       WINDOW w AS (ORDER BY a.occurred_at, a.id))
     SELECT to_char((ev.occurred_at AT TIME ZONE tz.time_zone)::date, 'YYYY-MM-DD') AS day,
            floor(sum(extract(epoch FROM ev.next_at - ev.occurred_at)) / 60)::int AS "workedMinutes"
       FROM ev, tz
      WHERE ev.kind = 'check_in' AND ev.next_kind = 'check_out' AND ev.next_at - ev.occurred_at <= interval '24 hours'
        AND (ev.occurred_at AT TIME ZONE tz.time_zone)::date > $3::date
      GROUP BY 1 ORDER BY 1 LIMIT $4`,
    [tenantId, employeeId, after, limit],
  );
  return rows;
}

export async function subjectCorrections(q: Queryable, tenantId: string, employeeId: string) {
  const { rows } = await q.query<Record<string, unknown>>(
    `SELECT id, action, event_id::text AS event_id, proposed_kind,
            to_json(proposed_occurred_at)#>>'{}' AS proposed_occurred_at, reason, status,
            requested_by, decided_by, to_json(decided_at)#>>'{}' AS decided_at, decision_note,
            to_json(created_at)#>>'{}' AS created_at
       FROM correction_requests WHERE tenant_id = $1 AND employee_id = $2 ORDER BY created_at, id`,
    [tenantId, employeeId],
  );
  return rows;
}

/** Audit entries about the person: on their employee or users, or done by their users. */
export async function subjectAuditPage(
  q: Queryable,
  tenantId: string,
  ids: string[],
  afterSeq: number,
  limit: number,
) {
  // `at` as ISO text (the CSV cell), not a Date.
  const { rows } = await q.query<Omit<AuditRow, 'at' | 'tenantId' | 'ipHash'> & { at: string }>(
    `SELECT seq::int, to_json(at)#>>'{}' AS at, actor, action, entity_type AS "entityType",
            entity_id AS "entityId", details
       FROM audit_log
      WHERE tenant_id = $1 AND seq > $3
        AND (entity_id = ANY($2::text[]) OR actor = ANY(SELECT 'user:' || x FROM unnest($2::text[]) x))
      ORDER BY seq LIMIT $4`,
    [tenantId, ids, afterSeq, limit],
  );
  return rows;
}

export async function subjectRequests(q: Queryable, tenantId: string, employeeId: string) {
  const { rows } = await q.query<Record<string, unknown>>(
    `SELECT id, kind, status, source, to_json(received_at)#>>'{}' AS received_at,
            to_json(due_at)#>>'{}' AS due_at, to_json(done_at)#>>'{}' AS done_at
       FROM dsar_requests WHERE tenant_id = $1 AND employee_id = $2 ORDER BY received_at, id`,
    [tenantId, employeeId],
  );
  return rows;
}

/** The newest applied migration, readable by the app role too (through attendux_applied_migrations). */
export async function appliedSchemaVersion(q: Queryable): Promise<string | null> {
  const { rows } = await q.query<{ v: string | null }>(
    'SELECT max(m) AS v FROM attendux_applied_migrations() m',
  );
  return rows[0]?.v ?? null;
}
