import { gaugeText } from '../textfile.js';
import { loadConfig, type ConfigLocation, type LoadedConfig } from '../config/load.js';
import { writeFileAtomic } from '../../lib/fs.js';
import { offsiteStatus, type OffsiteStatus } from '../offsite/status.js';
import { dstNote, localTime, nextRun, nextRuns, previousRun } from './cron.js';
import { isActive, planJobs, scheduleTimeZone, type HasCommand, type PlannedJob } from './plan.js';
import { emptyRecord, readJobRecords, readScheduleMarker, type JobRecord, type JobRun } from './runs.js';

export interface JobStatus {
  id: string;
  description: string;
  cron: string;
  timeZone: string;
  enabled: boolean;
  available: boolean;
  unavailableReason?: string;
  nextRun: string | null;
  nextRunLocal: string | null;
  nextRunNote?: string;
  last: JobRun | null;
  lastSuccess: JobRun | null;
  /** The scheduled time that did not run (overdue), or null. */
  missed: string | null;
  overdue: boolean;
  ok: boolean;
  problem?: string;
}

export interface ScheduleStatus {
  ok: boolean;
  checkedAt: string;
  /** Since when the schedule is installed; a job that never ran is overdue only after this. */
  scheduledSince: string | null;
  jobs: JobStatus[];
  /** The off-site targets' recorded copies (`scheduleStatus` only): a failing target makes it not ok. */
  offsite?: OffsiteStatus;
}

/** Pure: the status of every planned job from its record, at `now`. */
export function jobStatus(job: PlannedJob, rec: JobRecord, now: Date, since: Date | null): JobStatus {
  const active = isActive(job);
  const next = active ? nextRun(job.cron, job.timeZone, now) : null;
  const note = next ? dstNote(job.cron, job.timeZone, next) : undefined;
  let missed: Date | null = null;
  if (active) {
    // The newest scheduled time that is at least the grace period old must have a run started at or after it.
    const due = previousRun(job.cron, job.timeZone, new Date(now.getTime() - job.graceMinutes * 60_000));
    const started = rec.lastStarted ? new Date(rec.lastStarted.startedAt) : null;
    if (started ? started < due : since !== null && due > since) missed = due;
  }
  let problem: string | undefined;
  const lastDone = rec.lastStarted?.outcome === 'running' ? null : rec.lastStarted;
  if (active && lastDone?.outcome === 'failure')
    problem = `last run failed at ${lastDone.finishedAt ?? lastDone.startedAt}: ${lastDone.error?.message ?? `exit ${lastDone.exitCode}`}`;
  else if (missed)
    problem = `overdue: the run due at ${missed.toISOString()} did not start (${rec.lastStarted ? `last started ${rec.lastStarted.startedAt}` : 'never ran'})`;
  return {
    id: job.id,
    description: job.description,
    cron: job.cron,
    timeZone: job.timeZone,
    enabled: job.enabled,
    available: job.available,
    ...(job.unavailableReason ? { unavailableReason: job.unavailableReason } : {}),
    nextRun: next?.toISOString() ?? null,
    nextRunLocal: next ? localTime(next, job.timeZone) : null,
    ...(note ? { nextRunNote: note } : {}),
    last: rec.last,
    lastSuccess: rec.lastSuccess,
    missed: missed?.toISOString() ?? null,
    overdue: missed !== null,
    ok: !problem,
    ...(problem ? { problem } : {}),
  };
}

export interface StatusOptions extends ConfigLocation {
  hasCommand: HasCommand;
  now?: Date;
}

export async function scheduleStatus(opts: StatusOptions): Promise<ScheduleStatus> {
  const loaded = await loadConfig(opts);
  const st = await statusOf(loaded, opts.hasCommand, opts.now ?? new Date());
  // A backup job succeeds even when its off-site copy failed (the local backup is good): the failed copy
  // must still show here, or nobody watching the jobs hears of it.
  const offsite = await offsiteStatus({ loaded });
  return { ...st, ok: st.ok && offsite.ok, offsite };
}

export async function statusOf(
  loaded: LoadedConfig,
  hasCommand: HasCommand,
  now: Date,
): Promise<ScheduleStatus> {
  const dataDir = loaded.config.dataDir;
  const records = await readJobRecords(dataDir);
  const marker = await readScheduleMarker(dataDir);
  const since = marker ? new Date(marker.since) : null;
  const jobs = planJobs(loaded.config, hasCommand).map((j) =>
    jobStatus(j, records.get(j.id) ?? emptyRecord(j.id), now, since),
  );
  return {
    ok: jobs.every((j) => j.ok),
    checkedAt: now.toISOString(),
    scheduledSince: marker?.since ?? null,
    jobs,
  };
}

