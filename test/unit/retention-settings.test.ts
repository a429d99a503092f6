import { describe, expect, it } from 'vitest';
import { DEFAULT_SETTINGS, mergeSettings, SettingsPatchSchema } from '../../src/core/settings/settings.js';

describe('retention settings', () => {
  it('default to keeping everything', () => {
    expect(DEFAULT_SETTINGS['retention.attendanceYears']).toBeNull();
    expect(DEFAULT_SETTINGS['retention.locationDays']).toBeNull();
  });

  it('are validated like the other settings: whole numbers in range, or null', () => {
    const ok = (v: unknown) => SettingsPatchSchema.safeParse(v).success;
    expect(ok({ 'retention.attendanceYears': 3, 'retention.locationDays': 90 })).toBe(true);
    expect(ok({ 'retention.attendanceYears': null, 'retention.locationDays': null })).toBe(true);
    for (const bad of [0, -1, 1.5, '3', 101]) expect(ok({ 'retention.attendanceYears': bad })).toBe(false);
    for (const bad of [0, 36501, 2.5, true]) expect(ok({ 'retention.locationDays': bad })).toBe(false);
  });

  it('a stored value that no longer validates falls back to the default', () => {
    expect(mergeSettings({ 'retention.locationDays': 0 })['retention.locationDays']).toBeNull();
    expect(mergeSettings({ 'retention.locationDays': 30 })['retention.locationDays']).toBe(30);
  });
});
