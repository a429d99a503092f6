/**
 * Pay arithmetic in integer minor units (cents): no floating-point amounts anywhere. Minutes and rates are
 * integers; the one division rounds half up, once, at the end.
 */
export interface DayMinutes {
  day: string;
  workedMinutes: number;
}

export interface OvertimeRule {
  /** Minutes per day paid at the normal rate; the rest is overtime. */
  dailyMinutes: number;
  /** Overtime pay as a percentage of the hourly rate (150 = time and a half). */
  multiplierPercent: number;
}

export function splitOvertime(
  workedMinutes: number,
  rule: OvertimeRule,
): { regularMinutes: number; overtimeMinutes: number } {
  const regularMinutes = Math.min(workedMinutes, rule.dailyMinutes);
  return { regularMinutes, overtimeMinutes: workedMinutes - regularMinutes };
}

/** Divide non-negative integers, rounding half up, exactly (BigInt: no precision loss on large products). */
function divRoundHalfUp(num: bigint, den: bigint): bigint {
  return (num * 2n + den) / (den * 2n);
}

/**
 * Gross pay for minutes at an hourly rate in minor units:
 * (regular * rate * 100 + overtime * rate * multiplier) / (60 * 100), rounded half up.
 */
export function grossPayMinor(
  regularMinutes: number,
  overtimeMinutes: number,
  hourlyRateMinor: number,
  multiplierPercent: number,
): number {
  for (const [name, v] of Object.entries({
    regularMinutes,
    overtimeMinutes,
    hourlyRateMinor,
    multiplierPercent,
  })) {
    if (!Number.isSafeInteger(v) || v < 0)
      // RangeError kept: a programming contract (callers pass validated integers); payroll.test.ts asserts it.
      throw new RangeError(`${name} must be a non-negative integer, got ${v}`);
  }
  const rate = BigInt(hourlyRateMinor);
  const num =
    BigInt(regularMinutes) * rate * 100n + BigInt(overtimeMinutes) * rate * BigInt(multiplierPercent);
  return Number(divRoundHalfUp(num, 6000n));
}

export interface PayrollLine {
  regularMinutes: number;
  overtimeMinutes: number;
  grossPayMinor: number;
}

/** Overtime is per day; pay is computed once over the period's totals so rounding happens once. */
export function payrollForDays(
  days: readonly DayMinutes[],
  rateMinor: number,
  rule: OvertimeRule,
): PayrollLine {
  let regular = 0;
  let overtime = 0;
  for (const d of days) {
    const s = splitOvertime(d.workedMinutes, rule);
    regular += s.regularMinutes;
    overtime += s.overtimeMinutes;
  }
  return {
    regularMinutes: regular,
    overtimeMinutes: overtime,
    grossPayMinor: grossPayMinor(regular, overtime, rateMinor, rule.multiplierPercent),
  };
}

/** Format minor units for CSV without floats: 123456 with 2 decimals -> "1234.56". */
export function formatMinor(amount: number, decimals = 2): string {
  const neg = amount < 0;
  const s = String(Math.abs(amount)).padStart(decimals + 1, '0');
  const out = decimals ? `${s.slice(0, -decimals)}.${s.slice(-decimals)}` : s;
  return neg ? `-${out}` : out;
}