/** Rewrite schedule.prometheusFile, when set, after a run; a failure to write it is a warning. */
export async function refreshPrometheusFile(
  loaded: LoadedConfig,
  hasCommand: HasCommand,
  warnings: string[],
): Promise<void> {
  const file = loaded.config.schedule.prometheusFile;
  if (!file) return;
  try {
    await writeScheduleMetrics(file, await statusOf(loaded, hasCommand, new Date()));
  } catch (err) {
    warnings.push(`could not write ${file}: ${(err as Error).message}`);
  }
}

/** node_exporter textfile metrics of every job, rendered by prom-client. */
export async function scheduleMetrics(st: ScheduleStatus): Promise<string> {
  const seconds = (iso: string | null | undefined) => (iso ? Date.parse(iso) / 1000 : undefined);
  return gaugeText('job', st.jobs, (j) => j.id, [
    [
      'attendux_job_last_run_timestamp_seconds',
      'Unix time the last run of the job started.',
      (j) => seconds(j.last?.startedAt),
    ],
    [
      'attendux_job_last_success_timestamp_seconds',
      'Unix time the last successful run of the job started.',
      (j) => seconds(j.lastSuccess?.startedAt),
    ],
    [
      'attendux_job_last_run_success',
      '1 if the last finished run of the job succeeded, else 0.',
      (j) => (j.last && j.last.outcome !== 'running' ? (j.last.outcome === 'failure' ? 0 : 1) : undefined),
    ],
    [
      'attendux_job_last_run_duration_seconds',
      'Duration of the last finished run of the job.',
      (j) => (j.last?.durationMs != null ? j.last.durationMs / 1000 : undefined),
    ],
    [
      'attendux_job_last_run_size_bytes',
      'Size of what the last run produced (a backup file).',
      (j) => j.last?.bytes ?? undefined,
    ],
    [
      'attendux_job_next_run_timestamp_seconds',
      'Unix time of the next scheduled run.',
      (j) => seconds(j.nextRun),
    ],
    [
      'attendux_job_overdue',
      '1 if a scheduled run of the job did not start in time.',
      (j) => (j.enabled && j.available ? (j.overdue ? 1 : 0) : undefined),
    ],
    [
      'attendux_job_ok',
      '1 if the job is neither overdue nor failing (or is not scheduled), else 0.',
      (j) => (j.ok ? 1 : 0),
    ],
  ]);
}

/** Written atomically so node_exporter never reads half a file. */
export async function writeScheduleMetrics(path: string, st: ScheduleStatus): Promise<void> {
  await writeFileAtomic(path, await scheduleMetrics(st), 0o644);
}

export interface ShownJob {
  id: string;
  description: string;
  cron: string;
  timeZone: string;
  command: string;
  enabled: boolean;
  available: boolean;
  unavailableReason?: string;
  /** The next runs: UTC, wall-clock time in the zone, and what a DST change does to it. */
  next: { at: string; local: string; note?: string }[];
}

/** Every job with its expression and its next `count` runs in the configured time zone. */
export async function scheduleShow(
  opts: StatusOptions & { count?: number },
): Promise<{ timeZone: string; jobs: ShownJob[] }> {
  const loaded = await loadConfig(opts);
  const now = opts.now ?? new Date();
  const jobs = planJobs(loaded.config, opts.hasCommand);
  return {
    timeZone: scheduleTimeZone(loaded.config),
    jobs: jobs.map((j) => ({
      id: j.id,
      description: j.description,
      cron: j.cron,
      timeZone: j.timeZone,
      command:
        j.command.kind === 'attendux' ? `attendux ${j.command.args.join(' ')}` : j.command.argv.join(' '),
      enabled: j.enabled,
      available: j.available,
      ...(j.unavailableReason ? { unavailableReason: j.unavailableReason } : {}),
      next: isActive(j)
        ? nextRuns(j.cron, j.timeZone, now, opts.count ?? 3).map((d) => {
            const note = dstNote(j.cron, j.timeZone, d);
            return { at: d.toISOString(), local: localTime(d, j.timeZone), ...(note ? { note } : {}) };
          })
        : [],
    })),
  };
}
