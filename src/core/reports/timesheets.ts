import { stringify } from 'csv-stringify/sync';
import { canSeeEmployee } from '../../db/queries/scope.js';
import { payrollEmployees, workedMinutesByDay } from '../../db/queries/reports.js';
import { findTenant } from '../../db/queries/tenants.js';
import { loadSettings } from '../settings/settings.js';
import { forbidden, invalid, notFound, type Tx } from '../service.js';
import { formatMinor, payrollForDays, splitOvertime, type DayMinutes, type OvertimeRule } from './payroll.js';

export const MAX_DAYS = 93;

/** A report's date range (YYYY-MM-DD, both included), at most MAX_DAYS long. */
export interface Range {
  from: string;
  to: string;
}

export function checkRange({ from, to }: Range): void {
  const days = (Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / 86_400_000;
  if (days < 0) throw invalid('query.to', 'before from', 'to is before from');
  if (days >= MAX_DAYS)
    throw invalid('query.to', 'range too long', `the range is limited to ${MAX_DAYS} days`);
}

async function overtimeRule(tx: Tx): Promise<OvertimeRule> {
  const settings = await loadSettings(tx.q, tx.caller.tenantId);
  return {
    dailyMinutes: settings['overtime.dailyMinutes'],
    multiplierPercent: settings['overtime.multiplierPercent'],
  };
}

const sum = <T>(list: readonly T[], f: (x: T) => number) => list.reduce((s, x) => s + f(x), 0);

/** Worked, regular and overtime minutes per local day of one employee (the caller's own by default). */
export async function timesheet(tx: Tx, range: Range, requested: string | undefined) {
  checkRange(range);
  const { caller } = tx;
  const employeeId = requested ?? caller.employeeId;
  if (!employeeId) throw forbidden('name employeeId (your user is not linked to an employee)');
  if (!(await canSeeEmployee(tx.q, caller, employeeId))) throw notFound('employee');
  const rule = await overtimeRule(tx);
  const rows = await workedMinutesByDay(tx.q, caller.tenantId, range.from, range.to, employeeId);
  const days = rows.map((r) => ({
    day: r.day,
    workedMinutes: r.workedMinutes,
    ...splitOvertime(r.workedMinutes, rule),
  }));
  const tenant = await findTenant(tx.q, caller.tenantId);
  return {
    employeeId,
    from: range.from,
    to: range.to,
    timeZone: tenant?.timeZone,
    days,
    totals: {
      workedMinutes: sum(days, (d) => d.workedMinutes),
      regularMinutes: sum(days, (d) => d.regularMinutes),
      overtimeMinutes: sum(days, (d) => d.overtimeMinutes),
    },
  };
}

export interface PayrollExportLine {
  employeeId: string;
  employeeNumber: string | null;
  fullName: string;
  regularMinutes: number;
  overtimeMinutes: number;
  hourlyRateMinor: number;
  overtimeMultiplierPercent: number;
  grossPayMinor: number;
  currency: string;
}

/** Pay lines of every employee for the range, audited as an export (it leaves the system). */
export async function payrollExport(tx: Tx, range: Range, format: 'json' | 'csv') {
  checkRange(range);
  const { tenantId } = tx.caller;
  const rule = await overtimeRule(tx);
  const emps = await payrollEmployees(tx.q, tenantId);
  const byEmployee = new Map<string, DayMinutes[]>();
  for (const r of await workedMinutesByDay(tx.q, tenantId, range.from, range.to, null)) {
    let list = byEmployee.get(r.employeeId);
    if (!list) byEmployee.set(r.employeeId, (list = []));
    list.push({ day: r.day, workedMinutes: r.workedMinutes });
  }
  const lines: PayrollExportLine[] = emps.map((e) => {
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
  await tx.audit('payroll.export', 'payroll', null, { ...range, format, employees: lines.length });
  return { from: range.from, to: range.to, overtime: rule, employees: lines };
}

const PAYROLL_CSV_COLUMNS = [
  'employee_id',
  'employee_number',
  'full_name',
  'regular_minutes',
  'overtime_minutes',
  'hourly_rate_minor',
  'overtime_multiplier_percent',
  'gross_pay_minor',
  'gross_pay',
  'currency',
];

/**
 * The payroll lines as CSV (RFC 4180, CRLF). Cells a spreadsheet would run as a formula (=, +, -, @, tab)
 * get a leading apostrophe (escape_formulas): names and numbers come from users.
 */
export function payrollCsv(lines: readonly PayrollExportLine[]): string {
  return stringify(
    lines.map((l) => [
      l.employeeId,
      l.employeeNumber ?? '',
      l.fullName,
      l.regularMinutes,
      l.overtimeMinutes,
      l.hourlyRateMinor,
      l.overtimeMultiplierPercent,
      l.grossPayMinor,
      formatMinor(l.grossPayMinor, currencyDecimals(l.currency)),
      l.currency,
    ]),
    {
      header: true,
      columns: PAYROLL_CSV_COLUMNS,
      record_delimiter: 'windows',
      escape_formulas: true,
      // A bare LF inside a cell would otherwise pass unquoted (the record delimiter is CRLF).
      quoted_match: /[\r\n]/,
    },
  );
}

function currencyDecimals(currency: string): number {
  try {
    return (
      new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits ??
      2
    );
  } catch {
    // a currency code Intl does not know: two decimals
    return 2;
  }
}
