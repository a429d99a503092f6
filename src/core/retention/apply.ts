import { AttenduxError } from '../../errors.js';
import { inTransaction, type Pool } from '../../db/pool.js';
import { appendAudit } from '../../db/queries/audit.js';
import {
  deleteOldEvents,
  insertLedgerEntry,
  scrubRetentionChanges,
  stripOldPositions,
} from '../../db/queries/retention.js';
import { isEmptyPlan, type RetentionPlan, type TenantRetentionPlan } from './plan.js';

/** The ledger kind (src/core/ledger) that makes every restore repeat a retention run. */
export const RETENTION_LEDGER_KIND = 'attendance.retention';

export interface TenantRetentionResult {
  tenantId: string;
  slug: string;
  deletedEvents: number;
  deletedFingerprint: string;
  deletedCorrections: number;
  strippedEvents: number;
  strippedFingerprint: string;
}

export interface RetentionResult {
  at: string;
  dryRun: boolean;
  plan: RetentionPlan;
  tenants: TenantRetentionResult[];
}

function mismatch(t: TenantRetentionPlan, what: string, planned: number, done: number): AttenduxError {
  return new AttenduxError(
    'CONFLICT',
    `retention for ${t.slug}: the plan said ${planned} ${what}, applying it touched ${done}; nothing was changed for ${t.slug}`,
    { hint: 'the events changed since the plan was made: run `attendux retention apply` again' },
  );
}

/**
 * Execute one company's part of the plan in one transaction: delete, strip, check that exactly the planned
 * events were touched (count and id fingerprint, else roll back), write the ledger entry and the audit entry.
 */
async function applyTenant(
  pool: Pool,
  t: TenantRetentionPlan,
  actor: string,
): Promise<TenantRetentionResult> {
  return inTransaction(pool, async (c) => {
    const del = await deleteOldEvents(c, t);
    if (del.events !== t.deleteEvents || del.fingerprint !== t.deleteFingerprint)
      throw mismatch(t, 'event deletion(s)', t.deleteEvents, del.events);
    if (del.corrections !== t.deleteCorrections)
      throw mismatch(t, 'correction request deletion(s)', t.deleteCorrections, del.corrections);
    const strip = await stripOldPositions(c, t);
    if (strip.events !== t.stripEvents || strip.fingerprint !== t.stripFingerprint)
      throw mismatch(t, 'position removal(s)', t.stripEvents, strip.events);
    await scrubRetentionChanges(c, t);
    const details = {
      deleteBefore: t.deleteBefore,
      stripBefore: t.stripBefore,
      maxEventId: t.maxEventId,
      deletedEvents: del.events,
      deletedCorrections: del.corrections,
      strippedEvents: strip.events,
      heldEvents: t.heldEvents,
      legalHoldYears: t.legalHoldYears,
    };
    await insertLedgerEntry(c, {
      tenantId: t.tenantId,
      kind: RETENTION_LEDGER_KIND,
      entityId: t.tenantId,
      data: details,
    });
    await appendAudit(c, {
      tenantId: t.tenantId,
      actor,
      action: 'retention.apply',
      entityType: 'tenant',
      entityId: t.tenantId,
      details,
    });
    return {
      tenantId: t.tenantId,
      slug: t.slug,
      deletedEvents: del.events,
      deletedFingerprint: del.fingerprint,
      deletedCorrections: del.corrections,
      strippedEvents: strip.events,
      strippedFingerprint: strip.fingerprint,
    };
  });
}

/**
 * Apply a plan made by planRetention: one transaction per company with something to do, in the plan's order.
 * A company that fails is rolled back and stops the run (the companies before it stay applied; the next run
 * plans afresh). Companies with nothing to do are not touched, audited or recorded.
 */
export async function applyRetention(
  pool: Pool,
  plan: RetentionPlan,
  actor: string,
): Promise<RetentionResult> {
  const done: TenantRetentionResult[] = [];
  for (const t of plan.tenants) if (!isEmptyPlan(t)) done.push(await applyTenant(pool, t, actor));
  return { at: plan.at, dryRun: false, plan, tenants: done };
}
