import { AttenduxError } from '../../errors.js';
import { inTransaction, type Pool, type Queryable } from '../../db/pool.js';
import { appendAudit, SYSTEM_TENANT } from '../../db/queries/audit.js';
import {
  auditHead,
  deleteTenantRows,
  insertLedgerEntry,
  scrubTenantChanges,
  tenantRowCounts,
} from '../../db/queries/retention.js';
import { requireTenant } from '../accounts/tenants.js';
import { TENANT_DELETED_KIND } from './ledger.js';

/** `attendux tenant delete`, the preview: the company and its rows per table. */
export interface TenantDeletePreview {
  tenantId: string;
  slug: string;
  name: string;
  rows: Record<string, number>;
  total: number;
}

export interface TenantDeleteResult extends TenantDeletePreview {
  dryRun: boolean;
  /** The company's audit chain, kept: its head as recorded in the install-wide chain. */
  auditChain: { seq: number; mac: string } | null;
}

export async function previewTenantDelete(q: Queryable, ref: string): Promise<TenantDeletePreview> {
  const t = await requireTenant(q, ref);
  const rows = await tenantRowCounts(q, t.id);
  return {
    tenantId: t.id,
    slug: t.slug,
    name: t.name,
    rows,
    total: Object.values(rows).reduce((a, b) => a + b, 0),
  };
}

/**
 * Delete every row of a company in one transaction: its audit log is kept (the chain stays verifiable, and
 * its last entry records the deletion), the install-wide chain records the deletion with the company's chain
 * head, and the security ledger records `tenant.deleted` so that every restore deletes it again.
 * `confirmSlug` must be the company's slug (the CLI's typed confirmation).
 */
export async function deleteTenant(
  pool: Pool,
  opts: { tenant: string; confirmSlug: string; actor: string },
): Promise<TenantDeleteResult> {
  return inTransaction(pool, async (c) => {
    const t = await requireTenant(c, opts.tenant);
    if (opts.confirmSlug !== t.slug)
      throw new AttenduxError('ABORTED', `the confirmation "${opts.confirmSlug}" is not the slug ${t.slug}`, {
        hint: 'nothing was deleted; type the company slug exactly',
      });
    await c.query('SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE', [t.id]);
    const preview = await previewTenantDelete(c, t.id);
    const details = { slug: t.slug, name: t.name, rows: preview.rows };
    const entry = { actor: opts.actor, action: 'tenant.delete', entityType: 'tenant', entityId: t.id };
    await appendAudit(c, { ...entry, tenantId: t.id, details });
    const deleted = await deleteTenantRows(c, t.id);
    await scrubTenantChanges(c, t.id);
    const left = Object.entries(await tenantRowCounts(c, t.id)).filter(([, n]) => n > 0);
    if (left.length)
      throw new AttenduxError(
        'INTERNAL',
        `company ${t.slug} still has rows in ${left.map(([k]) => k).join(', ')}`,
      );
    await insertLedgerEntry(c, {
      tenantId: t.id,
      kind: TENANT_DELETED_KIND,
      entityId: t.id,
      data: { slug: t.slug, rows: deleted },
    });
    const head = await auditHead(c, t.id);
    await appendAudit(c, { ...entry, tenantId: SYSTEM_TENANT, details: { ...details, auditChain: head } });
    return { ...preview, dryRun: false, auditChain: head };
  });
}
