import type { Queryable } from '../pool.js';
import { auditWhere, type AuditFilter, type AuditRow } from './audit.js';

/** One entry of a page of the audit log with what its MAC covers, for GET /audit. */
export interface AuditPageRow extends Omit<AuditRow, 'tenantId' | 'ipHash'> {
  hash: string;
  at_us: number;
  ip_hash: string | null;
  ua_hash: string | null;
  details_text: string;
  prev_hash: Buffer;
  mac: Buffer;
}

/** Newest first. */
export async function auditPage(q: Queryable, f: AuditFilter, limit: number): Promise<AuditPageRow[]> {
  const w = auditWhere(f);
  const { rows } = await q.query<AuditPageRow>(
    `SELECT seq, at, actor, action, entity_type AS "entityType", entity_id AS "entityId", details,
            encode(hash, 'hex') AS hash, (extract(epoch FROM at) * 1000000)::bigint AS at_us, ip_hash, ua_hash,
            details::text AS details_text, prev_hash, hash AS mac
       FROM audit_log WHERE ${w.sql}
      ORDER BY seq DESC LIMIT $${w.values.length + 1}`,
    [...w.values, limit],
  );
  return rows;
}
