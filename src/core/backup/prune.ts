import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { cliActor } from '../actor.js';
import { loadConfig, type ConfigLocation } from '../config/load.js';
import { fsyncDir } from '../../lib/fs.js';
import { appendAudit, SYSTEM_TENANT } from '../../db/queries/audit.js';
import { readCatalog } from './catalog.js';
import { dataFileName, sidecarFileName, type BackupKind } from './format.js';
import { acquireFileLock } from './lock.js';
import { cleanupLeftovers } from './writer.js';
import { signatureFileName } from './signature.js';
import type { TargetPruneResult } from '../offsite/remote.js';

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

export interface PruneOptions extends ConfigLocation {
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

/** Apply retention to the backup dir (under the backup lock). With dryRun only the plan is returned. */
export async function pruneBackups(opts: PruneOptions = {}): Promise<PruneResult> {
  const loaded = await loadConfig(opts);
  const backupDir = loaded.backupDir;
  const now = opts.now ?? new Date();
  const plan = async () =>
    planPrune((await readCatalog(backupDir)).backups, loaded.config.backup.retention, now);
  // Imported when needed: offsite/remote.ts imports planPrune from this module.
  const offsite = async (dryRun: boolean) =>
    (await import('../offsite/remote.js')).pruneTargets(loaded, { dryRun, now, loc: opts });
  if (opts.dryRun)
    return { ...(await plan()), dryRun: true, backupDir, cleanedUp: [], offsite: await offsite(true) };
  const lock = await acquireFileLock(loaded.config.dataDir, 'backup prune');
  let result: PruneResult;
  try {
    const p = await plan();
    const cleanedUp = await cleanupLeftovers(backupDir);
    for (const d of p.delete) {
      // Sidecar first: from that moment the backup is no longer listed; the data file follows.
      await unlink(join(backupDir, sidecarFileName(d.id))).catch(() => undefined);
      await unlink(join(backupDir, dataFileName(d.id))).catch(() => undefined);
      await unlink(join(backupDir, signatureFileName(d.id))).catch(() => undefined);
      // The drill's record and its signature (restore/drill-record.ts) go with their backup.
      for (const c of [`${d.id}.drill.json`, `${d.id}.drill.json.sig`])
        await unlink(join(backupDir, c)).catch(() => undefined);
    }
    if (p.delete.length) await fsyncDir(backupDir);
    result = { ...p, dryRun: false, backupDir, cleanedUp, offsite: await offsite(false) };
  } finally {
    await lock.release();
  }
  if (result.delete.length) {
    try {
      const { withInstall } = await import('../install.js');
      await withInstall({ ...opts, requireMigrated: false }, (install) =>
        appendAudit(install.admin, {
          tenantId: SYSTEM_TENANT,
          actor: cliActor(),
          action: 'backup.prune',
          entityType: 'backup',
          details: { deleted: result.delete.map((d) => ({ id: d.id, reason: d.reason })) },
        }),
      );
    } catch {
      // The deletion happened; a database that is down must not turn a successful prune into a failure.
    }
  }
  return result;
}
