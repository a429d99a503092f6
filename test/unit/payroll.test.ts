import { describe, expect, it } from 'vitest';
import { formatMinor, grossPayMinor, payrollForDays, splitOvertime } from '../../src/core/reports/payroll.js';

const rule = { dailyMinutes: 480, multiplierPercent: 150 };

describe('payroll in integer minor units', () => {
  it('pays an 8-hour day at 20.00/h as 16000 minor units', () => {
    expect(grossPayMinor(480, 0, 2000, 150)).toBe(16000);
  });

  it('pays overtime at the multiplier', () => {
    // 150 min at 20.00/h * 1.5 = 75.00
    expect(grossPayMinor(0, 150, 2000, 150)).toBe(7500);
  });

  it('rounds half up once, at the end', () => {
    // 1 minute at 0.30/h = 0.5 minor units -> 1; 1 minute at 0.29/h = 0.483 -> 0.
    expect(grossPayMinor(1, 0, 30, 150)).toBe(1);
    expect(grossPayMinor(1, 0, 29, 150)).toBe(0);
    // Three separate minutes at 0.30/h would round to 3 if rounded each; once: 1.5 -> 2.
    expect(
      payrollForDays(
        [
          { day: 'a', workedMinutes: 1 },
          { day: 'b', workedMinutes: 1 },
          { day: 'c', workedMinutes: 1 },
        ],
        30,
        rule,
      ).grossPayMinor,
    ).toBe(2);
  });

  it('stays exact where floating point would drift', () => {
    // 0.1 + 0.2 style drift: 7 min at 1.03/h * 1.0 summed over many days.
    const days = Array.from({ length: 1000 }, (_, i) => ({ day: String(i), workedMinutes: 7 }));
    expect(payrollForDays(days, 103, { dailyMinutes: 480, multiplierPercent: 100 }).grossPayMinor).toBe(
      12017,
    );
  });

  it('handles very large amounts without losing precision', () => {
    expect(grossPayMinor(60 * 1_000_000, 0, 99_999_999, 100)).toBe(99_999_999 * 1_000_000);
  });

  it('computes overtime per day, not over the period', () => {
    const r = payrollForDays(
      [
        { day: '1', workedMinutes: 600 },
        { day: '2', workedMinutes: 300 },
      ],
      2000,
      rule,
    );
    expect(r).toEqual({ regularMinutes: 780, overtimeMinutes: 120, grossPayMinor: 26000 + 6000 });
  });

  it('splits a day at the daily threshold', () => {
    expect(splitOvertime(479, rule)).toEqual({ regularMinutes: 479, overtimeMinutes: 0 });
    expect(splitOvertime(481, rule)).toEqual({ regularMinutes: 480, overtimeMinutes: 1 });
  });

  it('refuses fractional or negative inputs', () => {
    expect(() => grossPayMinor(1.5, 0, 100, 100)).toThrow(RangeError);
    expect(() => grossPayMinor(1, 0, -100, 100)).toThrow(RangeError);
  });

  it('formats minor units without floats', () => {
    expect(formatMinor(35500)).toBe('355.00');
    expect(formatMinor(5)).toBe('0.05');
    expect(formatMinor(-1234)).toBe('-12.34');
    expect(formatMinor(1500, 0)).toBe('1500');
    expect(formatMinor(1, 3)).toBe('0.001');
  });
});
