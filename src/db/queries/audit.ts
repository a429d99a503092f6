import pg from 'pg';
import { inTransaction, type Queryable, type Statement } from '../pool.js';
import { auditMacFor } from '../../crypto/audit-mac.js';

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

/**
 * Append one entry to its company's chain, MAC'd by attendux under the audit key (migrations/0007): the
 * database locks the chain and says what the entry links to (attendux_audit_next), attendux computes the MAC,
 * the database checks the link and stores it (attendux_audit_append). Both in the caller's transaction; a
 * pool gets a transaction of its own.
 */
export async function appendAudit(q: Queryable, e: AuditEntry): Promise<{ seq: number; mac: Buffer }> {
  if (q instanceof pg.Pool) return inTransaction(q, (c) => appendAudit(c, e));
  const tenantId = e.tenantId.toLowerCase();
  // Named: prepared once per connection, they skip parsing and planning on the server's hot path.
  const { rows } = await q.query<AuditNext>({
    name: 'attendux_audit_next',
    text: 'SELECT seq, at_us, prev_hash, details FROM attendux_audit_next($1, $2::jsonb)',
    values: [tenantId, JSON.stringify(e.details ?? {})],
  });
  return appendNext(q, e, rows[0]!);
}

/** What attendux_audit_next says an entry links to (its first half). */
export interface AuditNext {
  seq: number;
  at_us: number;
  prev_hash: Buffer;
  details: string;
}

/**
 * The second half of an append, from a first half already read in this transaction (appendAudit, or the
 * kiosk's statement that returns it with the event: attendux_record_checkin_next, migrations/0010).
 */
export async function appendNext(
  q: Queryable,
  e: AuditEntry,
  next: AuditNext,
  /** How the append is run: the kiosk's runs it with its COMMIT (inTransactionFrom's commitWith). */
  run: (s: Statement) => Promise<unknown> = (s) => q.query(s),
): Promise<{ seq: number; mac: Buffer }> {
  const mac = auditMacFor(q);
  const tenantId = e.tenantId.toLowerCase();
  const fields = {
    tenantId,
    seq: next.seq,
    atUs: next.at_us,
    actor: e.actor,
    action: e.action,
    entityType: e.entityType ?? null,
    entityId: e.entityId ?? null,
    ipHash: e.ipHash ?? null,
    uaHash: e.uaHash ?? null,
    details: next.details,
    prevMac: next.prev_hash,
  };
  const m = mac.of(fields);
  await run({
    name: 'attendux_audit_append',
    text: 'SELECT attendux_audit_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12)',
    values: [
      tenantId,
      next.seq,
      next.at_us,
      fields.actor,
      fields.action,
      fields.entityType,
      fields.entityId,
      fields.ipHash,
      fields.uaHash,
      next.details,
      next.prev_hash,
      m,
    ],
  });
  return { seq: next.seq, mac: m };
}

export interface AuditRow {
  tenantId: string;
  seq: number;
  at: Date;
  actor: string;
  action: string;
  entityType: string | null;
  entityId: string | null;
  ipHash: string | null;
  details: Record<string, unknown>;
}

export interface AuditFilter {
  tenantId?: string;
  actor?: string;
  action?: string;
  entity?: string;
  since?: Date;
  until?: Date;
  /** Paging: entries strictly older than this (tenant's seq when one tenant is asked for). */
  beforeSeq?: number;
  limit?: number;
}

/** `entity` matches the entity type (`user`) or type:id (`user:…`). */
export function auditWhere(f: AuditFilter, first = 1): { sql: string; values: unknown[] } {
  const [et, ...rest] = (f.entity ?? '').split(':');
  const values = [
    f.tenantId ?? null,
    f.actor ?? null,
    f.action ?? null,
    f.entity ? et : null,
    f.entity && rest.length ? rest.join(':') : null,
    f.since ?? null,
    f.until ?? null,
    f.beforeSeq ?? null,
  ];
  const p = (i: number) => `$${first + i}`;
  const sql = `(${p(0)}::uuid IS NULL OR tenant_id = ${p(0)}) AND (${p(1)}::text IS NULL OR actor = ${p(1)})
     AND (${p(2)}::text IS NULL OR action = ${p(2)} OR (right(${p(2)}, 1) = '*' AND action LIKE rtrim(${p(2)}, '*') || '%'))
     AND (${p(3)}::text IS NULL OR entity_type = ${p(3)}) AND (${p(4)}::text IS NULL OR entity_id = ${p(4)})
     AND (${p(5)}::timestamptz IS NULL OR at >= ${p(5)}) AND (${p(6)}::timestamptz IS NULL OR at < ${p(6)})
     AND (${p(7)}::bigint IS NULL OR seq < ${p(7)})`;
  return { sql, values };
}
