import { auditBackupOperation } from './audit-entry.js';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { AttenduxError } from '../../errors.js';
import type { Acting } from '../actor.js';
import { loadConfig, type ConfigLocation } from '../config/load.js';
import { fsyncDir } from '../../lib/fs.js';
import { readCatalog } from '../archive/catalog.js';
import { dataFileName, sidecarFileName, type BackupKind } from '../archive/format.js';
import { acquireFileLock } from './lock.js';
import { cleanupLeftovers } from '../archive/writer.js';
import { signatureFileName } from './signature.js';
import type { TargetPruneResult } from '../offsite/prune-targets.js';

export interface Retention {
  fullDays: number;
  incrementalDays: number;
  configDays: number;
}

/** What planPrune needs to know of a backup: nothing that requires the key. */
export interface PruneCandidate {
  id: string;
  kind: BackupKind;
  parent: string | null;
  createdAt: string;
}

export interface PruneDecision {
  id: string;
  kind: BackupKind;
  createdAt: string;
  reason: string;
  /** Kept although past its retention (needed by a kept incremental, or the newest of its kind). */
  protected?: boolean;
}

export interface PrunePlan {
  delete: PruneDecision[];
  keep: PruneDecision[];
}

const DAY = 86_400_000;

/**
 * Pure retention: a backup past its kind's retention is deleted unless something kept needs it. Never
 * deleted: the newest full, the newest config backup, and any full or incremental that a kept incremental
 * builds on (its whole chain back to the full). Deletions are ordered newest first, so an interrupted prune
 * never leaves an incremental whose parent is gone while it remains.
 */
export function planPrune(backups: readonly PruneCandidate[], retention: Retention, now: Date): PrunePlan {
  const days = {
    full: retention.fullDays,
    incremental: retention.incrementalDays,
    config: retention.configDays,
  };
  const byId = new Map(backups.map((b) => [b.id, b]));
  const sorted = [...backups].sort(
    (a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id),
  );
  const newest = (k: BackupKind) => [...sorted].reverse().find((b) => b.kind === k)?.id;
  const newestFull = newest('full');
  const newestConfig = newest('config');
  const expired = (b: PruneCandidate) => now.getTime() - Date.parse(b.createdAt) > days[b.kind] * DAY;

  const keep = new Map<string, PruneDecision>();
  const mark = (b: PruneCandidate, reason: string, prot: boolean) => {
    if (!keep.has(b.id))
      keep.set(b.id, {
        id: b.id,
        kind: b.kind,
        createdAt: b.createdAt,
        reason,
        ...(prot ? { protected: true } : {}),
      });
  };
  for (const b of sorted) {
    if (!expired(b)) mark(b, `within ${days[b.kind]} days retention`, false);
    else if (b.id === newestFull) mark(b, 'the newest full backup is never deleted', true);
    else if (b.id === newestConfig) mark(b, 'the newest config backup is never deleted', true);
  }
  // Everything a kept incremental builds on stays, up to its full; newest first so reasons name the nearest.
  for (const b of [...sorted].reverse()) {
    if (b.kind !== 'incremental' || !keep.has(b.id)) continue;
    const seen = new Set<string>([b.id]);
    for (
      let p = b.parent ? byId.get(b.parent) : undefined;
      p && !seen.has(p.id);
      p = p.parent ? byId.get(p.parent) : undefined
    ) {
      seen.add(p.id);
      mark(p, `needed by kept incremental ${b.id}`, true);
      if (p.kind === 'full') break;
    }
  }
  const del: PruneDecision[] = [];
  for (const b of [...sorted].reverse()) {
    if (keep.has(b.id)) continue;
    const age = Math.floor((now.getTime() - Date.parse(b.createdAt)) / DAY);
    del.push({
      id: b.id,
      kind: b.kind,
      createdAt: b.createdAt,
      reason: `${b.kind} backup ${age} days old, retention ${days[b.kind]} days`,
    });
  }
  return { delete: del, keep: sorted.filter((b) => keep.has(b.id)).map((b) => keep.get(b.id)!) };
}

export interface PruneOptions extends ConfigLocation, Acting {
  dryRun?: boolean;
  now?: Date;
}

