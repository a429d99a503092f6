import { workedMinutesByDay } from '../../db/queries/reports.js';
import { listEmployees } from '../people/employees.js';
import { loadSettings } from '../settings/settings.js';
import type { Tx } from '../service.js';
import { splitOvertime } from './payroll.js';
import { checkRange, type Range } from './timesheets.js';

export interface TeamTimesheetLine {
  employeeId: string;
  fullName: string;
  days: { day: string; workedMinutes: number; regularMinutes: number; overtimeMinutes: number }[];
  totals: { workedMinutes: number; regularMinutes: number; overtimeMinutes: number };
}

/**
 * The timesheets of every employee the caller may see (a manager: their teams), for a range: the same minutes
 * and overtime split as `timesheet`, in one query for the company instead of one per employee.
 */
export async function teamTimesheets(
  tx: Tx,
  range: Range,
  employeeId?: string,
): Promise<TeamTimesheetLine[]> {
  checkRange(range);
  const { tenantId } = tx.caller;
  const visible = await listEmployees(tx, { limit: 1000, offset: 0 });
  const chosen = employeeId ? visible.filter((e) => e.id === employeeId) : visible;
  const settings = await loadSettings(tx.q, tenantId);
  const rule = {
    dailyMinutes: settings['overtime.dailyMinutes'],
    multiplierPercent: settings['overtime.multiplierPercent'],
  };
  const byEmployee = new Map<string, TeamTimesheetLine['days']>();
  const rows = await workedMinutesByDay(tx.q, tenantId, range.from, range.to, employeeId ?? null);
  for (const r of rows) {
    let list = byEmployee.get(r.employeeId);
    if (!list) byEmployee.set(r.employeeId, (list = []));
    list.push({ day: r.day, workedMinutes: r.workedMinutes, ...splitOvertime(r.workedMinutes, rule) });
  }
  return chosen.map((e) => {
    const days = byEmployee.get(String(e.id)) ?? [];
    const total = (k: 'workedMinutes' | 'regularMinutes' | 'overtimeMinutes') =>
      days.reduce((s, d) => s + d[k], 0);
    return {
      employeeId: String(e.id),
      fullName: String(e.fullName),
      days,
      totals: {
        workedMinutes: total('workedMinutes'),
        regularMinutes: total('regularMinutes'),
        overtimeMinutes: total('overtimeMinutes'),
      },
    };
  });
}
