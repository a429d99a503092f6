import { connectClient, type Queryable } from '../../db/pool.js';
import { verifyAuditChains } from '../audit/service.js';
import { registerAuditKey } from '../audit/mac.js';
import { verificationSummary, type AuditVerification } from '../audit/backup.js';
import type { SourcedCheckpoint } from '../audit/checkpoints.js';
import type { OpenedChain } from './chain.js';
import type { LoadResult } from './load.js';
import type { RestorePlan } from './plan.js';
import { LEDGER_KINDS, LEDGER_MARGIN_MS, type LedgerEntry } from '../ledger/index.js';

export interface DrillCheck {
  name: string;
  ok: boolean;
  detail: string;
  /** audit-chains only: the verification itself, which the drill record keeps (issue 13). */
  audit?: AuditVerification;
}

interface AuditAnchors {
  publicKey: string;
  checkpoints: SourcedCheckpoint[];
  auditKey: string;
}

/**
 * Check a freshly restored database against what the chain promised: rows per table as the full's manifest
 * counts them, change rows as each incremental's manifest counts them, every foreign key present and
 * validated, the newest attendance event inside the expected window, every audit chain intact, and the app
 * role reading through row-level security (nothing without a company, exactly its rows with one). The
 * drill adds `security-ledger` (checkLedgerEffects) on top.
 */
export async function checkRestored(
  url: string,
  appUrl: string,
  chain: OpenedChain,
  plan: RestorePlan,
  load: LoadResult,
  opts: {
    maxEventAgeHours?: number;
    audit?: AuditAnchors;
  } = {},
): Promise<DrillCheck[]> {
  const checks: DrillCheck[] = manifestChecks(chain, load);
  const c = await connectClient(url, 'attendux-drill');
  if (opts.audit) registerAuditKey(c, opts.audit.auditKey);
  try {
    checks.push(await foreignKeyCheck(c));
    checks.push(await newestEventCheck(c, plan, opts.maxEventAgeHours));
    checks.push(await auditChainCheck(c, opts.audit));
    checks.push(await rowLevelSecurityCheck(c, appUrl));
  } finally {
    await c.end().catch(() => undefined); // closing the check client: the checks are recorded
  }
  return checks;
}

/** checksums, row-counts, change-counts: what was read against what the manifests count. */
function manifestChecks(chain: OpenedChain, load: LoadResult): DrillCheck[] {
  const checks: DrillCheck[] = [];
  const bytes = chain.steps.reduce((n, s) => n + s.backup.bytes, 0);
  checks.push({
    name: 'checksums',
    ok: true,
    detail: `${chain.steps.length} file(s), ${chain.steps.reduce((n, s) => n + s.backup.entries.length, 0)} entries, ${bytes} bytes decrypted; every SHA-256 matched its manifest and sidecar`,
  });
  const wrongRows = chain.full.tables.filter((t) => load.rows[t.name] !== t.rows);
  checks.push({
    name: 'row-counts',
    ok: wrongRows.length === 0,
    detail: wrongRows.length
      ? wrongRows.map((t) => `${t.name}: loaded ${load.rows[t.name] ?? 0}, manifest ${t.rows}`).join('; ')
      : `${chain.full.tables.length} tables, ${Object.values(load.rows).reduce((a, b) => a + b, 0)} rows as in ${chain.full.id}`,
  });
  const incs = chain.steps.filter((s) => s.step.kind === 'incremental');
  const wrongChanges = incs.filter(
    (s) => load.changesByBackup[s.step.id] !== (s.backup.manifest.changes?.count ?? 0),
  );
  checks.push({
    name: 'change-counts',
    ok: wrongChanges.length === 0,
    detail: wrongChanges.length
      ? wrongChanges
          .map(
            (s) =>
              `${s.step.id}: read ${load.changesByBackup[s.step.id] ?? 0}, manifest ${s.backup.manifest.changes?.count ?? 0}`,
          )
          .join('; ')
      : `${incs.length} incremental(s), ${load.changes} changes as in their manifests`,
  });
  return checks;
}

async function foreignKeyCheck(c: Queryable): Promise<DrillCheck> {
  const { rows: fk } = await c.query<{ n: number; bad: number }>(
    `SELECT count(*)::int AS n, count(*) FILTER (WHERE NOT convalidated)::int AS bad FROM pg_constraint c
       JOIN pg_namespace s ON s.oid = c.connamespace WHERE s.nspname = 'public' AND c.contype = 'f'`,
  );
  return {
    name: 'foreign-keys',
    ok: fk[0]!.n > 0 && fk[0]!.bad === 0,
    detail: `${fk[0]!.n} foreign keys re-created and validated over the restored rows${fk[0]!.bad ? `, ${fk[0]!.bad} NOT validated` : ''}`,
  };
}

