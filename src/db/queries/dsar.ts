import type { Queryable } from '../pool.js';

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
            s.name AS site, a.geofence, a.distance_m, a.face_score, a.device_id, a.flagged, a.correction_id
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
  const { rows } = await q.query<{
    seq: number;
    at: string;
    actor: string;
    action: string;
    entityType: string | null;
    entityId: string | null;
    details: Record<string, unknown>;
  }>(
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

/** What an erasure does, as data: the same for `dsar erase` and for a restore re-applying it. */
export interface ErasureSpec {
  tenantId: string;
  employeeId: string;
  /** "Erased <pseudonym>" replaces the name; erased-<pseudonym>@erased.invalid the login email. */
  pseudonym: string;
  /** Attendance rows from this time on are kept under the legal hold (pseudonymised); older ones deleted. */
  keepSince: string;
}

/** How many rows each step of the erasure touches, counted without changing anything (the plan). */
export async function erasureCounts(q: Queryable, s: ErasureSpec) {
  const { rows } = await q.query<{
    eventsDelete: number;
    eventsKeep: number;
    eventsPosition: number;
    correctionsDelete: number;
    correctionsKeep: number;
    users: number;
    apiKeys: number;
    teamManagers: number;
    throttles: number;
    face: boolean;
    requests: number;
  }>(
    `WITH u AS (SELECT id FROM users WHERE tenant_id = $1 AND employee_id = $2),
          ev AS (SELECT id, occurred_at, latitude, longitude, accuracy_m, distance_m, face_score, device_id
                   FROM attendance_events WHERE tenant_id = $1 AND employee_id = $2)
     SELECT (SELECT count(*)::int FROM ev WHERE occurred_at < $3) AS "eventsDelete",
            (SELECT count(*)::int FROM ev WHERE occurred_at >= $3) AS "eventsKeep",
            (SELECT count(*)::int FROM ev WHERE occurred_at >= $3 AND num_nonnulls(latitude, longitude, accuracy_m,
                    distance_m, face_score, device_id) > 0) AS "eventsPosition",
            (SELECT count(*)::int FROM correction_requests c WHERE c.tenant_id = $1 AND (c.employee_id = $2 OR c.event_id IN
                    (SELECT id FROM ev WHERE occurred_at < $3)) AND (c.created_at < $3 OR c.event_id IN
                    (SELECT id FROM ev WHERE occurred_at < $3))) AS "correctionsDelete",
            (SELECT count(*)::int FROM correction_requests c WHERE c.tenant_id = $1 AND c.employee_id = $2
                    AND c.created_at >= $3
                    AND (c.event_id IS NULL OR c.event_id NOT IN (SELECT id FROM ev WHERE occurred_at < $3)))
              AS "correctionsKeep",
            (SELECT count(*)::int FROM u) AS users,
            (SELECT count(*)::int FROM api_keys k WHERE k.tenant_id = $1 AND k.revoked_at IS NULL
                    AND k.created_by IN (SELECT 'user:' || id FROM u)) AS "apiKeys",
            (SELECT count(*)::int FROM team_managers m WHERE m.tenant_id = $1 AND m.user_id IN (SELECT id FROM u))
              AS "teamManagers",
            (SELECT count(*)::int FROM login_throttle t WHERE t.tenant_id = $1 AND t.user_id IN (SELECT id FROM u))
              AS throttles,
            coalesce((SELECT face_template IS NOT NULL FROM employees WHERE tenant_id = $1 AND id = $2), false) AS face,
            (SELECT count(*)::int FROM dsar_requests WHERE tenant_id = $1 AND employee_id = $2) AS requests`,
    [s.tenantId, s.employeeId, s.keepSince],
  );
  return rows[0]!;
}

/** The fields attendance rows lose (the geofence verdict stays). */
const EVENT_SCRUB = `'{"latitude": null, "longitude": null, "accuracy_m": null, "distance_m": null,
  "face_score": null, "device_id": null}'::jsonb`;

/**
 * Execute an erasure in the caller's transaction. Idempotent (a restore re-applies it on a database that
 * may already hold its effect) and a no-op when the employee is not there (a backup older than the person).
 * Statements in order: dependants before what they reference.
 */
export const ERASURE_STATEMENTS: readonly { sql: string; args: (s: ErasureSpec) => unknown[] }[] = [
  {
    sql: `SELECT 1 FROM employees WHERE tenant_id = $1 AND id = $2 FOR UPDATE`,
    args: (s) => [s.tenantId, s.employeeId],
  },
  {
    sql: `DELETE FROM correction_requests c WHERE c.tenant_id = $1
      AND (c.employee_id = $2 OR c.event_id IN (SELECT id FROM attendance_events WHERE tenant_id = $1 AND employee_id = $2))
      AND (c.created_at < $3 OR c.event_id IN
           (SELECT id FROM attendance_events WHERE tenant_id = $1 AND employee_id = $2 AND occurred_at < $3))`,
    args: (s) => [s.tenantId, s.employeeId, s.keepSince],
  },
  {
    sql: `UPDATE correction_requests SET reason = '[erased]', decision_note = NULL
    WHERE tenant_id = $1 AND employee_id = $2 AND (reason <> '[erased]' OR decision_note IS NOT NULL)`,
    args: (s) => [s.tenantId, s.employeeId],
  },
  {
    sql: `DELETE FROM attendance_events WHERE tenant_id = $1 AND employee_id = $2 AND occurred_at < $3`,
    args: (s) => [s.tenantId, s.employeeId, s.keepSince],
  },
  {
    sql: `UPDATE attendance_events SET latitude = NULL, longitude = NULL, accuracy_m = NULL, distance_m = NULL,
          face_score = NULL, device_id = NULL
    WHERE tenant_id = $1 AND employee_id = $2
      AND num_nonnulls(latitude, longitude, accuracy_m, distance_m, face_score, device_id) > 0`,
    args: (s) => [s.tenantId, s.employeeId],
  },
  {
    sql: `UPDATE dsar_requests SET reason = NULL, extend_reason = CASE WHEN extend_reason IS NULL THEN NULL ELSE '[erased]' END
    WHERE tenant_id = $1 AND employee_id = $2 AND (reason IS NOT NULL OR extend_reason <> '[erased]')`,
    args: (s) => [s.tenantId, s.employeeId],
  },
  {
    sql: `DELETE FROM team_managers WHERE tenant_id = $1
      AND user_id IN (SELECT id FROM users WHERE tenant_id = $1 AND employee_id = $2)`,
    args: (s) => [s.tenantId, s.employeeId],
  },
  {
    sql: `DELETE FROM login_throttle WHERE tenant_id = $1
      AND user_id IN (SELECT id FROM users WHERE tenant_id = $1 AND employee_id = $2)`,
    args: (s) => [s.tenantId, s.employeeId],
  },
  {
    sql: `UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1 AND revoked_at IS NULL
      AND created_by IN (SELECT 'user:' || id FROM users WHERE tenant_id = $1 AND employee_id = $2)`,
    args: (s) => [s.tenantId, s.employeeId],
  },
  {
    sql: `UPDATE users SET email = 'erased-' || $3 || '@erased.invalid', display_name = '', password_hash = NULL,
          disabled_at = coalesce(disabled_at, now()), session_epoch = session_epoch + 1, failed_logins = 0,
          locked_until = NULL, last_login_at = NULL
    WHERE tenant_id = $1 AND employee_id = $2`,
    args: (s) => [s.tenantId, s.employeeId, s.pseudonym],
  },
  {
    sql: `UPDATE employees SET full_name = 'Erased ' || $3, employee_number = NULL, email = NULL, face_template = NULL,
          face_key_id = NULL, face_enrolled_at = NULL, status = 'inactive', updated_at = now()
    WHERE tenant_id = $1 AND id = $2 AND full_name IS DISTINCT FROM 'Erased ' || $3`,
    args: (s) => [s.tenantId, s.employeeId, s.pseudonym],
  },

  // Incremental backups read changed rows from change_log: older copies of the subject's rows would carry
  // the erased values into the next backup. Each older copy takes the newest state of its row (the erased
  // one); copies of deleted rows lose the erased fields.

  {
    sql: `WITH mine AS (
     SELECT id, table_name, pk FROM change_log
      WHERE tenant_id = $1 AND "row" IS NOT NULL AND (
            (table_name = 'employees' AND pk->>'id' = $2::uuid::text)
         OR (table_name IN ('attendance_events', 'correction_requests', 'dsar_requests') AND "row"->>'employee_id' = $2::uuid::text)
         OR (table_name = 'users' AND "row"->>'employee_id' = $2::uuid::text)
         OR (table_name IN ('team_managers', 'login_throttle') AND pk->>'user_id' IN
               (SELECT id::text FROM users WHERE tenant_id = $1 AND employee_id = $2)))),
   newest AS (
     SELECT DISTINCT ON (c.table_name, c.pk) c.table_name, c.pk, c.id, c."row" FROM change_log c
       JOIN (SELECT DISTINCT table_name, pk FROM mine) k ON k.table_name = c.table_name AND k.pk = c.pk
      ORDER BY c.table_name, c.pk, c.id DESC)
   UPDATE change_log o
      SET "row" = CASE
            WHEN n."row" IS NOT NULL THEN n."row"
            WHEN o.table_name = 'attendance_events' THEN o."row" || ${EVENT_SCRUB}
            WHEN o.table_name = 'correction_requests' THEN o."row" || '{"reason": "[erased]", "decision_note": null}'::jsonb
            ELSE o."row" END
     FROM mine m JOIN newest n ON n.table_name = m.table_name AND n.pk = m.pk
    WHERE o.id = m.id AND o.id <> n.id`,
    args: (s) => [s.tenantId, s.employeeId],
  },
];

/** Run ERASURE_STATEMENTS; returns the rows each changed. */
export async function executeErasure(q: Queryable, s: ErasureSpec): Promise<number[]> {
  const counts: number[] = [];
  for (const st of ERASURE_STATEMENTS) counts.push((await q.query(st.sql, st.args(s))).rowCount ?? 0);
  return counts;
}

export async function insertErasureLedger(
  q: Queryable,
  e: { tenantId: string; entityId: string; data: Record<string, unknown> },
): Promise<void> {
  await q.query(
    `INSERT INTO security_ledger (tenant_id, kind, entity_id, data) VALUES ($1, 'dsar.erasure', $2, $3::jsonb)`,
    [e.tenantId, e.entityId, JSON.stringify(e.data)],
  );
}

export interface DsarRequest {
  id: string;
  tenantId: string;
  tenant: string;
  kind: 'export' | 'erasure';
  status: 'open' | 'done' | 'rejected';
  employeeId: string;
  source: 'cli' | 'api';
  receivedAt: string;
  dueAt: string;
  extendedAt: string | null;
  handledBy: string | null;
  doneAt: string | null;
}

const REQUEST_COLUMNS = `r.id, r.tenant_id AS "tenantId", t.slug AS tenant, r.kind, r.status, r.employee_id AS "employeeId",
  r.source, to_json(r.received_at)#>>'{}' AS "receivedAt", to_json(r.due_at)#>>'{}' AS "dueAt",
  to_json(r.extended_at)#>>'{}' AS "extendedAt", r.handled_by AS "handledBy", to_json(r.done_at)#>>'{}' AS "doneAt"`;

/** File a request: due one month after it was received (GDPR Art. 12(3)). `done` files and closes it. */
export async function insertRequest(
  q: Queryable,
  r: {
    id?: string;
    tenantId: string;
    kind: 'export' | 'erasure';
    employeeId: string;
    source: 'cli' | 'api';
    reason?: string | null;
    handledBy?: string | null;
    done?: boolean;
    now: Date;
  },
): Promise<DsarRequest> {
  const { rows } = await q.query<DsarRequest>(
    `WITH r AS (
       INSERT INTO dsar_requests (id, tenant_id, kind, employee_id, source, reason, handled_by, received_at, due_at,
                                  status, done_at)
       VALUES (coalesce($9::uuid, gen_random_uuid()), $1, $2, $3, $4, $5, $6, $7, $7::timestamptz + interval '1 month',
               CASE WHEN $8 THEN 'done' ELSE 'open' END, CASE WHEN $8 THEN $7::timestamptz END)
       RETURNING *)
     SELECT ${REQUEST_COLUMNS} FROM r JOIN tenants t ON t.id = r.tenant_id`,
    [
      r.tenantId,
      r.kind,
      r.employeeId,
      r.source,
      r.reason ?? null,
      r.handledBy ?? null,
      r.now,
      r.done ?? false,
      r.id ?? null,
    ],
  );
  return rows[0]!;
}

/** The oldest open request of this kind for the employee (what a CLI export or erasure answers). */
export async function openRequestFor(
  q: Queryable,
  tenantId: string,
  employeeId: string,
  kind: 'export' | 'erasure',
  lock = true,
): Promise<string | undefined> {
  const { rows } = await q.query<{ id: string }>(
    `SELECT id FROM dsar_requests WHERE tenant_id = $1 AND employee_id = $2 AND kind = $3 AND status = 'open'
      ORDER BY received_at, id LIMIT 1 ${lock ? 'FOR UPDATE' : ''}`,
    [tenantId, employeeId, kind],
  );
  return rows[0]?.id;
}

export async function closeRequest(
  q: Queryable,
  r: { tenantId: string; id: string; handledBy: string; now: Date; receipt?: unknown; receiptText?: string },
): Promise<void> {
  await q.query(
    `UPDATE dsar_requests SET status = 'done', done_at = $3, handled_by = $4, receipt = $5::jsonb, receipt_text = $6
      WHERE tenant_id = $1 AND id = $2`,
    [
      r.tenantId,
      r.id,
      r.now,
      r.handledBy,
      r.receipt === undefined ? null : JSON.stringify(r.receipt),
      r.receiptText ?? null,
    ],
  );
}

export async function listRequests(
  q: Queryable,
  f: { tenantId?: string; status?: 'open' | 'done' | 'overdue'; now: Date },
): Promise<DsarRequest[]> {
  const { rows } = await q.query<DsarRequest>(
    `SELECT ${REQUEST_COLUMNS} FROM dsar_requests r JOIN tenants t ON t.id = r.tenant_id
      WHERE ($1::uuid IS NULL OR r.tenant_id = $1)
        AND ($2::text IS NULL OR ($2 = 'done' AND r.status <> 'open') OR ($2 = 'open' AND r.status = 'open')
             OR ($2 = 'overdue' AND r.status = 'open' AND r.due_at < $3))
      ORDER BY r.due_at, r.id`,
    [f.tenantId ?? null, f.status ?? null, f.now],
  );
  return rows;
}

export async function findRequest(
  q: Queryable,
  id: string,
): Promise<(DsarRequest & { extendReason: string | null }) | undefined> {
  const { rows } = await q.query<DsarRequest & { extendReason: string | null }>(
    `SELECT ${REQUEST_COLUMNS}, r.extend_reason AS "extendReason" FROM dsar_requests r
       JOIN tenants t ON t.id = r.tenant_id WHERE r.id = $1 FOR UPDATE OF r`,
    [id],
  );
  return rows[0];
}

/** Extend the due date by two months (Art. 12(3): once, with the reasons told to the requester). */
export async function extendRequest(
  q: Queryable,
  r: { tenantId: string; id: string; reason: string; now: Date },
): Promise<void> {
  await q.query(
    `UPDATE dsar_requests SET due_at = due_at + interval '2 months', extended_at = $3, extend_reason = $4
      WHERE tenant_id = $1 AND id = $2 AND extended_at IS NULL AND status = 'open'`,
    [r.tenantId, r.id, r.now, r.reason],
  );
}

/** The erasures recorded in the ledger (of one company with tenantId), oldest first. */
export async function ledgerErasures(q: Queryable, tenantId: string | null): Promise<ErasureSpec[]> {
  const { rows } = await q.query<ErasureSpec>(
    `SELECT tenant_id::text AS "tenantId", data->>'employeeId' AS "employeeId", data->>'pseudonym' AS pseudonym,
            data->>'keepSince' AS "keepSince"
       FROM security_ledger WHERE kind = 'dsar.erasure' AND ($1::uuid IS NULL OR tenant_id = $1) ORDER BY at, id`,
    [tenantId],
  );
  return rows;
}
