import { AttenduxError } from '../../errors.js';
import type { Queryable } from '../../db/pool.js';
import { deletedTenants, deleteTenantRows, reapplyRetention } from '../../db/queries/retention.js';

/** The ledger kind (src/core/ledger) that keeps a deleted company deleted through every restore. */
export const TENANT_DELETED_KIND = 'tenant.deleted';

/**
 * The ledger's data kinds, re-applied by every restore (src/core/ledger, applyLedger), whatever the restored
 * point: a deletion is final. Every retention run is repeated (./retention), every deleted company deleted
 * again. A company restore (`tenantId`) of a deleted company refuses: there is nothing to give back, and the
 * caller's transaction rolls back.
 */
export async function reapplyDataLedger(
  c: Queryable,
  tenantId: string | null,
): Promise<Record<string, number>> {
  const gone = await deletedTenants(c, tenantId);
  if (tenantId && gone.length)
    throw new AttenduxError(
      'TENANT_DELETED',
      `company ${gone[0]!.slug} was deleted at ${gone[0]!.deletedAt}; a restore does not bring it back`,
      {
        hint: 'a deleted company stays deleted (`attendux tenant delete` records it in the security ledger)',
      },
    );
  const retention = await reapplyRetention(c, tenantId);
  let rows = 0;
  for (const t of gone) rows += await deleteTenantRows(c, t.id);
  return {
    'attendance.retention': retention.events + retention.positions,
    [TENANT_DELETED_KIND]: rows,
  };
}