export interface PruneResult extends PrunePlan {
  dryRun: boolean;
  backupDir: string;
  cleanedUp: string[];
  /** The same retention applied to each of backup.targets (src/core/offsite). */
  offsite?: TargetPruneResult[];
}

/** What `backup prune --dry-run` and the prompt show, and exactly what applyPrune deletes. */
export interface PruneRunPlan extends PrunePlan {
  backupDir: string;
  /** The time retention was judged at. */
  now: string;
  /** The same retention applied to each of backup.targets (src/core/offsite). */
  offsite: TargetPruneResult[];
}

/** Plan a prune from the sidecars here and on every target; deletes nothing. */
export async function planBackupPrune(opts: PruneOptions = {}): Promise<PruneRunPlan> {
  const loaded = await loadConfig(opts);
  const now = opts.now ?? new Date();
  const p = planPrune((await readCatalog(loaded.backupDir)).backups, loaded.config.backup.retention, now);
  // Imported when needed: offsite/prune-targets.ts imports planPrune from this module.
  const { pruneTargets } = await import('../offsite/prune-targets.js');
  const offsite = await pruneTargets(loaded, { dryRun: true, now, loc: opts });
  return { ...p, backupDir: loaded.backupDir, now: now.toISOString(), offsite };
}

/**
 * Delete exactly what `plan` lists (under the backup lock), here and on the targets. What changed since the
 * plan is checked first: a backup the plan deletes that retention would now keep (an incremental arrived
 * that builds on it) stops the prune before anything is deleted; something newly expired waits for the next
 * prune, as it was not shown.
 */
export async function applyPrune(opts: PruneOptions, plan: PruneRunPlan): Promise<PruneResult> {
  const loaded = await loadConfig(opts);
  const backupDir = loaded.backupDir;
  const lock = await acquireFileLock(loaded.config.dataDir, 'backup prune');
  let result: PruneResult;
  try {
    const now = new Date(plan.now);
    const fresh = planPrune((await readCatalog(backupDir)).backups, loaded.config.backup.retention, now);
    const stillExpired = new Set(fresh.delete.map((d) => d.id));
    const changed = plan.delete.filter(
      (d) => !stillExpired.has(d.id) && fresh.keep.some((k) => k.id === d.id),
    );
    if (changed.length)
      throw new AttenduxError(
        'CONFLICT',
        `the backups changed since the prune was planned: ${changed.map((d) => d.id).join(', ')} must now be kept`,
        { hint: 'run `attendux backup prune` again to see the new plan' },
      );
    const cleanedUp = await cleanupLeftovers(backupDir);
    for (const d of plan.delete) await deleteBackupFiles(backupDir, d.id);
    if (plan.delete.length) await fsyncDir(backupDir);
    const { pruneTargets } = await import('../offsite/prune-targets.js');
    const offsite = await pruneTargets(loaded, { dryRun: false, now, loc: opts, planned: plan.offsite });
    result = { delete: plan.delete, keep: plan.keep, dryRun: false, backupDir, cleanedUp, offsite };
  } finally {
    await lock.release();
  }
  if (result.delete.length)
    await auditBackupOperation(opts, 'backup.prune', {
      deleted: result.delete.map((d) => ({ id: d.id, reason: d.reason })),
    });
  return result;
}

async function deleteBackupFiles(backupDir: string, id: string): Promise<void> {
  // Sidecar first: from that moment the backup is no longer listed; the data file follows. A file already
  // gone (a prune interrupted after the sidecar) is no error.
  await unlink(join(backupDir, sidecarFileName(id))).catch(() => undefined);
  await unlink(join(backupDir, dataFileName(id))).catch(() => undefined);
  await unlink(join(backupDir, signatureFileName(id))).catch(() => undefined);
  // The drill's record and its signature (restore/drill-record.ts) go with their backup.
  for (const c of [`${id}.drill.json`, `${id}.drill.json.sig`])
    await unlink(join(backupDir, c)).catch(() => undefined); // as above
}

/** Plan and (without dryRun) apply at once: for unattended callers that show no plan (cron runs --yes). */
export async function pruneBackups(opts: PruneOptions = {}): Promise<PruneResult> {
  const plan = await planBackupPrune(opts);
  if (opts.dryRun) return { ...plan, dryRun: true, cleanedUp: [] };
  return applyPrune(opts, plan);
}
