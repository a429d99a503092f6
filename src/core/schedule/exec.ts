import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { AttenduxError, isAttenduxError } from '../../errors.js';
import { acquireFileLock } from '../backup/lock.js';
import { loadConfig, type ConfigLocation, type LoadedConfig } from '../config/load.js';
import { payload, ping, runNotify } from './notify.js';
import { planJobs, type HasCommand, type PlannedJob } from './plan.js';
import {
  readJobRecord,
  readJobRecords,
  readScheduleMarker,
  recordRun,
  writeJobRecord,
  emptyRecord,
  type JobRun,
} from './runs.js';
import { jobStatus, refreshPrometheusFile } from './status.js';

/** The attendux entry point a job's child process runs: the same installation as this process. */
export const ATTENDUX_BIN = fileURLToPath(new URL('../../../bin/attendux.js', import.meta.url));

export interface ExecOptions extends ConfigLocation {
  job: string;
  hasCommand: HasCommand;
  /** cron, systemd, scheduler or manual: recorded with the run. */
  trigger?: string;
  /** Aborting kills the job (SIGTERM): `schedule exec` under a stopping systemd unit. */
  signal?: AbortSignal;
  /** Run the child in its own process group so a Ctrl-C or a group SIGTERM does not reach it (schedule run). */
  detached?: boolean;
  now?: () => Date;
}

export interface ExecResult {
  job: string;
  run: JobRun;
  /** Problems of the notify hook or the ping: reported, never a reason to fail the job. */
  warnings: string[];
  /** Jobs found overdue after this run whose hook was run now. */
  overdueNotified: string[];
}

export function findJob(loaded: LoadedConfig, id: string, hasCommand: HasCommand): PlannedJob {
  const jobs = planJobs(loaded.config, hasCommand);
  const job = jobs.find((j) => j.id === id);
  if (!job)
    throw new AttenduxError('JOB_UNAVAILABLE', `unknown job "${id}"`, {
      hint: `jobs: ${jobs.map((j) => j.id).join(', ')}`,
    });
  if (!job.available)
    throw new AttenduxError('JOB_UNAVAILABLE', `job ${id} is not available: ${job.unavailableReason}`);
  if (!job.enabled)
    throw new AttenduxError('JOB_UNAVAILABLE', `job ${id} is disabled (schedule.jobs.${id}.enabled)`, {
      hint: 'enable it, or run `attendux schedule install` again to remove it from the schedule',
    });
  return job;
}

function lastLine(text: string): string | undefined {
  return text
    .trim()
    .split('\n')
    .filter(Boolean)
    .pop()
    ?.replace(/^attendux: /, '');
}

/** What an attendux child printed with --json: the error, or the result's size. */
function parseChildJson(stdout: string): { error?: { code?: string; message: string }; bytes?: number } {
  const text = stdout.trim();
  if (!text.startsWith('{')) return {};
  try {
    const v = JSON.parse(text) as {
      error?: { code?: string; message?: string };
      sidecar?: { bytes?: number };
      bytes?: number;
    };
    if (v.error) return { error: { code: v.error.code, message: v.error.message ?? 'failed' } };
    const bytes = v.sidecar?.bytes ?? v.bytes;
    return typeof bytes === 'number' ? { bytes } : {};
  } catch {
    // the job printed no JSON result (a crash or an old version): no details
    return {};
  }
}

/**
 * Run one job as cron, systemd and `schedule run` do: take the job's lock (a second run exits 75), record
 * the start, ping, run the command as a child process, record the outcome with duration and size, ping
 * again, and on failure run the notify hook. Afterwards every other job is checked for being overdue, so
 * a missing run is reported within one run of the most frequent job.
 */
export async function execJob(opts: ExecOptions): Promise<ExecResult> {
  const now = opts.now ?? (() => new Date());
  const loaded = await loadConfig(opts);
  const { config } = loaded;
  const dataDir = config.dataDir;
  const job = findJob(loaded, opts.job, opts.hasCommand);
  const trigger = opts.trigger ?? 'manual';
  const startedAt = now();
  const warnings: string[] = [];
  const base = { job: job.id, pid: process.pid, trigger, bytes: null };

  const lock = await lockJob(dataDir, job.id, base, startedAt, now);

  let run: JobRun;
  try {
    const rec = await readJobRecord(dataDir, job.id);
    const startedBefore = rec.lastStarted;
    rec.last = rec.lastStarted = {
      ...base,
      outcome: 'running',
      startedAt: startedAt.toISOString(),
      finishedAt: null,
      durationMs: null,
      exitCode: null,
    };
    await writeJobRecord(dataDir, rec);
    const w = await ping(config, job.id, 'start');
    if (w) warnings.push(w);

    run = await runCommand(job, loaded, opts, base, startedAt, now);
    // A run its own command refused (exit 75) did not happen: overdue is still measured from the one before.
    await recordRun(dataDir, run, run.outcome === 'skipped' ? { lastStarted: startedBefore } : {});
    const pw = await ping(config, job.id, run.outcome === 'failure' ? 'fail' : 'success', run);
    if (pw) warnings.push(pw);
    if (run.outcome === 'failure') {
      const nw = await runNotify(
        config,
        payload({
          event: 'failure',
          job: job.id,
          description: job.description,
          run,
          problem: `job ${job.id} failed: ${run.error?.message}`,
        }),
      );
      if (nw) warnings.push(nw);
    }
  } finally {
    await lock.release();
  }
  const overdueNotified = await notifyOverdue(loaded, opts.hasCommand, now(), warnings);
  await refreshPrometheusFile(loaded, opts.hasCommand, warnings);
  return { job: job.id, run, warnings, overdueNotified };
}

