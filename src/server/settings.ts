import { z } from 'zod';
import type { Queryable } from '../db/pool.js';

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
  const { rows } = await q.query<{ s: Record<string, unknown> | null }>(
    'SELECT jsonb_object_agg(key, value) AS s FROM tenant_settings WHERE tenant_id = $1',
    [tenantId],
  );
  return mergeSettings(rows[0]?.s);
}
