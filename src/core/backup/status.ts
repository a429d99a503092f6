import { loadConfig, type ConfigLocation, type LoadedConfig } from '../config/load.js';
import { writeFileAtomic } from '../../lib/fs.js';
import { gaugeText } from '../textfile.js';
import { newestOf, readCatalog, type CatalogProblem } from '../archive/catalog.js';
import type { BackupKind } from '../archive/format.js';
import { readLastRun, type LastRun } from './run.js';
import { readJobRecords, type JobRun } from '../schedule/runs.js';
import { sidecarAuditStatus } from '../audit/backup.js';
import { readNewestDrill } from '../restore/drill-record.js';

export interface KindStatus {
  kind: BackupKind;
  ok: boolean;
  newest: { id: string; createdAt: string; bytes: number; durationMs: number } | null;
  ageHours: number | null;
  /** Stale after this many hours; null: never stale by age (config backups happen on change). */
  staleAfterHours: number | null;
  lastRun: LastRun | null;
  /** The audit log's verification recorded when the newest backup was taken (database backups). */
  audit?: { ok: boolean; line: string } | null;
  problem?: string;
}

export interface BackupStatus {
  ok: boolean;
  backupDir: string;
  checkedAt: string;
  kinds: KindStatus[];
  /** The last run of each scheduled backup job (`schedule exec backup-*`), prune included. */
  jobs: JobRun[];
  /** Backups whose sidecar is unreadable or missing (status is then not ok). */
  problems: CatalogProblem[];
  /**
   * The newest restore drill's signed record (`<id>.drill.json`), or null when none was recorded. Shown,
   * not part of `ok`: a failed drill is doctor's `backup.drill` failure, not a stale backup.
   */
  drill: {
    id: string;
    at: string;
    ok: boolean;
    verified: boolean;
    failed: string[];
    audit: { ok: boolean; detail: string } | null;
  } | null;
}

/** Age of the newest good backup of each kind against its threshold, and whether its last run failed. */
export async function backupStatus(
  opts: ConfigLocation & { now?: Date } & { loaded?: LoadedConfig } = {},
): Promise<BackupStatus> {
  const loaded = opts.loaded ?? (await loadConfig(opts));
  const now = opts.now ?? new Date();
  const catalog = await readCatalog(loaded.backupDir);
  const stale = loaded.config.backup.staleAfterHours;
  const kinds: KindStatus[] = [];
  for (const kind of ['full', 'incremental', 'config'] as const) {
    const newest = newestOf(catalog, kind);
    const lastRun = await readLastRun(loaded.backupDir, kind);
    const threshold = kind === 'config' ? null : stale[kind];
    const ageHours = newest
      ? (now.getTime() - Date.parse(newest.finishedAt ?? newest.createdAt)) / 3_600_000
      : null;
    let problem: string | undefined;
    if (
      lastRun?.outcome === 'failure' &&
      (!newest || lastRun.finishedAt > (newest.finishedAt ?? newest.createdAt))
    )
      problem = `last run failed at ${lastRun.finishedAt}: ${lastRun.error?.message ?? 'unknown error'}`;
    else if (threshold !== null && ageHours === null) problem = 'no successful backup yet';
    else if (threshold !== null && ageHours !== null && ageHours > threshold)
      problem = `newest is ${ageHours.toFixed(1)} h old (stale after ${threshold} h)`;
    const audit = newest && kind !== 'config' ? sidecarAuditStatus(newest) : null;
    if (!problem && audit && !audit.ok) problem = audit.line;
    kinds.push({
      kind,
      ok: !problem,
      newest: newest
        ? { id: newest.id, createdAt: newest.createdAt, bytes: newest.bytes, durationMs: newest.durationMs }
        : null,
      ageHours,
      staleAfterHours: threshold,
      lastRun,
      ...(audit ? { audit } : {}),
      ...(problem ? { problem } : {}),
    });
  }
  const jobs = [...(await readJobRecords(loaded.config.dataDir)).values()]
    .filter((r) => r.job.startsWith('backup-') && r.last)
    .map((r) => r.last!);
  const drill = await readNewestDrill(loaded);
  return {
    ok: kinds.every((k) => k.ok) && catalog.problems.length === 0,
    backupDir: loaded.backupDir,
    checkedAt: now.toISOString(),
    kinds,
    jobs,
    problems: catalog.problems,
    drill: drill
      ? {
          id: drill.record.id,
          at: drill.record.at,
          ok: drill.record.ok,
          verified: drill.verified,
          failed: drill.record.failed,
          audit: drill.record.audit,
        }
      : null,
  };
}

/** node_exporter textfile metrics of each backup kind (gauges labelled by kind), rendered by prom-client. */
export function prometheusText(st: BackupStatus): Promise<string> {
  return gaugeText('kind', st.kinds, (k) => k.kind, [
    [
      'attendux_backup_last_success_timestamp_seconds',
      'Unix time the newest successful backup of this kind was taken.',
      (k) => (k.newest ? Date.parse(k.newest.createdAt) / 1000 : null),
    ],
    [
      'attendux_backup_last_size_bytes',
      'Size of the newest successful backup file.',
      (k) => k.newest?.bytes ?? null,
    ],
    [
      'attendux_backup_last_duration_seconds',
      'Duration of the newest successful backup.',
      (k) => (k.newest ? k.newest.durationMs / 1000 : null),
    ],
    [
      'attendux_backup_last_run_success',
      '1 if the last run of this kind succeeded, 0 if it failed.',
      (k) => (k.lastRun ? (k.lastRun.outcome === 'success' ? 1 : 0) : null),
    ],
    [
      'attendux_backup_ok',
      '1 if this kind is fresh and its last run succeeded, else 0.',
      (k) => (k.ok ? 1 : 0),
    ],
  ]);
}

/**
 * `backup status` with the off-site targets: one config load, and `ok` only when both are. With `prometheus`,
 * the kinds' and the targets' gauges go to that one file, written atomically so node_exporter never reads
 * half of it.
 */
export async function backupStatusWithTargets(opts: ConfigLocation & { now?: Date; prometheus?: string }) {
  const { offsiteStatus, offsitePrometheusText } = await import('../offsite/status.js');
  const loaded = await loadConfig(opts);
  const base = await backupStatus({ ...opts, loaded });
  const offsite = await offsiteStatus({ loaded });
  if (opts.prometheus)
    await writeFileAtomic(
      opts.prometheus,
      (await prometheusText(base)) + (await offsitePrometheusText(offsite)),
      0o644,
    );
  return { ...base, ok: base.ok && offsite.ok, offsite };
}