type RunBase = { job: string; pid: number; trigger: NonNullable<ExecOptions['trigger']>; bytes: null };

/** The job's lock; when another run holds it, this run is recorded as skipped and JOB_LOCKED thrown (75). */
async function lockJob(
  dataDir: string,
  jobId: string,
  base: RunBase,
  startedAt: Date,
  now: () => Date,
): Promise<{ release(): Promise<void> }> {
  const job = { id: jobId };
  try {
    return await acquireFileLock(dataDir, `schedule exec ${job.id}`, `job-${job.id}.lock`);
  } catch (err) {
    if (!isAttenduxError(err) || err.code !== 'BACKUP_LOCKED') throw err;
    const holder = err.details?.lock as { pid?: number; startedAt?: string } | null | undefined;
    const msg = `job ${job.id} is already running${holder?.pid ? ` (pid ${holder.pid}, since ${holder.startedAt})` : ''}; skipped`;
    await recordRun(dataDir, {
      ...base,
      outcome: 'skipped',
      startedAt: startedAt.toISOString(),
      finishedAt: now().toISOString(),
      durationMs: 0,
      exitCode: 75,
      error: { code: 'JOB_LOCKED', message: msg },
    });
    throw new AttenduxError('JOB_LOCKED', msg, { details: { lock: holder ?? null } });
  }
}

/** Run the job's command as a child process and say what came of it. */
async function runCommand(
  job: PlannedJob,
  loaded: LoadedConfig,
  opts: ExecOptions,
  base: RunBase,
  startedAt: Date,
  now: () => Date,
): Promise<JobRun> {
  const [file, ...args] =
    job.command.kind === 'attendux'
      ? [process.execPath, ATTENDUX_BIN, '--config', loaded.path, '--json', ...job.command.args]
      : job.command.argv;
  const child = await execa(file!, args, {
    reject: false,
    stdin: 'ignore',
    timeout: job.timeoutMinutes * 60_000,
    cancelSignal: opts.signal,
    detached: opts.detached ?? false,
    cleanup: !opts.detached,
    env: { ATTENDUX_JOB: job.id },
    maxBuffer: 16 * 1024 * 1024,
  });
  const finishedAt = now();
  const stdout = String(child.stdout ?? '');
  const stderr = String(child.stderr ?? '');
  const parsed = job.command.kind === 'attendux' ? parseChildJson(stdout) : {};
  const exitCode = child.exitCode ?? null;
  const timing = {
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationMs: finishedAt.getTime() - startedAt.getTime(),
    exitCode,
  };
  if (exitCode === 0) {
    return { ...base, ...timing, outcome: 'success', bytes: parsed.bytes ?? null };
  } else if (exitCode === 75) {
    // The command's own lock (a backup started by hand): try later, not a failure.
    return {
      ...base,
      ...timing,
      outcome: 'skipped',
      error: parsed.error ?? { message: lastLine(stderr) ?? 'locked' },
    };
  } else {
    const why = child.timedOut
      ? `killed after ${job.timeoutMinutes} min (schedule.jobs.${job.id}.timeoutMinutes)`
      : child.isCanceled
        ? 'stopped (SIGTERM) before it finished'
        : (parsed.error?.message ??
          lastLine(stderr) ??
          (child.signal
            ? `killed by ${child.signal}`
            : child.failed && exitCode === null
              ? child.shortMessage
              : `exit ${exitCode}`) ??
          'failed');
    return {
      ...base,
      ...timing,
      outcome: 'failure',
      error: { ...(parsed.error?.code ? { code: parsed.error.code } : {}), message: why },
    };
  }
}

/** Run the notify hook once for each job that has become overdue since it was last told. */
export async function notifyOverdue(
  loaded: LoadedConfig,
  hasCommand: HasCommand,
  now: Date,
  warnings: string[],
): Promise<string[]> {
  const { config } = loaded;
  if (!config.notify.command) return [];
  const dataDir = config.dataDir;
  const records = await readJobRecords(dataDir);
  const marker = await readScheduleMarker(dataDir);
  const since = marker ? new Date(marker.since) : null;
  const told: string[] = [];
  for (const job of planJobs(config, hasCommand)) {
    const rec = records.get(job.id) ?? emptyRecord(job.id);
    const st = jobStatus(job, rec, now, since);
    if (!st.overdue || rec.overdueNotifiedFor === st.missed) continue;
    const w = await runNotify(
      config,
      payload({
        event: 'overdue',
        job: job.id,
        description: job.description,
        run: rec.lastStarted,
        missed: st.missed!,
        problem: st.problem ?? 'overdue',
      }),
    );
    if (w) warnings.push(w);
    await writeJobRecord(dataDir, {
      ...(await readJobRecord(dataDir, job.id)),
      overdueNotifiedFor: st.missed!,
    });
    told.push(job.id);
  }
  return told;
}
