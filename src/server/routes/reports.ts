import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { PoolClient } from '../../db/pool.js';
import { formatMinor, payrollForDays, splitOvertime, type DayMinutes } from '../../core/reports/payroll.js';
import { forbidden, httpError, notFound } from '../errors.js';
import { isoDate, parse, uuid } from '../validate.js';
import { ALL_ROLES, defineRoute } from '../route.js';
import { canSeeEmployee } from '../scope.js';
import { loadSettings } from '../../core/settings/settings.js';
import type { ServerDeps } from '../deps.js';

const MAX_DAYS = 93;

const RangeQuery = {
  from: isoDate,
  to: isoDate,
};

function checkRange(from: string, to: string): void {
  const days = (Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / 86_400_000;
  if (days < 0)
    throw httpError('VALIDATION_FAILED', 'to is before from', {
      fields: [{ field: 'query.to', problem: 'before from' }],
    });
  if (days >= MAX_DAYS)
    throw httpError('VALIDATION_FAILED', `the range is limited to ${MAX_DAYS} days`, {
      fields: [{ field: 'query.to', problem: 'range too long' }],
    });
}

/**
 * Worked minutes per employee and local day (in the company's time zone): each check-in paired with the next
 * event of the employee when that is a check-out within 24 hours. A shift counts on the day it started.
 * Unpaired events (a forgotten check-out) count nothing; they surface as flagged work for a correction.
 */
export async function workedMinutesByDay(
  c: PoolClient,
  tenantId: string,
  from: string,
  to: string,
  employeeId: string | null,
): Promise<{ employeeId: string; day: string; workedMinutes: number }[]> {
  const { rows } = await c.query<{ employeeId: string; day: string; workedMinutes: number }>(
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

export function reportRoutes(app: FastifyInstance, deps: ServerDeps) {
  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/timesheets',
    roles: ALL_ROLES,
    scope: 'read',
    async handler({ c, p, req }) {
      const q = parse(z.strictObject({ ...RangeQuery, employeeId: uuid.optional() }), req.query, 'query');
      checkRange(q.from, q.to);
      const employeeId = q.employeeId ?? p.employeeId;
      if (!employeeId) throw forbidden('name employeeId (your user is not linked to an employee)');
      if (!(await canSeeEmployee(c, p, employeeId))) throw notFound('employee');
      const settings = await loadSettings(c, p.tenantId);
      const rule = {
        dailyMinutes: settings['overtime.dailyMinutes'],
        multiplierPercent: settings['overtime.multiplierPercent'],
      };
      const rows = await workedMinutesByDay(c, p.tenantId, q.from, q.to, employeeId);
      const days = rows.map((r) => ({
        day: r.day,
        workedMinutes: r.workedMinutes,
        ...splitOvertime(r.workedMinutes, rule),
      }));
      const tz = await c.query<{ time_zone: string }>('SELECT time_zone FROM tenants WHERE id = $1', [
        p.tenantId,
      ]);
      return {
        employeeId,
        from: q.from,
        to: q.to,
        timeZone: tz.rows[0]?.time_zone,
        days,
        totals: {
          workedMinutes: days.reduce((s, d) => s + d.workedMinutes, 0),
          regularMinutes: days.reduce((s, d) => s + d.regularMinutes, 0),
          overtimeMinutes: days.reduce((s, d) => s + d.overtimeMinutes, 0),
        },
      };
    },
  });

  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/payroll/export',
    roles: ['owner', 'admin', 'hr'],
    scope: 'read',
    async handler({ c, p, req, reply, audit }) {
      const q = parse(
        z.strictObject({ ...RangeQuery, format: z.enum(['json', 'csv']).default('json') }),
        req.query,
        'query',
      );
      checkRange(q.from, q.to);
      const settings = await loadSettings(c, p.tenantId);
      const rule = {
        dailyMinutes: settings['overtime.dailyMinutes'],
        multiplierPercent: settings['overtime.multiplierPercent'],
      };
      const emps = await c.query<{
        id: string;
        employeeNumber: string | null;
        fullName: string;
        rate: number;
        currency: string;
      }>(
        `SELECT id, employee_number AS "employeeNumber", full_name AS "fullName", hourly_rate_minor AS rate, currency
           FROM employees WHERE tenant_id = $1 ORDER BY employee_number NULLS LAST, full_name, id`,
        [p.tenantId],
      );
      const byEmployee = new Map<string, DayMinutes[]>();
      for (const r of await workedMinutesByDay(c, p.tenantId, q.from, q.to, null)) {
        let list = byEmployee.get(r.employeeId);
        if (!list) byEmployee.set(r.employeeId, (list = []));
        list.push({ day: r.day, workedMinutes: r.workedMinutes });
      }
      const lines = emps.rows.map((e) => {
        const pay = payrollForDays(byEmployee.get(e.id) ?? [], e.rate, rule);
        return {
          employeeId: e.id,
          employeeNumber: e.employeeNumber,
          fullName: e.fullName,
          regularMinutes: pay.regularMinutes,
          overtimeMinutes: pay.overtimeMinutes,
          hourlyRateMinor: e.rate,
          overtimeMultiplierPercent: rule.multiplierPercent,
          grossPayMinor: pay.grossPayMinor,
          currency: e.currency,
        };
      });
      await audit('payroll.export', 'payroll', null, {
        from: q.from,
        to: q.to,
        format: q.format,
        employees: lines.length,
      });
      if (q.format === 'csv') {
        const esc = (v: string) =>
          /[",\n\r]/.test(v) || /^[=+\-@\t]/.test(v)
            ? `"${v.replace(/^([=+\-@\t])/, "'$1").replace(/"/g, '""')}"`
            : v;
        const out = [
          'employee_id,employee_number,full_name,regular_minutes,overtime_minutes,hourly_rate_minor,overtime_multiplier_percent,gross_pay_minor,gross_pay,currency',
          ...lines.map((l) =>
            [
              l.employeeId,
              esc(l.employeeNumber ?? ''),
              esc(l.fullName),
              l.regularMinutes,
              l.overtimeMinutes,
              l.hourlyRateMinor,
              l.overtimeMultiplierPercent,
              l.grossPayMinor,
              formatMinor(l.grossPayMinor, currencyDecimals(l.currency)),
              l.currency,
            ].join(','),
          ),
        ];
        reply
          .type('text/csv; charset=utf-8')
          .header('content-disposition', `attachment; filename="payroll-${q.from}-${q.to}.csv"`);
        return out.join('\r\n') + '\r\n';
      }
      return { from: q.from, to: q.to, overtime: rule, employees: lines };
    },
  });
}

function currencyDecimals(currency: string): number {
  try {
    return (
      new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits ??
      2
    );
  } catch {
    return 2;
  }
}
