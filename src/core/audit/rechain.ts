import type { Pool } from '../../db/pool.js';
import pg from 'pg';
import { appendAudit, SYSTEM_TENANT } from '../../db/queries/audit.js';
import { inTransaction } from '../../db/pool.js';
import { AttenduxError } from '../../errors.js';
import { auditMacFor, type AuditMac } from './mac.js';

export interface RechainResult {
  legacy: number;
  rechained: number;
  /** Breaks of the old unkeyed chain found before re-keying (re-chained anyway only with force). */
  legacyBreaks: { tenantId: string; seq: number }[];
}

/**
 * Re-key entries still under the old unkeyed SHA-256 (mac_version 1): verify the old chain first (so an old
 * edit is not laundered into a valid MAC), then recompute every MAC of those chains under the audit key, in
 * seq order, in one transaction. Runs after `migrate up` and as `audit rechain`.
 */
export async function rechainAudit(admin: Pool, opts: { force?: boolean } = {}): Promise<RechainResult> {
  const mac = auditMacFor(admin);
  return inTransaction(admin, async (c) => {
    const { rows: cnt } = await c.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM audit_log WHERE mac_version = 1',
    );
    const legacy = cnt[0]!.n;
    if (!legacy) return { legacy: 0, rechained: 0, legacyBreaks: [] };
    // Stop writers for the duration: the chains are rewritten from their first entry to their head.
    await c.query('LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE');
    const legacyBreaks = await legacyChainBreaks(c);
    if (legacyBreaks.length && !opts.force) {
      throw new AttenduxError(
        'AUDIT_BROKEN',
        `the old audit chain is already broken (${legacyBreaks.map((b) => `${b.tenantId}#${b.seq}`).join(', ')}); not re-keying it`,
        {
          hint: 'investigate, then `attendux audit rechain --force` to re-key it as it is (the break is then recorded in the audit log)',
        },
      );
    }
    await stageRechain(c, mac);
    const { rows: done } = await c.query<{ n: number }>('SELECT attendux_audit_rechain_apply()::int AS n');
    await appendAudit(c, {
      tenantId: SYSTEM_TENANT,
      actor: 'attendux',
      action: 'audit.rechain',
      entityType: 'audit_log',
      details: { legacy, rechained: done[0]!.n, legacyBreaks },
    });
    return { legacy, rechained: done[0]!.n, legacyBreaks };
  });
}

/** The first entry per chain where the old unkeyed chain (mac_version 1) does not verify. */
async function legacyChainBreaks(c: pg.ClientBase): Promise<{ tenantId: string; seq: number }[]> {
  const { rows: bad } = await c.query<{ tenant_id: string; seq: number }>(
    `WITH chain AS (
         SELECT tenant_id, seq, hash, prev_hash, mac_version,
                attendux_audit_digest(prev_hash, tenant_id, seq, at, actor, action, entity_type, entity_id,
                                      ip_hash, ua_hash, details) AS recomputed,
                lag(hash) OVER (PARTITION BY tenant_id ORDER BY seq) AS prev_actual,
                lag(seq) OVER (PARTITION BY tenant_id ORDER BY seq) AS prev_seq
           FROM audit_log)
       SELECT tenant_id, min(seq) AS seq FROM chain
        WHERE mac_version = 1 AND (hash <> recomputed
           OR (prev_actual IS NOT NULL AND (prev_hash <> prev_actual OR seq <> prev_seq + 1)))
        GROUP BY tenant_id`,
  );
  return bad.map((b) => ({ tenantId: b.tenant_id, seq: b.seq }));
}

/** Recompute every MAC of the chains with legacy entries, in seq order, into the audit_rechain table. */
async function stageRechain(c: pg.ClientBase, mac: AuditMac): Promise<void> {
  await c.query(
    'CREATE TEMPORARY TABLE audit_rechain (tenant_id uuid, seq bigint, prev_hash bytea, hash bytea) ON COMMIT DROP',
  );
  const { rows } = await c.query<{
    tenant_id: string;
    seq: number;
    at_us: number;
    actor: string;
    action: string;
    entity_type: string | null;
    entity_id: string | null;
    ip_hash: string | null;
    ua_hash: string | null;
    details: string;
  }>(
    `SELECT tenant_id::text, seq, (extract(epoch FROM at) * 1000000)::bigint AS at_us, actor, action, entity_type,
              entity_id, ip_hash, ua_hash, details::text AS details
         FROM audit_log WHERE tenant_id IN (SELECT DISTINCT tenant_id FROM audit_log WHERE mac_version = 1)
        ORDER BY tenant_id, seq`,
  );
  let tenant = '';
  let prev: Buffer = Buffer.alloc(0);
  const batch: unknown[][] = [];
  const flush = async () => {
    if (!batch.length) return;
    await c.query(
      `INSERT INTO audit_rechain SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bytea[], $4::bytea[])`,
      [batch.map((b) => b[0]), batch.map((b) => b[1]), batch.map((b) => b[2]), batch.map((b) => b[3])],
    );
    batch.length = 0;
  };
  for (const r of rows) {
    if (r.tenant_id !== tenant) {
      tenant = r.tenant_id;
      prev = Buffer.alloc(0);
    }
    const m = mac.of({
      tenantId: r.tenant_id,
      seq: r.seq,
      atUs: r.at_us,
      actor: r.actor,
      action: r.action,
      entityType: r.entity_type,
      entityId: r.entity_id,
      ipHash: r.ip_hash,
      uaHash: r.ua_hash,
      details: r.details,
      prevMac: prev,
    });
    batch.push([r.tenant_id, r.seq, prev, m]);
    prev = m;
    if (batch.length >= 5000) await flush();
  }
  await flush();
}
