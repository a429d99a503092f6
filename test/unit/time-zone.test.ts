import { describe, expect, it } from 'vitest';
import { addDays, clockIn, dayIn, instantIn, mondayOf } from '../../src/lib/time-zone.js';
import { offlineTime } from '../../src/core/attendance/offline.js';
import { DEFAULT_SETTINGS } from '../../src/core/settings/settings.js';
import { isAttenduxError } from '../../src/errors.js';

describe('wall-clock times in a company zone', () => {
  it('turns a local time into the instant, in winter and in summer', () => {
    expect(instantIn('2026-12-01T09:02', 'Europe/Berlin')?.toISOString()).toBe('2026-12-01T08:02:00.000Z');
    expect(instantIn('2026-07-01T09:02', 'Europe/Berlin')?.toISOString()).toBe('2026-07-01T07:02:00.000Z');
    expect(instantIn('2026-07-01T09:02', 'America/New_York')?.toISOString()).toBe('2026-07-01T13:02:00.000Z');
    expect(instantIn('2026-07-01T09:02', 'UTC')?.toISOString()).toBe('2026-07-01T09:02:00.000Z');
  });

  it('lands a time in the spring-forward gap after the jump, and refuses what is not a time', () => {
    expect(instantIn('2026-03-29T02:30', 'Europe/Berlin')?.toISOString()).toBe('2026-03-29T01:30:00.000Z');
    expect(instantIn('2026-02-30T09:00', 'Europe/Berlin')).toBeUndefined();
    expect(instantIn('yesterday', 'Europe/Berlin')).toBeUndefined();
  });

  it('gives the local day and clock of an instant', () => {
    const late = new Date('2026-11-30T23:30:00Z');
    expect(dayIn(late, 'Europe/Berlin')).toBe('2026-12-01');
    expect(dayIn(late, 'UTC')).toBe('2026-11-30');
    expect(clockIn(late, 'Europe/Berlin')).toBe('00:30');
  });

  it('finds the Monday of a week and adds days across months', () => {
    expect(mondayOf('2026-12-01')).toBe('2026-11-30');
    expect(mondayOf('2026-11-30')).toBe('2026-11-30');
    expect(mondayOf('2026-12-06')).toBe('2026-11-30');
    expect(addDays('2026-11-30', 7)).toBe('2026-12-07');
    expect(addDays('2026-03-01', -1)).toBe('2026-02-28');
  });
});

describe('the time of a check queued offline', () => {
  const now = new Date('2026-12-01T12:00:00Z');
  const refusal = (f: () => unknown) => {
    try {
      f();
    } catch (err) {
      return isAttenduxError(err) ? `${err.code}: ${err.message}` : String(err);
    }
    return 'accepted';
  };
  const at = (ms: number) => new Date(now.getTime() + ms);

  it('is the device time, up to the company limit', () => {
    expect(offlineTime({ offline: true, deviceTime: at(-71 * 3_600_000) }, DEFAULT_SETTINGS, now)).toEqual(
      at(-71 * 3_600_000),
    );
    expect(offlineTime({}, DEFAULT_SETTINGS, now)).toBeUndefined();
    expect(
      refusal(() => offlineTime({ offline: true, deviceTime: at(-73 * 3_600_000) }, DEFAULT_SETTINGS, now)),
    ).toMatch(/^VALIDATION_FAILED: .*more than 72 hours ago/);
    const strict = { ...DEFAULT_SETTINGS, 'attendance.offlineMaxHours': 2 };
    expect(
      refusal(() => offlineTime({ offline: true, deviceTime: at(-3 * 3_600_000) }, strict, now)),
    ).toMatch(/more than 2 hours ago/);
  });

  it('refuses the future beyond a minute of clock drift, and takes a little drift as now', () => {
    expect(
      refusal(() => offlineTime({ offline: true, deviceTime: at(5 * 60_000) }, DEFAULT_SETTINGS, now)),
    ).toMatch(/in the future/);
    expect(offlineTime({ offline: true, deviceTime: at(30_000) }, DEFAULT_SETTINGS, now)).toEqual(now);
  });
});
