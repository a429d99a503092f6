import { AttenduxError } from '../../errors.js';
import type { Acting } from '../actor.js';
import type { ConfigLocation } from '../config/load.js';
import { openChain, planFromCatalog, restoreIdentities, sweepTempDirs } from './chain.js';
import type { RecoveryReport } from './journal.js';
import { databaseUrl } from './load.js';
import type { RestoreMode, RestorePlan } from './plan.js';
import {
  auditFailure,
  buildDatabase,
  checkDatabaseName,
  dropDatabase,
  prepare,
  stamp,
  targetState,
  type Prepared,
  type RestoreOptions,
  type TargetState,
} from './toolkit.js';

/** `attendux restore [--into NAME]` and `restore --recover`; the toolkit they share is in toolkit.ts. */

export interface RestoreResult {
  plan: RestorePlan;
  database: string;
  /** The restored database's owner URL without password, for the switch-over instructions. */
  databaseUrl: string;
  rows: Record<string, number>;
  changes: number;
  changesByBackup: Record<string, number>;
  seconds: number;
  /** How to make the server use the restored database. */
  next: string[];
}

/** What --dry-run and the prompt show, and exactly what restoreInto carries out (chain and database name). */
export interface IntoPlan {
  plan: RestorePlan;
  target: TargetState;
  database: string;
}

/** The plan and the target's state, with nothing decrypted or written. */
export async function planRestoreInto(opts: RestoreOptions, mode: RestoreMode = 'into'): Promise<IntoPlan> {
  const prep = await prepare(opts);
  try {
    const database = checkDatabaseName(opts.into ?? `${prep.live}_restore_${stamp()}`.slice(0, 63));
    const target = await targetState(prep.install.db.adminUrl, database);
    const plan = await planFromCatalog(prep.loaded, {
      backupId: opts.backupId,
      at: opts.at,
      mode,
      database,
      liveDatabase: prep.live,
      targetNotEmpty: target.notEmpty,
    });
    return { plan, target, database };
  } finally {
    await prep.install.close();
  }
}

/**
 * `attendux restore [--into NAME]`: the chain's state in a new database; the live database is never touched.
 * Every file is decrypted and verified before any database is created or replaced.
 */
export async function restoreInto(opts: RestoreOptions, planned?: IntoPlan): Promise<RestoreResult> {
  const t0 = Date.now();
  const prep = await prepare(opts);
  try {
    return await restoreIntoPrepared(prep, opts, t0, planned);
  } catch (err) {
    await auditFailure(prep, 'into', err, { database: planned?.database ?? opts.into ?? null });
    throw err;
  } finally {
    await prep.install.close();
  }
}

async function restoreIntoPrepared(
  prep: Prepared,
  opts: RestoreOptions,
  t0: number,
  planned: IntoPlan | undefined,
): Promise<RestoreResult> {
  const name = checkDatabaseName(
    planned?.database ?? opts.into ?? `${prep.live}_restore_${stamp()}`.slice(0, 63),
  );
  if (name === prep.live)
    throw new AttenduxError('USAGE', `${name} is the live database of this install`, {
      hint: 'use --in-place to replace the live database, or pick another --into name',
    });
  const target = await targetState(prep.install.db.adminUrl, name);
  if (target.notEmpty && !opts.force)
    throw new AttenduxError('RESTORE_TARGET_EXISTS', `database ${name} already exists and holds tables`, {
      hint: 'pick another --into name, or pass --force to replace it',
    });
  const plan =
    planned?.plan ??
    (await planFromCatalog(prep.loaded, {
      backupId: opts.backupId,
      at: opts.at,
      mode: 'into',
      database: name,
      targetNotEmpty: target.notEmpty,
    }));
  const identities = await restoreIdentities(prep.loaded, opts.identityFile, opts.env);
  const chain = await openChain(prep.loaded.backupDir, plan, identities, {
    tempRoot: opts.tempRoot,
    onStep: (id) => opts.onProgress?.({ phase: 'decrypt', backup: id }),
  });
  try {
    if (target.exists) await dropDatabase(prep.install.db.adminUrl, name);
    const r = await buildDatabase(prep, plan, chain, name, { onProgress: opts.onProgress });
    const url = new URL(databaseUrl(prep.install.db.adminUrl, name));
    url.password = '';
    return {
      plan,
      database: name,
      databaseUrl: url.toString(),
      rows: r.rows,
      changes: r.changes,
      changesByBackup: r.changesByBackup,
      seconds: (Date.now() - t0) / 1000,
      next: [
        `the server still uses ${prep.live}; to switch it to ${name}, point database.url and database.adminUrl at it`,
        `(e.g. attendux config set database.adminUrl ${url.toString()}) and restart the server,`,
        'or run `attendux restore --in-place` to swap it in under the live name.',
      ],
    };
  } finally {
    await chain.cleanup();
  }
}

export interface RecoverResult {
  /** The in-place restore that was finished or undone, if one had been killed. */
  recovered: RecoveryReport | null;
  /** Half-built databases of killed restores that were dropped. */
  droppedDatabases: string[];
  /** Decrypted temp dirs of killed restores that were removed. */
  removedTempDirs: string[];
}

/**
 * `attendux restore --recover`: what every restore command does first, on its own. Finishes or undoes a
 * killed in-place restore (its journal), drops half-built databases and removes decrypted temp dirs that
 * killed restores left behind.
 */
export async function recoverRestore(
  opts: ConfigLocation & Acting & { tempRoot?: string },
): Promise<RecoverResult> {
  const prep = await prepare(opts);
  try {
    const removedTempDirs = await sweepTempDirs(opts.tempRoot);
    return { recovered: prep.recovered, droppedDatabases: prep.sweptDatabases, removedTempDirs };
  } finally {
    await prep.install.close();
  }
}
