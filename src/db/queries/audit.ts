import type { Queryable } from '../pool.js';

/** Install-wide events (a company created from the CLI, a backup run) are chained under this tenant id. */
export const SYSTEM_TENANT = '00000000-0000-0000-0000-000000000000';

export interface AuditEntry {
  tenantId: string;
  actor: string;
  action: string;
  entityType?: string;
  entityId?: string;
  ipHash?: string | null;
  uaHash?: string | null;
  /** Never secrets, passwords, keys or face vectors: ids and what changed. */
  details?: Record<string, unknown>;
}

/** Append one entry; the database assigns seq, time and the chain hash (trigger attendux_audit_chain). */
export async function appendAudit(q: Queryable, e: AuditEntry): Promise<{ seq: number }> {
  // Named: prepared once per connection, it skips parsing and planning on the server's hot path.
  const { rows } = await q.query<{ seq: number }>({
    name: 'attendux_append_audit',
    text: `INSERT INTO audit_log (tenant_id, actor, action, entity_type, entity_id, ip_hash, ua_hash, details, prev_hash, hash)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '\\x', '\\x') RETURNING seq`,
    values: [
      e.tenantId,
      e.actor,
      e.action,
      e.entityType ?? null,
      e.entityId ?? null,
      e.ipHash ?? null,
      e.uaHash ?? null,
      JSON.stringify(e.details ?? {}),
    ],
  });
  return rows[0]!;
}

export interface AuditRow {
  tenantId: string;
  seq: number;
  at: Date;
  actor: string;
  action: string;
  entityType: string | null;
  entityId: string | null;
  details: Record<string, unknown>;
}

export async function listAudit(
  q: Queryable,
  filter: { tenantId?: string; action?: string; limit?: number } = {},
): Promise<AuditRow[]> {
  const { rows } = await q.query<AuditRow>(
    `SELECT tenant_id AS "tenantId", seq, at, actor, action, entity_type AS "entityType",
            entity_id AS "entityId", details
       FROM audit_log
      WHERE ($1::uuid IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR action = $2)
      ORDER BY at DESC, seq DESC
      LIMIT $3`,
    [filter.tenantId ?? null, filter.action ?? null, filter.limit ?? 100],
  );
  return rows;
}

/**
 * Recompute every chain link in the database and return the first break per company, if any. The oldest
 * remaining entry of a chain is trusted as its anchor (retention may have purged what came before it).
 */
export async function verifyAuditChains(
  q: Queryable,
): Promise<{ checked: number; broken: { tenantId: string; seq: number }[] }> {
  const { rows } = await q.query<{ checked: number; tenant_id: string | null; seq: number | null }>(
    `WITH chain AS (
       SELECT tenant_id, seq, hash, prev_hash,
              attendux_audit_digest(prev_hash, tenant_id, seq, at, actor, action, entity_type, entity_id,
                                    ip_hash, ua_hash, details) AS recomputed,
              lag(hash) OVER (PARTITION BY tenant_id ORDER BY seq) AS prev_actual,
              lag(seq) OVER (PARTITION BY tenant_id ORDER BY seq) AS prev_seq
         FROM audit_log),
     bad AS (
       SELECT tenant_id, min(seq) AS seq FROM chain
        WHERE hash <> recomputed
           OR (prev_actual IS NOT NULL AND (prev_hash <> prev_actual OR seq <> prev_seq + 1))
        GROUP BY tenant_id)
     SELECT (SELECT count(*)::int FROM audit_log) AS checked, bad.tenant_id, bad.seq
       FROM (SELECT 1) one LEFT JOIN bad ON true`,
  );
  return {
    checked: rows[0]?.checked ?? 0,
    broken: rows.filter((r) => r.tenant_id !== null).map((r) => ({ tenantId: r.tenant_id!, seq: r.seq! })),
  };
}
