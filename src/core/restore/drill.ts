import { AttenduxError } from '../../errors.js';
import { warnSwallowed } from '../../lib/log.js';
import { connectClient } from '../../db/pool.js';
import { appendAudit, SYSTEM_TENANT } from '../../db/queries/audit.js';
import { drillAuditAnchors } from '../audit/backup.js';
import { openChain, planFromCatalog, restoreIdentities, type OpenedChain } from './chain.js';
import {
  buildDatabase,
  dropDatabase,
  maintenanceClient,
  prepare,
  stamp,
  type Prepared,
  type RestoreOptions,
} from './toolkit.js';
import { databaseUrl } from './load.js';
import type { RestorePlan } from './plan.js';
import { recordDrillResult } from './drill-record.js';
import { collectLedger } from '../ledger/index.js';
import { checkLedgerEffects, checkRestored, type DrillCheck } from './drill-checks.js';

// The checks live in drill-checks.ts; their names stay importable from here.
export { checkLedgerEffects, checkRestored, type DrillCheck } from './drill-checks.js';

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
        checks.push(...(await buildAndCheck(prep, plan, chain, database, opts)));
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
    const seconds = await recordDrill(prep, plan, checks, ok, t0);
    return { ok, database, plan, checks, seconds };
  } finally {
    await prep.install.close();
  }
}

/** Build the drill database from the opened chain and run every check on it. */
async function buildAndCheck(
  prep: Prepared,
  plan: RestorePlan,
  chain: OpenedChain,
  database: string,
  opts: DrillOptions,
): Promise<DrillCheck[]> {
  const checks: DrillCheck[] = [];
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
    ...(await checkRestored(databaseUrl(prep.install.db.adminUrl, database), appUrl, chain, plan, load, {
      ...opts,
      audit: await drillAuditAnchors(
        prep.loaded.backupDir,
        plan,
        prep.install.secrets.signingKey,
        prep.install.secrets.auditKey,
      ),
    })),
  );
  const lc = await connectClient(databaseUrl(prep.install.db.adminUrl, database), 'attendux-drill');
  try {
    checks.push(await checkLedgerEffects(lc, ledger, plan.pointInTime));
  } finally {
    await lc.end().catch(() => undefined); // closing the check client: the check is recorded
  }
  return checks;
}

/** The drill's audit entry and its signed record; neither failing fails the drill. Returns its seconds. */
async function recordDrill(
  prep: Prepared,
  plan: RestorePlan | null,
  checks: DrillCheck[],
  ok: boolean,
  t0: number,
): Promise<number> {
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
  return seconds;
}
