import type { Install } from '../install.js';
import { appendAudit, SYSTEM_TENANT } from '../../db/queries/audit.js';
import { inTransaction } from '../../db/pool.js';
import { AttenduxError } from '../../errors.js';
import { appendCheckpoints, signCheckpoint, type Checkpoint } from './checkpoints.js';

export function parseDuration(text: string): number {
  const m = /^(\d+)\s*(d|h|w|y)?$/.exec(text.trim());
  if (!m) throw new AttenduxError('USAGE', `not a duration: "${text}" (use e.g. 365d, 12w, 1y)`);
  const n = Number(m[1]);
  const days = { d: n, w: n * 7, y: n * 365, h: n / 24 }[(m[2] ?? 'd') as 'd' | 'w' | 'y' | 'h'];
  return days;
}

export interface PurgeResult {
  dryRun: boolean;
  olderThanDays: number;
  cutoff: string;
  tenants: { tenantId: string; deleted: number; throughSeq: number | null }[];
  deleted: number;
}

/**
 * `audit purge`: per chain, delete the entries older than the retention through attendux_audit_purge (the
 * only deletion path the database allows) and append a signed purge record (the last deleted seq and MAC)
 * in the same transaction, so the remaining chain still verifies from its first entry.
 */
export async function purgeAudit(
  install: Install,
  opts: { olderThanDays: number; dryRun?: boolean; actor: string },
): Promise<PurgeResult> {
  const cutoff = new Date(Date.now() - opts.olderThanDays * 86_400_000);
  const interval = `${Math.round(opts.olderThanDays * 86_400)} seconds`;
  const { rows: tenants } = await install.admin.query<{
    tenant_id: string;
    n: number;
    through: number | null;
  }>(
    // exactly what attendux_audit_purge deletes: the prefix before the first young entry, never the newest
    `WITH t AS (SELECT tenant_id, max(seq) AS head, min(seq) FILTER (WHERE at >= now() - $1::interval) AS young
                  FROM audit_log GROUP BY tenant_id)
     SELECT t.tenant_id, (least(coalesce(t.young, t.head + 1), t.head) - min(a.seq))::int AS n, NULL::bigint AS through
       FROM t JOIN audit_log a USING (tenant_id) GROUP BY t.tenant_id, t.head, t.young ORDER BY t.tenant_id`,
    [interval],
  );
  const out: PurgeResult['tenants'] = [];
  const cps: Checkpoint[] = [];
  for (const t of tenants) {
    if (t.n <= 0) continue;
    if (opts.dryRun) {
      out.push({ tenantId: t.tenant_id, deleted: t.n, throughSeq: null });
      continue;
    }
    const done = await purgeChain(install, t.tenant_id, interval, cutoff, opts);
    if (done) {
      cps.push(done.cp);
      out.push(done.result);
    }
  }
  if (!opts.dryRun) {
    await appendCheckpoints(install.loaded.config.dataDir, cps);
    // The purge itself is recorded install-wide too, whatever chains it touched.
    await appendAudit(install.admin, {
      tenantId: SYSTEM_TENANT,
      actor: opts.actor,
      action: 'audit.purge_run',
      entityType: 'audit_log',
      details: {
        olderThanDays: opts.olderThanDays,
        chains: out.length,
        deleted: out.reduce((a, x) => a + x.deleted, 0),
      },
    });
  }
  return {
    dryRun: !!opts.dryRun,
    olderThanDays: opts.olderThanDays,
    cutoff: cutoff.toISOString(),
    tenants: out,
    deleted: out.reduce((a, x) => a + x.deleted, 0),
  };
}

/** One chain's purge, in its own transaction: the deletion and the signed record of what it deleted. */
async function purgeChain(
  install: Install,
  tenantId: string,
  interval: string,
  cutoff: Date,
  opts: { olderThanDays: number; actor: string },
): Promise<{ cp: Checkpoint; result: PurgeResult['tenants'][number] } | null> {
  return inTransaction(install.admin, async (c) => {
    const { rows } = await c.query<{
      deleted: number;
      through_seq: number | null;
      through_mac: Buffer | null;
    }>('SELECT deleted::int, through_seq, through_mac FROM attendux_audit_purge($1, $2::interval)', [
      tenantId,
      interval,
    ]);
    const r = rows[0]!;
    if (!r.deleted || r.through_seq === null || !r.through_mac) return null;
    const cp = signCheckpoint(install.secrets.signingKey, {
      tenantId: tenantId,
      seq: r.through_seq,
      mac: r.through_mac.toString('hex'),
      at: new Date().toISOString(),
      reason: 'purge',
    });
    await appendAudit(c, {
      tenantId: tenantId,
      actor: opts.actor,
      action: 'audit.purge',
      entityType: 'audit_log',
      details: {
        deleted: r.deleted,
        olderThanDays: opts.olderThanDays,
        cutoff: cutoff.toISOString(),
        checkpoint: cp,
      },
    });
    return { cp, result: { tenantId, deleted: r.deleted, throughSeq: r.through_seq } };
  });
}
