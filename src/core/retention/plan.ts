import type { Queryable } from '../../db/pool.js';
import { listTenants, type Tenant } from '../../db/queries/tenants.js';
import {
  countRetention,
  maxEventId,
  type RetentionBounds,
  type RetentionCounts,
} from '../../db/queries/retention.js';
import { loadSettings } from '../settings/settings.js';
import { requireTenant } from '../accounts/tenants.js';

/**
 * `attendux retention apply`, the plan: per company, which attendance events are deleted (older than
 * `retention.attendanceYears`, unless the payroll legal hold still needs them) and which lose their GPS
 * position (older than `retention.locationDays`; the geofence verdict stays). The plan is a value: --dry-run
 * and the prompt print it, and apply (./apply.ts) executes exactly it, checking counts and id fingerprints.
 */
export interface TenantRetentionPlan extends RetentionBounds, RetentionCounts {
  slug: string;
  attendanceYears: number | null;
  locationDays: number | null;
  /** Payroll records are kept this many years (the DSAR legal hold); attendance is their basis. */
  legalHoldYears: number | null;
}

export interface RetentionPlan {
  /** The time the cutoffs are computed from. */
  at: string;
  tenants: TenantRetentionPlan[];
  totals: { deleteEvents: number; deleteCorrections: number; stripEvents: number; heldEvents: number };
}

function yearsBefore(now: Date, years: number): Date {
  const d = new Date(now);
  d.setUTCFullYear(d.getUTCFullYear() - years);
  return d;
}

export function isEmptyPlan(t: TenantRetentionPlan): boolean {
  return t.deleteEvents === 0 && t.stripEvents === 0;
}

async function planTenant(q: Queryable, tenant: Tenant, now: Date): Promise<TenantRetentionPlan> {
  const s = await loadSettings(q, tenant.id);
  const attendanceYears = s['retention.attendanceYears'];
  const locationDays = s['retention.locationDays'];
  // The DSAR legal hold of payroll records (src/core/dsar): attendance is what payroll is computed from.
  const hold = s['dsar.holdYears'] || null;
  const retain = attendanceYears ? yearsBefore(now, attendanceYears) : null;
  // Under legal hold, only what is older than both the retention and the hold goes.
  const del = retain && hold ? new Date(Math.min(+retain, +yearsBefore(now, hold))) : retain;
  const strip = locationDays ? new Date(+now - locationDays * 86_400_000) : null;
  const bounds: RetentionBounds = {
    tenantId: tenant.id,
    deleteBefore: del?.toISOString() ?? null,
    stripBefore: strip?.toISOString() ?? null,
    retainBefore: retain?.toISOString() ?? null,
    maxEventId: await maxEventId(q, tenant.id),
  };
  return {
    slug: tenant.slug,
    attendanceYears,
    locationDays,
    legalHoldYears: hold,
    ...bounds,
    ...(await countRetention(q, bounds)),
  };
}

export async function planRetention(
  q: Queryable,
  opts: { tenant?: string; now?: Date } = {},
): Promise<RetentionPlan> {
  const now = opts.now ?? new Date();
  const tenants = opts.tenant ? [await requireTenant(q, opts.tenant)] : await listTenants(q);
  const plans: TenantRetentionPlan[] = [];
  for (const t of tenants) plans.push(await planTenant(q, t, now));
  const sum = (k: keyof RetentionPlan['totals']) => plans.reduce((n, p) => n + p[k], 0);
  return {
    at: now.toISOString(),
    tenants: plans,
    totals: {
      deleteEvents: sum('deleteEvents'),
      deleteCorrections: sum('deleteCorrections'),
      stripEvents: sum('stripEvents'),
      heldEvents: sum('heldEvents'),
    },
  };
}

/** The plan in words: what the prompt and --dry-run show. */
export function describePlan(p: RetentionPlan): string[] {
  const lines: string[] = [];
  for (const t of p.tenants) {
    if (!t.attendanceYears && !t.locationDays) {
      lines.push(`${t.slug}: no retention set (retention.attendanceYears, retention.locationDays)`);
      continue;
    }
    const parts = [
      t.deleteBefore
        ? `delete ${t.deleteEvents} event(s) before ${t.deleteBefore} and ${t.deleteCorrections} correction request(s) about them`
        : 'delete nothing',
      t.stripBefore
        ? `drop the GPS position of ${t.stripEvents} event(s) before ${t.stripBefore}`
        : 'keep every position',
    ];
    if (t.heldEvents)
      parts.push(
        `keep ${t.heldEvents} event(s) past retention under the ${t.legalHoldYears}-year payroll legal hold`,
      );
    lines.push(`${t.slug}: ${parts.join('; ')}`);
  }
  return lines.length ? lines : ['no companies'];
}