async function newestEventCheck(
  c: Queryable,
  plan: RestorePlan,
  maxEventAgeHours: number | undefined,
): Promise<DrillCheck> {
  const { rows: ev } = await c.query<{ newest: Date | null }>(
    'SELECT max(recorded_at) AS newest FROM attendance_events',
  );
  const newest = ev[0]!.newest;
  const point = new Date(plan.pointInTime).getTime();
  const maxAge = (maxEventAgeHours ?? 168) * 3_600_000;
  if (!newest)
    return { name: 'newest-event', ok: true, detail: 'no attendance events in the backup (skipped)' };
  const age = point - newest.getTime();
  return {
    name: 'newest-event',
    ok: age <= maxAge && age >= -5 * 60_000,
    detail: `newest attendance event recorded ${newest.toISOString()}, ${(age / 3_600_000).toFixed(1)} h before the restored point (allowed: up to ${maxAge / 3_600_000} h)`,
  };
}

async function auditChainCheck(
  c: Parameters<typeof verifyAuditChains>[0],
  anchors: AuditAnchors | undefined,
): Promise<DrillCheck> {
  // Every chain, with the audit key, against the checkpoints the restored backups signed (issue 13).
  const audit = (await verifyAuditChains(c, anchors?.publicKey, anchors?.checkpoints)).result;
  // Entries of a backup from before the keyed chain are `legacy` (not re-keyed yet), not tampered with.
  const tampered = audit.breaks.filter((b) => b.kind !== 'legacy');
  return {
    name: 'audit-chains',
    ok: tampered.length === 0 && audit.moreBreaks === 0,
    detail: audit.ok
      ? `${audit.checked} audit entries in ${audit.chains} chain(s), every link intact, ${audit.checkpoints} signed checkpoint(s) match`
      : `${audit.breaks.length + audit.moreBreaks} break(s): ${audit.breaks
          .slice(0, 10)
          .map((b) => `${b.tenantId}#${b.seq} ${b.kind}: ${b.detail}`)
          .join('; ')}`,
    audit: verificationSummary(audit),
  };
}

/** The app role sees nothing without a company and exactly the biggest company's employees with it. */
async function rowLevelSecurityCheck(c: Queryable, appUrl: string): Promise<DrillCheck> {
  const { rows: t } = await c.query<{ id: string; n: number }>(
    `SELECT t.id::text, (SELECT count(*)::int FROM employees e WHERE e.tenant_id = t.id) AS n
       FROM tenants t ORDER BY n DESC, t.id LIMIT 1`,
  );
  const a = await connectClient(appUrl, 'attendux-drill').catch((err: unknown) => err as Error);
  if (a instanceof Error)
    return { name: 'row-level-security', ok: false, detail: `app role cannot connect: ${a.message}` };
  try {
    const none = await a.query<{ n: number }>('SELECT count(*)::int AS n FROM employees');
    let own = 0;
    if (t[0]) {
      await a.query('BEGIN');
      await a.query("SELECT set_config('attendux.tenant_id', $1, true)", [t[0].id]);
      own = (await a.query<{ n: number }>('SELECT count(*)::int AS n FROM employees')).rows[0]!.n;
      await a.query('COMMIT');
    }
    const ok = none.rows[0]!.n === 0 && own === (t[0]?.n ?? 0);
    return {
      name: 'row-level-security',
      ok,
      detail: `app role sees ${none.rows[0]!.n} employees without a company and ${own} of ${t[0]?.n ?? 0} with one`,
    };
  } catch (err) {
    return {
      name: 'row-level-security',
      ok: false,
      detail: `app role cannot read: ${(err as Error).message}`,
    };
  } finally {
    await a.end().catch(() => undefined); // closing the check client: the check is recorded
  }
}

/** How many entries the `security-ledger` check names in its detail (newest first). */
const NAMED_ENTRIES = 50;

/**
 * The `security-ledger` drill check: every effect the restore must have re-applied (src/core/ledger) holds in
 * the restored database `q`. With the same rules as applyLedger: every key revocation is in force and every
 * user's epoch is at least the newest recorded one, whatever the point; the newest disablement, password
 * change and role downgrade of each user recorded after the restored point (less LEDGER_MARGIN_MS) holds
 * (disabled, that password hash, a role no higher). Earlier ones of those kinds are what the backup already
 * holds, including a later deliberate undo, so they are not checked. An entity the backup does not hold
 * (made after it) has nothing to re-open and is counted, not failed.
 */
export async function checkLedgerEffects(
  q: Queryable,
  entries: readonly LedgerEntry[],
  pointInTime: string,
): Promise<DrillCheck> {
  const { wanted, notChecked, unknown } = ledgerExpectations(entries, pointInTime);
  const holds = await ledgerHolds(q, wanted);
  const name = (e: LedgerEntry) =>
    `${e.kind} ${e.entityId}${e.kind === 'user.session_epoch' ? ` >= ${String(e.data.epoch)}` : ''}`;
  const broken = wanted.filter((e) => holds.get(e.id) === false);
  const absent = wanted.filter((e) => holds.get(e.id) == null).length;
  const held = wanted.filter((e) => holds.get(e.id) === true).reverse();
  const list = (es: LedgerEntry[]) =>
    es.slice(0, NAMED_ENTRIES).map(name).join('; ') +
    (es.length > NAMED_ENTRIES ? `; ${es.length - NAMED_ENTRIES} more` : '');
  const extra = [
    absent ? `${absent} for entities not in the backup` : '',
    notChecked ? `${notChecked} from before the restored point (already in the backup, not checked)` : '',
    unknown ? `${unknown} of kinds this version does not know` : '',
  ].filter(Boolean);
  const tail = extra.length ? ` (${extra.join(', ')})` : '';
  return broken.length
    ? {
        name: 'security-ledger',
        ok: false,
        detail: `${broken.length} of ${wanted.length} ledger effect(s) do not hold in the restored database: ${list(broken)}${tail}`,
      }
    : {
        name: 'security-ledger',
        ok: true,
        detail: `${entries.length} ledger entries; ${held.length} effect(s) hold in the restored database: ${list(held) || 'none'}${tail}`,
      };
}

/** The entries to check (see checkLedgerEffects), and how many were left out as older or unknown. */
function ledgerExpectations(
  entries: readonly LedgerEntry[],
  pointInTime: string,
): { wanted: LedgerEntry[]; notChecked: number; unknown: number } {
  const since = Date.parse(pointInTime) - LEDGER_MARGIN_MS;
  // One expectation per (kind, company, entity): the strongest epoch, or the newest entry since the point.
  const expect = new Map<string, LedgerEntry>();
  let notChecked = 0;
  let unknown = 0;
  for (const e of entries) {
    if (!(LEDGER_KINDS as readonly string[]).includes(e.kind)) {
      unknown++;
      continue;
    }
    const monotonic = [
      'api_key.revoked',
      'user.session_epoch',
      'dsar.erasure',
      'attendance.retention',
      'tenant.deleted',
    ].includes(e.kind);
    if (!monotonic && Date.parse(e.at) < since) {
      notChecked++;
      continue;
    }
    const k = `${e.kind}\0${e.tenantId}\0${e.entityId}`;
    const had = expect.get(k);
    const stronger =
      !had ||
      (e.kind === 'user.session_epoch'
        ? Number(e.data.epoch) > Number(had.data.epoch)
        : e.kind === 'api_key.revoked'
          ? false
          : Date.parse(e.at) > Date.parse(had.at) || (e.at === had.at && e.id > had.id));
    if (stronger) expect.set(k, e);
  }
  return { wanted: [...expect.values()], notChecked, unknown };
}

/** Per entry id: whether its effect holds in `q` (null: the entity is not in the restored database). */
async function ledgerHolds(q: Queryable, wanted: LedgerEntry[]): Promise<Map<string, boolean | null>> {
  const { rows } = await q.query<{ id: string; holds: boolean | null }>(
    `SELECT x.id, CASE x.kind
         WHEN 'api_key.revoked' THEN (SELECT k.revoked_at IS NOT NULL FROM api_keys k
                                       WHERE k.tenant_id = x."tenantId" AND k.id = x."entityId")
         WHEN 'user.session_epoch' THEN (SELECT u.session_epoch >= (x.data->>'epoch')::int FROM users u
                                       WHERE u.tenant_id = x."tenantId" AND u.id = x."entityId")
         WHEN 'user.disabled' THEN (SELECT u.disabled_at IS NOT NULL FROM users u
                                       WHERE u.tenant_id = x."tenantId" AND u.id = x."entityId")
         WHEN 'user.password' THEN (SELECT u.password_hash IS NOT DISTINCT FROM x.data->>'passwordHash' FROM users u
                                       WHERE u.tenant_id = x."tenantId" AND u.id = x."entityId")
         WHEN 'user.role_downgrade' THEN (SELECT attendux_role_rank(u.role) <= attendux_role_rank(x.data->>'role')
                                       FROM users u WHERE u.tenant_id = x."tenantId" AND u.id = x."entityId")
         WHEN 'dsar.erasure' THEN (SELECT e.full_name = 'Erased ' || (x.data->>'pseudonym') AND e.email IS NULL
                                       FROM employees e WHERE e.tenant_id = x."tenantId"
                                        AND e.id = (x.data->>'employeeId')::uuid)
         WHEN 'tenant.deleted' THEN NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = x."entityId")
         WHEN 'attendance.retention' THEN NOT EXISTS (SELECT 1 FROM attendance_events a
                                       WHERE a.tenant_id = x."tenantId" AND a.id <= (x.data->>'maxEventId')::bigint
                                         AND (a.occurred_at < (x.data->>'deleteBefore')::timestamptz
                                              OR (a.occurred_at < (x.data->>'stripBefore')::timestamptz
                                                  AND (a.latitude IS NOT NULL OR a.longitude IS NOT NULL
                                                       OR a.accuracy_m IS NOT NULL))))
       END AS holds
       FROM jsonb_to_recordset($1::jsonb) AS x(id text, kind text, "tenantId" uuid, "entityId" uuid, data jsonb)`,
    [JSON.stringify(wanted)],
  );
  return new Map(rows.map((r) => [r.id, r.holds]));
}
