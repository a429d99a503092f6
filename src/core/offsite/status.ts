import { readCatalog } from '../archive/catalog.js';
import type { LoadedConfig } from '../config/load.js';
import { gaugeText } from '../textfile.js';
import { dataFileName, sidecarFileName } from '../archive/format.js';
import type { TargetConfig } from './schema.js';
import { configuredTargets, connect, readTargetState, type TargetState } from './copy.js';

// ---------------------------------------------------------------------------------------------------------
// Status (for `backup status`, `schedule status`, `doctor`)

export interface TargetStatus {
  name: string;
  type: TargetConfig['type'];
  ok: boolean;
  state: TargetState | null;
  problem?: string;
  /** With `remote`: local backups the target lacks (or holds incomplete), and whether the newest full is there. */
  missing?: string[];
  newestFullPresent?: boolean;
}

export interface OffsiteStatus {
  ok: boolean;
  targets: TargetStatus[];
}

/**
 * Off-site copies at a glance. Without `remote` only the recorded outcomes are read (no network: cheap
 * enough for a 5-minute cron); with `remote` each target is listed and compared with the local backups.
 */
export async function offsiteStatus(
  install: { loaded: LoadedConfig },
  opts: { remote?: boolean } = {},
): Promise<OffsiteStatus> {
  const loaded = install.loaded;
  const { targets, secrets } = await configuredTargets(loaded);
  const local = (await readCatalog(loaded.backupDir)).backups.filter((b) => b.status === 'ok');
  const out: TargetStatus[] = [];
  for (const t of targets) {
    const state = await readTargetState(loaded.backupDir, t.name);
    let problem: string | undefined;
    if (state?.lastOutcome === 'failure')
      problem = `last copy failed at ${state.lastAttemptAt}: ${state.lastError?.message ?? 'unknown error'}`;
    else if (state?.failed.length)
      problem = `${state.failed.length} backup(s) not copied (${state.failed.join(', ')}): run \`attendux backup sync\``;
    else if (!state && local.length) problem = 'nothing copied yet: run `attendux backup sync`';
    const st: TargetStatus = {
      name: t.name,
      type: t.type,
      ok: !problem,
      state,
      ...(problem ? { problem } : {}),
    };
    if (opts.remote) {
      try {
        const target = await connect(t, secrets);
        try {
          const files = new Map((await target.list()).map((f) => [f.name, f.bytes]));
          st.missing = local
            .filter((b) => !files.has(sidecarFileName(b.id)) || files.get(dataFileName(b.id)) !== b.bytes)
            .map((b) => b.id);
          const newestFull = local.filter((b) => b.kind === 'full').at(-1);
          st.newestFullPresent = newestFull ? !st.missing.includes(newestFull.id) : false;
          if (st.missing.length && !st.problem) {
            st.ok = false;
            st.problem = `${st.missing.length} backup(s) missing on the target: run \`attendux backup sync\``;
          }
        } finally {
          await target.close();
        }
      } catch (err) {
        st.ok = false;
        st.problem = (err as Error).message;
      }
    }
    out.push(st);
  }
  return { ok: out.every((s) => s.ok), targets: out };
}

/** node_exporter textfile metrics of the targets (appended to `backup status --prometheus`), by prom-client. */
export async function offsitePrometheusText(st: OffsiteStatus): Promise<string> {
  if (!st.targets.length) return '';
  return gaugeText('target', st.targets, (t) => t.name, [
    [
      'attendux_backup_offsite_ok',
      '1 if the last copy to this target succeeded and nothing waits for backup sync, else 0.',
      (t) => (t.ok ? 1 : 0),
    ],
    [
      'attendux_backup_offsite_last_success_timestamp_seconds',
      'Unix time of the last successful copy to this target.',
      (t) => (t.state?.lastSuccessAt ? Date.parse(t.state.lastSuccessAt) / 1000 : null),
    ],
  ]);
}
