import { AttenduxError } from '../../errors.js';
import { warnSwallowed } from '../../lib/log.js';
import { connectClient } from '../../db/pool.js';
import { appendAudit, SYSTEM_TENANT } from '../../db/queries/audit.js';
import { verifyAuditChains } from '../audit/service.js';
import { registerAuditKey } from '../audit/mac.js';
import { drillAuditAnchors, verificationSummary, type AuditVerification } from '../audit/backup.js';
import type { SourcedCheckpoint } from '../audit/checkpoints.js';
import { openChain, planFromCatalog, restoreIdentities, type OpenedChain } from './chain.js';
import {
  buildDatabase,
  dropDatabase,
  maintenanceClient,
  prepare,
  stamp,
  type RestoreOptions,
} from './toolkit.js';
import { databaseUrl, type LoadResult } from './load.js';
import type { RestorePlan } from './plan.js';
import { recordDrillResult } from './drill-record.js';
import type { Queryable } from '../../db/pool.js';
import { collectLedger, LEDGER_KINDS, LEDGER_MARGIN_MS, type LedgerEntry } from '../ledger/index.js';

export interface DrillCheck {
  name: string;
  ok: boolean;
  detail: string;
  /** audit-chains only: the verification itself, which the drill record keeps (issue 13). */
  audit?: AuditVerification;
}

export interface DrillOptions extends Omit<RestoreOptions, 'into' | 'force'> {
  /** The newest attendance event may be at most this much older than the restored point (default 168 h). */
  maxEventAgeHours?: number;
}

