import type { Queryable } from '../pool.js';

export interface WorkedDay {
  employeeId: string;
  day: string;
  workedMinutes: number;
}

/**
 * Worked minutes per employee and local day (in the company's time zone): each check-in paired with the next
 * event of the employee when that is a check-out within 24 hours. A shift counts on the day it started.
 * Unpaired events (a forgotten check-out) count nothing; they surface as flagged work for a correction.
 */
export async function workedMinutesByDay(
  q: Queryable,
  tenantId: string,
  from: string,
  to: string,
  employeeId: string | null,
): Promise<WorkedDay[]> {
  const { rows } = await q.query<WorkedDay>(
    `WITH tz AS (SELECT time_zone FROM tenants WHERE id = $1),
     ev AS (
       SELECT a.employee_id, a.kind, a.occurred_at,
              lead(a.kind) OVER w AS next_kind, lead(a.occurred_at) OVER w AS next_at
         FROM attendance_events a, tz
        WHERE a.tenant_id = $1 AND ($4::uuid IS NULL OR a.employee_id = $4)
          AND a.occurred_at >= ($2::date::timestamp AT TIME ZONE tz.time_zone)
          AND a.occurred_at < (($3::date + 2)::timestamp AT TIME ZONE tz.time_zone)
       WINDOW w AS (PARTITION BY a.employee_id ORDER BY a.occurred_at, a.id))
     SELECT ev.employee_id AS "employeeId", to_char((ev.occurred_at AT TIME ZONE tz.time_zone)::date, 'YYYY-MM-DD') AS day,
            floor(sum(extract(epoch FROM ev.next_at - ev.occurred_at)) / 60)::int AS "workedMinutes"
       FROM ev, tz
      WHERE ev.kind = 'check_in' AND ev.next_kind = 'check_out' AND ev.next_at - ev.occurred_at <= interval '24 hours'
        AND (ev.occurred_at AT TIME ZONE tz.time_zone)::date BETWEEN $2::date AND $3::date
      GROUP BY 1, 2 ORDER BY 1, 2`,
    [tenantId, from, to, employeeId],
  );
  return rows;
}

export interface PayrollEmployee {
  id: string;
  employeeNumber: string | null;
  fullName: string;
  rate: number;
  currency: string;
}

/** Every employee of the company in payroll order (by number, then name). */
export async function payrollEmployees(q: Queryable, tenantId: string): Promise<PayrollEmployee[]> {
  const { rows } = await q.query<PayrollEmployee>(
    `SELECT id, employee_number AS "employeeNumber", full_name AS "fullName", hourly_rate_minor AS rate, currency
       FROM employees WHERE tenant_id = $1 ORDER BY employee_number NULLS LAST, full_name, id`,
    [tenantId],
  );
  return rows;
}
