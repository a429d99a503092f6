import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AttenduxError, isAttenduxError } from '../../errors.js';
import type { LoadedConfig } from '../config/load.js';
import { assertNoProblems, readCatalog } from '../archive/catalog.js';
import { openBackup, type OpenedBackup } from '../archive/reader.js';
import { readIdentityFile, requireIdentityFile } from '../archive/identity.js';
import { type Manifest } from '../archive/format.js';
import { migrationFiles } from '../../db/migrate.js';
import { checkBackupSignature, trustedSigningKeys } from '../backup/signature.js';
import { planRestore, type PlanBackup, type PlanOptions, type PlanStep, type RestorePlan } from './plan.js';
import { processAlive } from '../../lib/pid.js';

/** The age identities for a restore: --identity, else $ATTENDUX_BACKUP_IDENTITY, else backup.identityFile. */
export async function restoreIdentities(
  loaded: LoadedConfig,
  identityFile?: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string[]> {
  const file = requireIdentityFile({
    identityFile,
    env,
    configured: loaded.config.backup.identityFile,
    hint: 'pass --identity FILE or set $ATTENDUX_BACKUP_IDENTITY (or backup.identityFile for unattended drills)',
  });
  const identities = await readIdentityFile(file);
  // The keys that may have signed the backups travel with the identity (see backup/signature.ts): openChain
  // checks every backup against them before decrypting anything.
  trustedKeysOf.set(identities, await trustedSigningKeys({ loaded, identityFile: file }));
  return identities;
}

/** Trusted signing keys per identity list handed out by restoreIdentities. */
const trustedKeysOf = new WeakMap<readonly string[], string[]>();

/** Plan against the backup dir of an install, with the migrations this attendux ships. */
export async function planFromCatalog(
  loaded: LoadedConfig,
  opts: Omit<PlanOptions, 'knownMigrations'>,
): Promise<RestorePlan> {
  const catalog = await readCatalog(loaded.backupDir);
  // A backup whose sidecar is damaged or missing may be the newest point: planning without it would
  // restore an older state without a word.
  assertNoProblems(catalog, 'cannot plan the restore');
  const backups: PlanBackup[] = catalog.backups.map((b) => ({
    id: b.id,
    kind: b.kind,
    parent: b.parent,
    createdAt: b.createdAt,
    file: b.path,
    bytes: b.bytes,
    rows: b.rows,
    schemaVersion: b.schemaVersion,
    attenduxVersion: b.attenduxVersion,
    databaseId: b.databaseId,
    status: b.status,
    problem: b.problem,
  }));
  return planRestore(backups, { ...opts, knownMigrations: await migrationFiles() });
}

export interface OpenedStep {
  step: PlanStep;
  backup: OpenedBackup;
}

export interface OpenedChain {
  /** Private (0700) directory holding every decrypted file of the chain. */
  dir: string;
  steps: OpenedStep[];
  full: Manifest;
  cleanup(): Promise<void>;
}

const TEMP_PREFIX = 'attendux-restore-';

/**
 * Remove private temp dirs that killed restores left behind (their pid is in the name and no longer runs):
 * they hold decrypted data.
 */
export async function sweepTempDirs(root = tmpdir()): Promise<string[]> {
  const names = await readdir(root).catch(() => [] as string[]); // no temp dir: nothing to sweep
  const removed: string[] = [];
  for (const n of names) {
    const m = /^attendux-restore-(\d+)-/.exec(n);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || processAlive(pid)) continue;
    await rm(join(root, n), { recursive: true, force: true });
    removed.push(n);
  }
  return removed;
}

/**
 * Decrypt every backup of the plan into one private temp dir and check each against its manifest and
 * sidecar, and the links between them, before anything is written to a database. On any failure the
 * directory is removed and nothing else has happened.
 */
export async function openChain(
  backupDir: string,
  plan: RestorePlan,
  identities: readonly string[],
  opts: { tempRoot?: string; onStep?: (id: string, index: number) => void } = {},
): Promise<OpenedChain> {
  // Refuse unsigned or wrongly signed backups before anything is decrypted or written.
  const trusted = trustedKeysOf.get(identities) ?? (await trustedSigningKeys({}));
  for (const s of plan.steps) await checkBackupSignature(backupDir, s.id, trusted);
  const root = opts.tempRoot ?? tmpdir();
  await sweepTempDirs(root);
  const dir = await mkdtemp(join(root, `${TEMP_PREFIX}${process.pid}-`));
  const cleanup = () => rm(dir, { recursive: true, force: true });
  try {
    const steps: OpenedStep[] = [];
    for (const [i, step] of plan.steps.entries()) {
      opts.onStep?.(step.id, i);
      let backup: OpenedBackup;
      try {
        backup = await openBackup({ backupDir, id: step.id, identities, tempRoot: dir });
      } catch (err) {
        if (isAttenduxError(err) && err.code === 'BACKUP_CORRUPT' && plan.steps.length > 1)
          throw new AttenduxError(
            'BACKUP_CORRUPT',
            `backup ${step.id} (link ${i + 1} of ${plan.steps.length}) is corrupt: ${err.message}`,
            { hint: 'nothing was restored; restore an earlier point with --backup ID', details: err.details },
          );
        throw err;
      }
      steps.push({ step, backup });
      const m = backup.manifest;
      const prev = steps[i - 1]?.backup.manifest;
      if (m.kind !== step.kind)
        throw new AttenduxError('RESTORE_CHAIN_BROKEN', `${step.id}: its manifest says kind ${m.kind}`);
      if (prev && (m.parent !== prev.id || m.parentSnapshot !== prev.snapshot))
        throw new AttenduxError(
          'RESTORE_CHAIN_BROKEN',
          `${step.id} does not continue ${prev.id} (its manifest names parent ${m.parent ?? 'none'} with another snapshot)`,
        );
    }
    const full = steps[0]!.backup.manifest;
    return { dir, steps, full, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
