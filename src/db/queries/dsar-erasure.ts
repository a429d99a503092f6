import type { Queryable } from '../pool.js';

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
