import { hostname } from 'node:os';
import { warnSwallowed } from '../../lib/log.js';
import type pg from 'pg';
import { AttenduxError } from '../../errors.js';
import { ddl } from '../../db/pool.js';
import { enterMaintenance, leaveMaintenance } from '../maintenance.js';
import { openChain, planFromCatalog, restoreIdentities, type OpenedChain } from './chain.js';
import { checkRestored, type DrillCheck } from './drill-checks.js';
import { drillAuditAnchors } from '../audit/backup.js';
import {
  auditFailure,
  buildDatabase,
  clearBuildingMarker,
  dropDatabase,
  maintenanceClient,
  prepare,
  stamp,
  type Prepared,
  type RestoreOptions,
} from './toolkit.js';
import { faultPoint, recoverJournal, removeJournal, writeJournal, type RestoreJournal } from './journal.js';
import { databaseUrl, type LoadResult } from './load.js';
import type { RestorePlan } from './plan.js';

export interface InPlaceOptions extends Omit<RestoreOptions, 'into' | 'force'> {
  /** Drop the replaced database after the swap instead of keeping it under a dated name. */
  dropOld?: boolean;
  /** Retry-After the server sends while in maintenance (default 120 s). */
  retryAfterSeconds?: number;
  /** Test hook: called after maintenance mode is on and before the new database is built. */
  onMaintenance?: () => Promise<void> | void;
}

export interface InPlaceResult {
  plan: RestorePlan;
  database: string;
  /** Where the replaced database went (null with --drop-old). */
  oldDatabase: string | null;
  checks: DrillCheck[];
  seconds: number;
}

const swapNames = (live: string, at = new Date()) => ({
  restored: `${live}_restore_${stamp(at)}`.slice(0, 63),
  old: `${live}_old_${stamp(at)}`.slice(0, 63),
});

/**
 * What `--in-place --dry-run` and the prompt show, and exactly what restoreInPlace carries out: the chain,
 * and the names (with their timestamp) the restored and the replaced database get.
 */
export interface InPlacePlan {
  plan: RestorePlan;
  live: string;
  restored: string;
  old: string;
  dropOld: boolean;
}

async function planWith(prep: Prepared, opts: InPlaceOptions): Promise<InPlacePlan> {
  const names = swapNames(prep.live);
  const plan = await planFromCatalog(prep.loaded, {
    backupId: opts.backupId,
    at: opts.at,
    mode: 'in-place',
    liveDatabase: prep.live,
    oldName: names.old,
    dropOld: opts.dropOld,
  });
  return { plan, live: prep.live, restored: names.restored, old: names.old, dropOld: !!opts.dropOld };
}

export async function planInPlace(opts: InPlaceOptions): Promise<InPlacePlan> {
  const prep = await prepare(opts);
  try {
    return await planWith(prep, opts);
  } finally {
    await prep.install.close();
  }
}

