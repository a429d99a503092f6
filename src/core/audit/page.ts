import { auditPage, type AuditPageRow } from '../../db/queries/audit-page.js';
import type { AuditFilter, AuditRow } from '../../db/queries/audit.js';
import type { Tx } from '../service.js';
import { auditMacFor } from './mac.js';

export type AuditPageEntry = Omit<AuditRow, 'tenantId' | 'ipHash'> & { hash: string };

/**
 * A page of the caller's company's audit log (GET /audit). verified: every entry of the page has a valid MAC
 * under the install's audit key, and entries with consecutive seq on the page link to each other. The whole
 * chain: `attendux audit verify`.
 */
export async function readAuditPage(
  tx: Tx,
  filter: Omit<AuditFilter, 'tenantId'>,
  limit: number,
): Promise<{ entries: AuditPageEntry[]; verified: boolean }> {
  const tenantId = tx.caller.tenantId;
  const rows = await auditPage(tx.q, { ...filter, tenantId }, limit);
  const mac = auditMacFor(tx.q);
  const intact = (r: AuditPageRow) =>
    mac
      .of({
        tenantId,
        seq: r.seq,
        atUs: r.at_us,
        actor: r.actor,
        action: r.action,
        entityType: r.entityType,
        entityId: r.entityId,
        ipHash: r.ip_hash,
        uaHash: r.ua_hash,
        details: r.details_text,
        prevMac: r.prev_hash,
      })
      .equals(r.mac);
  const verified = rows.every((r, i) => {
    const older = rows[i + 1];
    return intact(r) && !(older && older.seq === r.seq - 1 && !older.mac.equals(r.prev_hash));
  });
  const entries = rows.map((r) => ({
    seq: r.seq,
    at: r.at,
    actor: r.actor,
    action: r.action,
    entityType: r.entityType,
    entityId: r.entityId,
    details: r.details,
    hash: r.hash,
  }));
  return { entries, verified };
}