export interface DrillResult {
  ok: boolean;
  database: string;
  plan: RestorePlan | null;
  checks: DrillCheck[];
  seconds: number;
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
    audit?: { publicKey: string; checkpoints: SourcedCheckpoint[]; auditKey: string };
  } = {},
): Promise<DrillCheck[]> {
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
  const c = await connectClient(url, 'attendux-drill');
  if (opts.audit) registerAuditKey(c, opts.audit.auditKey);
  try {
    const { rows: fk } = await c.query<{ n: number; bad: number }>(
      `SELECT count(*)::int AS n, count(*) FILTER (WHERE NOT convalidated)::int AS bad FROM pg_constraint c
         JOIN pg_namespace s ON s.oid = c.connamespace WHERE s.nspname = 'public' AND c.contype = 'f'`,
    );
    checks.push({
      name: 'foreign-keys',
      ok: fk[0]!.n > 0 && fk[0]!.bad === 0,
      detail: `${fk[0]!.n} foreign keys re-created and validated over the restored rows${fk[0]!.bad ? `, ${fk[0]!.bad} NOT validated` : ''}`,
    });
    const { rows: ev } = await c.query<{ newest: Date | null }>(
      'SELECT max(recorded_at) AS newest FROM attendance_events',
    );
    const newest = ev[0]!.newest;
    const point = new Date(plan.pointInTime).getTime();
    const maxAge = (opts.maxEventAgeHours ?? 168) * 3_600_000;
    if (!newest)
      checks.push({ name: 'newest-event', ok: true, detail: 'no attendance events in the backup (skipped)' });
    else {
      const age = point - newest.getTime();
      checks.push({
        name: 'newest-event',
        ok: age <= maxAge && age >= -5 * 60_000,
        detail: `newest attendance event recorded ${newest.toISOString()}, ${(age / 3_600_000).toFixed(1)} h before the restored point (allowed: up to ${maxAge / 3_600_000} h)`,
      });
    }
    // Every chain, with the audit key, against the checkpoints the restored backups signed (issue 13).
    const audit = (await verifyAuditChains(c, opts.audit?.publicKey, opts.audit?.checkpoints)).result;
    // Entries of a backup from before the keyed chain are `legacy` (not re-keyed yet), not tampered with.
    const tampered = audit.breaks.filter((b) => b.kind !== 'legacy');
    checks.push({
      name: 'audit-chains',
      ok: tampered.length === 0 && audit.moreBreaks === 0,
      detail: audit.ok
        ? `${audit.checked} audit entries in ${audit.chains} chain(s), every link intact, ${audit.checkpoints} signed checkpoint(s) match`
        : `${audit.breaks.length + audit.moreBreaks} break(s): ${audit.breaks
            .slice(0, 10)
            .map((b) => `${b.tenantId}#${b.seq} ${b.kind}: ${b.detail}`)
            .join('; ')}`,
      audit: verificationSummary(audit),
    });
    const { rows: t } = await c.query<{ id: string; n: number }>(
      `SELECT t.id::text, (SELECT count(*)::int FROM employees e WHERE e.tenant_id = t.id) AS n
         FROM tenants t ORDER BY n DESC, t.id LIMIT 1`,
    );
    const a = await connectClient(appUrl, 'attendux-drill').catch((err: unknown) => err as Error);
    if (a instanceof Error)
      checks.push({ name: 'row-level-security', ok: false, detail: `app role cannot connect: ${a.message}` });
    else {
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
        checks.push({
          name: 'row-level-security',
          ok,
          detail: `app role sees ${none.rows[0]!.n} employees without a company and ${own} of ${t[0]?.n ?? 0} with one`,
        });
      } catch (err) {
        checks.push({
          name: 'row-level-security',
          ok: false,
          detail: `app role cannot read: ${(err as Error).message}`,
        });
      } finally {
        await a.end().catch(() => undefined); // closing the check client: the check is recorded
      }
    }
  } finally {
    await c.end().catch(() => undefined); // closing the check client: the checks are recorded
  }
  return checks;
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
  const wanted = [...expect.values()];
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
  const holds = new Map(rows.map((r) => [r.id, r.holds]));
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

/** A drill database older than this was left by a drill that was killed; a running drill never takes this long. */
const ABANDONED_DRILL_MS = 24 * 3_600_000;

/** Drop `<live>_drill_<stamp>` databases of killed drills (their stamp says when they were made). */
export async function sweepOldDrills(adminUrl: string, live: string, now = new Date()): Promise<string[]> {
  const m = await maintenanceClient(adminUrl);
  let names: string[];
  try {
    const { rows } = await m.query<{ datname: string }>(
      `SELECT datname FROM pg_database WHERE starts_with(datname, $1) AND pg_get_userbyid(datdba) = current_user`,
      [`${live}_drill_`],
    );
    names = rows.map((r) => r.datname);
  } finally {
    await m.end().catch(() => undefined); // closing the maintenance client after the read
  }
  const old = names.filter((n) => {
    const t = /_drill_(\d{4})(\d{2})(\d{2})_(\d{2})(\d{2})(\d{2})\d{0,3}$/.exec(n);
    if (!t) return false;
    const made = Date.UTC(+t[1]!, +t[2]! - 1, +t[3]!, +t[4]!, +t[5]!, +t[6]!);
    return now.getTime() - made > ABANDONED_DRILL_MS;
  });
  for (const n of old) await dropDatabase(adminUrl, n);
  return old;
}

/**
 * `attendux restore --drill`: restore the newest chain (or --backup/--at) into a throwaway database, check
 * it, drop it, report. Never touches the live database except for one audit entry about the drill.
 */
export async function restoreDrill(opts: DrillOptions): Promise<DrillResult> {
  const t0 = Date.now();
  const prep = await prepare(opts);
  const database = `${prep.live}_drill_${stamp()}`.slice(0, 63);
  const checks: DrillCheck[] = [];
  const swept = await sweepOldDrills(prep.install.db.adminUrl, prep.live);
  if (swept.length)
    checks.push({
      name: 'leftovers',
      ok: true,
      detail: `dropped abandoned drill database(s) ${swept.join(', ')}`,
    });
  let plan: RestorePlan | null = null;
  let created = false;
  try {
    try {
      plan = await planFromCatalog(prep.loaded, {
        backupId: opts.backupId,
        at: opts.at,
        mode: 'drill',
        database,
      });
      const identities = await restoreIdentities(prep.loaded, opts.identityFile, opts.env);
      const chain = await openChain(prep.loaded.backupDir, plan, identities, { tempRoot: opts.tempRoot });
      try {
        created = true;
        // Read before the build: what the restore must at least re-apply (it reads the ledger again itself,
        // so an entry written meanwhile can only make it re-apply more).
        const ledger = await collectLedger({
          liveAdminUrl: prep.install.db.adminUrl,
          dataDir: prep.loaded.config.dataDir,
        });
        const load = await buildDatabase(prep, plan, chain, database, {
          onProgress: opts.onProgress,
          audit: { drill: true },
          keepMarker: true,
        });
        checks.push({
          name: 'restore',
          ok: true,
          detail: `${plan.steps.length} backup(s) restored into ${database}`,
        });
        const appUrl = databaseUrl(prep.install.db.appUrl, database);
        checks.push(
          ...(await checkRestored(
            databaseUrl(prep.install.db.adminUrl, database),
            appUrl,
            chain,
            plan,
            load,
            {
              ...opts,
              audit: await drillAuditAnchors(
                prep.loaded.backupDir,
                plan,
                prep.install.secrets.signingKey,
                prep.install.secrets.auditKey,
              ),
            },
          )),
        );
        const lc = await connectClient(databaseUrl(prep.install.db.adminUrl, database), 'attendux-drill');
        try {
          checks.push(await checkLedgerEffects(lc, ledger, plan.pointInTime));
        } finally {
          await lc.end().catch(() => undefined); // closing the check client: the check is recorded
        }
      } finally {
        await chain.cleanup();
      }
    } catch (err) {
      // A drill reports what failed instead of stopping at the first problem; usage errors still stop it.
      if (err instanceof AttenduxError && (err.code === 'USAGE' || err.code === 'CONFIG_INVALID')) throw err;
      checks.push({ name: 'restore', ok: false, detail: (err as Error).message });
    } finally {
      // a drill database left behind is dropped by the next drill's sweep
      if (created) await dropDatabase(prep.install.db.adminUrl, database).catch(() => undefined);
    }
    const ok = checks.length > 0 && checks.every((c) => c.ok);
    await appendAudit(prep.install.admin, {
      tenantId: SYSTEM_TENANT,
      actor: prep.actor,
      action: 'restore.drill',
      entityType: 'backup',
      entityId: plan?.steps[plan.steps.length - 1]?.id,
      details: {
        outcome: ok ? 'success' : 'failure',
        backups: plan?.steps.map((s) => s.id) ?? [],
        failed: checks.filter((c) => !c.ok).map((c) => c.name),
      },
    }).catch((err: unknown) => warnSwallowed('the drill is not in the audit log', err));
    const seconds = (Date.now() - t0) / 1000;
    // The signed `<id>.drill.json` companion that `backup status` and `doctor` read (drill-record.ts).
    await recordDrillResult(prep.loaded.backupDir, prep.install.secrets.signingKey, {
      ok,
      plan,
      checks,
      seconds,
    }).catch((err: unknown) =>
      warnSwallowed('the drill record (read by backup status and doctor) was not written', err),
    );
    return { ok, database, plan, checks, seconds };
  } finally {
    await prep.install.close();
  }
}
