import { AttenduxError, isAttenduxError } from '../../errors.js';
import type { Acting } from '../actor.js';
import type { ConfigLocation, LoadedConfig } from '../config/load.js';
import { sidecarFileName } from '../archive/format.js';
import { planPrune, type PrunePlan } from '../backup/prune.js';
import { configuredTargets, connect } from './copy.js';
import { remoteCatalog } from './remote.js';
import { auditBackupOperation } from '../backup/audit-entry.js';
import { offsiteError } from './target.js';

// The same retention as the local prune, on each target (`backup prune`).

export interface TargetPruneResult extends PrunePlan {
  target: string;
  dryRun: boolean;
  error?: { code: string; message: string };
}

/**
 * Apply the same retention (`planPrune`) to each target's own backups: chains protected, the newest full
 * never deleted. Sidecar first, then the data file, newest first, as locally. Never throws: a target that
 * fails is reported in its result.
 */
export async function pruneTargets(
  loaded: LoadedConfig,
  opts: {
    dryRun: boolean;
    now: Date;
    loc?: ConfigLocation & Acting;
    /** What the dry run showed: delete exactly that (a target not shown, or failed then, is left alone). */
    planned?: TargetPruneResult[];
  },
): Promise<TargetPruneResult[]> {
  const { targets, secrets } = await configuredTargets(loaded);
  const out: TargetPruneResult[] = [];
  for (const t of targets) {
    const shown = opts.planned?.find((p) => p.target === t.name);
    if (opts.planned && (!shown || shown.error)) continue;
    const r: TargetPruneResult = { target: t.name, dryRun: opts.dryRun, delete: [], keep: [] };
    out.push(r);
    try {
      const target = await connect(t, secrets);
      try {
        const cat = await remoteCatalog(target);
        const plan = shownPlan(
          planPrune(cat.backups, loaded.config.backup.retention, opts.now),
          shown,
          t.name,
        );
        r.delete = plan.delete;
        r.keep = plan.keep;
        if (!opts.dryRun) {
          const names = new Set((await target.list()).map((f) => f.name));
          for (const d of plan.delete) {
            // A backup of the plan that is already gone (removed meanwhile) has nothing left to remove.
            if (names.has(sidecarFileName(d.id))) await target.remove(sidecarFileName(d.id));
            for (const n of names)
              if (n.startsWith(`${d.id}.`) && n !== sidecarFileName(d.id)) await target.remove(n);
          }
        }
      } finally {
        await target.close();
      }
    } catch (err) {
      const e = isAttenduxError(err) ? err : offsiteError(t, 'prune failed', err);
      r.error = { code: e.code, message: e.message };
    }
    if (!opts.dryRun && (r.delete.length || r.error))
      await auditBackupOperation(opts.loc ?? { configPath: loaded.path }, 'backup.offsite.prune', {
        target: t.name,
        outcome: r.error ? 'failure' : 'success',
        deleted: r.delete.map((d) => ({ id: d.id, reason: d.reason })),
        ...(r.error ? { error: r.error.code, message: r.error.message } : {}),
      });
  }
  return out;
}

/**
 * The plan shown for a target, checked against its state now: a backup it deletes that retention would
 * now keep (one that arrived since builds on it) fails the target's prune before anything is deleted.
 */
function shownPlan(fresh: PrunePlan, shown: TargetPruneResult | undefined, target: string): PrunePlan {
  if (!shown) return fresh;
  const kept = shown.delete.filter((d) => fresh.keep.some((k) => k.id === d.id));
  if (kept.length)
    throw new AttenduxError(
      'CONFLICT',
      `target ${target}: the backups changed since the prune was planned: ${kept.map((d) => d.id).join(', ')} must now be kept`,
      { hint: 'run `attendux backup prune` again to see the new plan' },
    );
  return { delete: shown.delete, keep: shown.keep };
}
