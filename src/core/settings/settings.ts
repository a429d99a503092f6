import { z } from 'zod';
import type { Queryable } from '../../db/pool.js';
import { storedSettings, upsertSetting } from '../../db/queries/settings.js';
import { invalid, type Tx } from '../service.js';

/**
 * Per-company settings, stored one row per key in tenant_settings. Unknown keys are refused; every key has a
 * default so a new company works without any row.
 */
export const SETTINGS_SHAPE = {
  /** What happens to a check-in outside every site: rejected (422), flagged for review, or not checked. */
  'geofence.mode': z.enum(['reject', 'flag', 'off']),
  /** Refuse check-ins without a GPS position when sites exist (else they are flagged). */
  'geofence.requirePosition': z.boolean(),
  /** Cosine similarity a face vector must reach against the enrolled template. */
  'face.threshold': z.number().min(0).max(1),
  /** Require a matching face vector on every check-in and check-out. */
  'face.required': z.boolean(),
  /** Minutes per day at the normal rate; beyond is overtime. */
  'overtime.dailyMinutes': z.number().int().min(0).max(1440),
  /** Overtime pay in percent of the hourly rate. */
  'overtime.multiplierPercent': z.number().int().min(100).max(1000),
  /** `retention apply` deletes attendance events older than this many years (not under legal hold); null keeps them. */
  'retention.attendanceYears': z.number().int().min(1).max(100).nullable(),
  /** `retention apply` drops the GPS position of events older than this many days, keeping the verdict; null keeps it. */
  'retention.locationDays': z.number().int().min(1).max(36500).nullable(),
  /** Legal hold of payroll records (hours, pay) in years: a DSAR erasure keeps them that long, pseudonymised. */
  'dsar.holdYears': z.number().int().min(0).max(30),
  /** Check-ins queued offline (device time) are accepted up to this many hours after they happened. */
  'attendance.offlineMaxHours': z.number().int().min(1).max(720),
} as const;

export type SettingKey = keyof typeof SETTINGS_SHAPE;
export type TenantSettings = { [K in SettingKey]: z.infer<(typeof SETTINGS_SHAPE)[K]> };

export const DEFAULT_SETTINGS: TenantSettings = {
  'geofence.mode': 'flag',
  'geofence.requirePosition': false,
  'face.threshold': 0.85,
  'face.required': false,
  'overtime.dailyMinutes': 480,
  'overtime.multiplierPercent': 150,
  'retention.attendanceYears': null,
  'retention.locationDays': null,
  'dsar.holdYears': 6,
  'attendance.offlineMaxHours': 72,
};

export const SettingsPatchSchema = z.strictObject(
  Object.fromEntries(Object.entries(SETTINGS_SHAPE).map(([k, v]) => [k, v.optional()])) as {
    [K in SettingKey]: z.ZodOptional<(typeof SETTINGS_SHAPE)[K]>;
  },
);

/** Merge stored rows over the defaults; a stored value that no longer validates falls back to the default. */
export function mergeSettings(stored: Record<string, unknown> | null | undefined): TenantSettings {
  const out: Record<string, unknown> = { ...DEFAULT_SETTINGS };
  for (const [k, v] of Object.entries(stored ?? {})) {
    const schema = (SETTINGS_SHAPE as Record<string, z.ZodType>)[k];
    if (schema?.safeParse(v).success) out[k] = v;
  }
  return out as TenantSettings;
}

export async function loadSettings(q: Queryable, tenantId: string): Promise<TenantSettings> {
  return mergeSettings(await storedSettings(q, tenantId));
}

export type SettingsPatch = z.infer<typeof SettingsPatchSchema>;

/**
 * Change some settings of the caller's company, audited with each value's before and after. The caller
 * triggers the config backup after commit (a settings change is configuration worth keeping).
 */
export async function updateSettings(tx: Tx, patch: SettingsPatch): Promise<TenantSettings> {
  const { tenantId, actor } = tx.caller;
  const entries = Object.entries(patch).filter(([, v]) => v !== undefined);
  if (!entries.length) throw invalid('body', 'empty', 'no setting to change');
  const before = await loadSettings(tx.q, tenantId);
  for (const [key, value] of entries) await upsertSetting(tx.q, tenantId, key, value, actor);
  await tx.audit('settings.update', 'tenant_settings', tenantId, {
    changes: Object.fromEntries(entries.map(([k, v]) => [k, { from: before[k as SettingKey], to: v }])),
  });
  return loadSettings(tx.q, tenantId);
}