/** Whether sessions that this role may not terminate are connected to `database`. */
async function foreignSessions(m: pg.Client, database: string): Promise<boolean> {
  const { rows } = await m.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity a
      WHERE a.datname = $1 AND a.pid <> pg_backend_pid() AND NOT pg_has_role(current_user, a.usesysid, 'MEMBER')`,
    [database],
  );
  return rows[0]!.n > 0;
}

/**
 * Swap two databases by name in one transaction: the live one becomes `old`, the restored one takes the live
 * name. Sessions on the live database are terminated first (the server reconnects to the new one); a
 * session that comes back in between makes the rename fail, so it is retried. Every step is a kill point of
 * the crash tests; the journal (written before) lets the next run finish or undo whatever was left.
 */
async function swap(
  adminUrl: string,
  live: string,
  restored: string,
  old: string,
  journaled: () => Promise<void>,
): Promise<void> {
  const m = await maintenanceClient(adminUrl);
  try {
    await ddl(m, 'ALTER DATABASE %I CONNECTION LIMIT 0', live);
    faultPoint('in-place:limit-set');
    let lastError: unknown;
    // PostgreSQL itself waits up to 5 s for other sessions to leave before it refuses the rename.
    for (let attempt = 0; attempt < 3; attempt++) {
      await m.query(
        `SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a
          WHERE a.datname = $1 AND a.pid <> pg_backend_pid() AND pg_has_role(current_user, a.usesysid, 'MEMBER')`,
        [live],
      );
      try {
        await m.query('BEGIN');
        await ddl(m, 'ALTER DATABASE %I RENAME TO %I', live, old);
        await ddl(m, 'ALTER DATABASE %I RENAME TO %I', restored, live);
        await m.query('COMMIT');
        lastError = undefined;
        break;
      } catch (err) {
        lastError = err;
        // ROLLBACK of the failed swap: its error is lastError
        await m.query('ROLLBACK').catch(() => undefined);
        if ((err as { code?: string }).code !== '55006') break;
        // Retrying helps against sessions of our own role that came back (they are terminated again); a
        // session of another role, which we may not terminate, has already outlasted PostgreSQL's 5 s wait.
        if (await foreignSessions(m, live)) break;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    if (lastError) {
      await ddl(m, 'ALTER DATABASE %I CONNECTION LIMIT -1', live).catch((err: unknown) =>
        warnSwallowed(
          `${live} keeps CONNECTION LIMIT 0; run ALTER DATABASE ${live} CONNECTION LIMIT -1`,
          err,
        ),
      );
      throw new AttenduxError(
        'RESTORE_FAILED',
        `could not swap ${restored} in for ${live}: ${(lastError as Error).message}`,
        {
          cause: lastError,
          hint: `sessions of other roles keep ${live} open; stop them and run the restore again (the live database is unchanged)`,
        },
      );
    }
    faultPoint('in-place:renamed');
    await journaled();
    faultPoint('in-place:journal-swapped');
    await ddl(m, 'ALTER DATABASE %I CONNECTION LIMIT -1', old);
    faultPoint('in-place:old-unlimited');
  } finally {
    await m.end().catch(() => undefined); // closing the maintenance client: the outcome is decided
  }
}

/**
 * `attendux restore --in-place`: decrypt and verify the chain, put the server into maintenance (503), build
 * the restored database beside the live one, check it, swap the names atomically, keep (or drop) the old
 * one, leave maintenance. Anything failing before the swap leaves the live database as it was; a kill at any
 * point is finished by the next restore command or `restore --recover` (see journal.ts).
 *
 * The database is handed back to the service in `handBack` (the last step of this restore kind).
 */
export async function restoreInPlace(opts: InPlaceOptions, planned?: InPlacePlan): Promise<InPlaceResult> {
  const t0 = Date.now();
  const prep = await prepare(opts);
  try {
    const shown = await shownPlan(prep, opts, planned);
    const { plan } = shown;
    const names = { restored: shown.restored, old: shown.old };
    const dropOld = shown.dropOld;
    const identities = await restoreIdentities(prep.loaded, opts.identityFile, opts.env);
    const chain = await openChain(prep.loaded.backupDir, plan, identities, {
      tempRoot: opts.tempRoot,
      onStep: (id) => opts.onProgress?.({ phase: 'decrypt', backup: id }),
    });
    const dataDir = prep.loaded.config.dataDir;
    const adminUrl = prep.install.db.adminUrl;
    const journal = newJournal(prep.live, names, dropOld, chain.dir, t0);
    // The CLI's own pool must not keep the live database open during the swap.
    await prep.install.admin.end().catch(() => undefined);
    let swapped = false;
    let consistent = false;
    try {
      await writeJournal(dataDir, journal);
      faultPoint('in-place:journal-written');
      await enterMaintenance(dataDir, {
        reason: `restore of ${plan.steps[plan.steps.length - 1]!.id} in progress`,
        retryAfterSeconds: opts.retryAfterSeconds ?? 120,
        dbUrl: adminUrl,
      });
      faultPoint('in-place:maintenance-on');
      await opts.onMaintenance?.();
      const load = await buildDatabase(prep, plan, chain, names.restored, {
        onProgress: opts.onProgress,
        audit: { replaced: prep.live, keptAs: dropOld ? null : names.old },
        keepMarker: true,
      });
      faultPoint('in-place:built');
      opts.onProgress?.({ phase: 'check' });
      const checks = await checkBuilt(prep, plan, chain, load, names.restored);
      faultPoint('in-place:checked');
      await writeJournal(dataDir, { ...journal, step: 'swapping' });
      // From here the journal, not the marker, says what becomes of the restored database.
      await clearBuildingMarker(adminUrl, names.restored);
      faultPoint('in-place:journal-swapping');
      await swap(adminUrl, prep.live, names.restored, names.old, () =>
        writeJournal(dataDir, { ...journal, step: 'swapped' }),
      );
      swapped = true;
      await handBack(dataDir, adminUrl, names.old, dropOld, chain);
      consistent = true;
      return {
        plan,
        database: prep.live,
        oldDatabase: dropOld ? null : names.old,
        checks,
        seconds: (Date.now() - t0) / 1000,
      };
    } catch (err) {
      // Undo (or finish) from the cluster's state, exactly as a later run would after a kill.
      await recoverJournal(dataDir, adminUrl, { own: true }).then(
        () => (consistent = true),
        () => undefined,
      );
      await auditFailure(prep, 'in-place', err, { swapped });
      throw err;
    } finally {
      await chain.cleanup();
      if (consistent)
        await leaveMaintenance(dataDir, [adminUrl]).catch((err: unknown) =>
          warnSwallowed('maintenance mode not left; remove the maintenance flag in the data dir', err),
        );
    }
  } finally {
    await prep.install.close();
  }
}

/** The journal of a restore that starts building (journal.ts: what a later run does after a kill). */
function newJournal(
  live: string,
  names: { restored: string; old: string },
  dropOld: boolean,
  tempDir: string,
  t0: number,
): RestoreJournal {
  return {
    version: 1,
    pid: process.pid,
    host: hostname(),
    startedAt: new Date(t0).toISOString(),
    live,
    restored: names.restored,
    old: names.old,
    dropOld: dropOld,
    tempDir,
    step: 'building',
  };
}

/** The plan shown (or a new one), refused when the live database changed since it was shown. */
async function shownPlan(prep: Prepared, opts: InPlaceOptions, planned?: InPlacePlan): Promise<InPlacePlan> {
  const shown = planned ?? (await planWith(prep, opts));
  if (shown.live !== prep.live)
    throw new AttenduxError(
      'CONFLICT',
      `the plan replaces ${shown.live}, but the live database is ${prep.live}`,
      {
        hint: 'run the restore again to see the new plan',
      },
    );
  return shown;
}

/** The drill's checks on the built database (any event age); any failing one stops the restore before the swap. */
async function checkBuilt(
  prep: Prepared,
  plan: RestorePlan,
  chain: OpenedChain,
  load: LoadResult,
  restored: string,
): Promise<DrillCheck[]> {
  const checks = await checkRestored(
    databaseUrl(prep.install.db.adminUrl, restored),
    databaseUrl(prep.install.db.appUrl, restored),
    chain,
    plan,
    load,
    {
      maxEventAgeHours: Number.POSITIVE_INFINITY,
      audit: await drillAuditAnchors(
        prep.loaded.backupDir,
        plan,
        prep.install.secrets.signingKey,
        prep.install.secrets.auditKey,
      ),
    },
  );
  const failed = checks.filter((c) => !c.ok);
  if (failed.length) {
    throw new AttenduxError(
      'RESTORE_FAILED',
      `the restored database failed its checks (${failed.map((c) => `${c.name}: ${c.detail}`).join('; ')})`,
      { hint: 'the live database was not touched' },
    );
  }
  return checks;
}

/**
 * The last step of an in-place restore: the restored database is live under its name; drop (or keep) the
 * replaced one, leave maintenance mode so the server answers again, and close the journal.
 */
async function handBack(
  dataDir: string,
  adminUrl: string,
  old: string,
  dropOld: boolean,
  chain: { cleanup(): Promise<void> },
): Promise<void> {
  if (dropOld) {
    await dropDatabase(adminUrl, old);
    faultPoint('in-place:old-dropped');
  }
  await chain.cleanup();
  // The replaced database, when kept, still holds the maintenance row: it must not come back in maintenance.
  await leaveMaintenance(dataDir, dropOld ? [adminUrl] : [adminUrl, databaseUrl(adminUrl, old)]);
  faultPoint('in-place:maintenance-off');
  await removeJournal(dataDir);
}
