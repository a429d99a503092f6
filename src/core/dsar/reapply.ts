import type { Queryable } from '../../db/pool.js';
import { executeErasure, ledgerErasures } from '../../db/queries/dsar-erasure.js';

/**
 * Re-apply every erasure of the security ledger (of one company with tenantId) inside the caller's
 * transaction: what a restore does before it hands a database back, so that a backup made before an
 * erasure never brings the person back. Every entry ever recorded is applied, whatever the restored point
 * (an erasure is final). Returns how many erasures changed something.
 */
export async function reapplyErasures(c: Queryable, tenantId: string | null): Promise<number> {
  let changed = 0;
  for (const spec of await ledgerErasures(c, tenantId)) {
    const counts = await executeErasure(c, spec);
    // The first statement only locks the employee row; the rest say whether anything was still there.
    if (counts.slice(1).some((n) => n > 0)) changed++;
  }
  return changed;
}
