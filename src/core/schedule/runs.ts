import { mkdir, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../lib/fs.js';

/**
 * Every job run is recorded in `<dataDir>/jobs/<job>.json`: files, not the database, so that a run that
 * failed because PostgreSQL is down is on the record too, and `schedule status`, `backup status` and
 * `doctor` can read it without a database.
 */
export interface JobRun {
  job: string;
  outcome: 'running' | 'success' | 'failure' | 'skipped';
  startedAt: string;
  finishedAt: string | null;
  durationMs: number | null;
  exitCode: number | null;
  /** Size of what the run produced (a backup's file), when it says. */
  bytes: number | null;
  error?: { code?: string; message: string };
  pid: number;
  trigger: string;
}

export interface JobRecord {
  job: string;
  /** The newest run of any outcome (a skipped overlap included). */
  last: JobRun | null;
  /** The newest run that actually started (not skipped): what overdue is measured against. */
  lastStarted: JobRun | null;
  lastSuccess: JobRun | null;
  lastFailure: JobRun | null;
  /** The missed scheduled time the notify hook was last told about, so it is told once per miss. */
  overdueNotifiedFor?: string;
}

/** Written by `schedule install` and `schedule run`: jobs that never ran are overdue only after this. */
export interface ScheduleMarker {
  since: string;
  via: string;
  /** Set by `schedule uninstall` of the same kind: nothing runs the jobs any more (doctor warns). */
  uninstalledAt?: string;
}

export const jobsDir = (dataDir: string) => join(dataDir, 'jobs');
const recordFile = (dataDir: string, job: string) => join(jobsDir(dataDir), `${job}.json`);

export function emptyRecord(job: string): JobRecord {
  return { job, last: null, lastStarted: null, lastSuccess: null, lastFailure: null };
}

export async function readJobRecord(dataDir: string, job: string): Promise<JobRecord> {
  try {
    return {
      ...emptyRecord(job),
      ...(JSON.parse(await readFile(recordFile(dataDir, job), 'utf8')) as JobRecord),
    };
  } catch {
    // no record yet (the job never ran) or a torn one: an empty record
    return emptyRecord(job);
  }
}

/** Every job record in the data dir, including jobs no longer configured (doctor lists those too). */
export async function readJobRecords(dataDir: string): Promise<Map<string, JobRecord>> {
  const out = new Map<string, JobRecord>();
  const names = await readdir(jobsDir(dataDir)).catch(() => [] as string[]); // no job has run yet
  for (const n of names) {
    if (!/^[a-z][a-z0-9-]*\.json$/.test(n) || n === 'schedule.json') continue;
    const job = n.slice(0, -5);
    out.set(job, await readJobRecord(dataDir, job));
  }
  return out;
}

export async function writeJobRecord(dataDir: string, rec: JobRecord): Promise<void> {
  await mkdir(jobsDir(dataDir), { recursive: true, mode: 0o700 });
  await writeFileAtomic(recordFile(dataDir, rec.job), JSON.stringify(rec, null, 2) + '\n', 0o600);
}

/** Fold one run into the job's record. */
export async function recordRun(
  dataDir: string,
  run: JobRun,
  restore: { lastStarted?: JobRun | null } = {},
): Promise<JobRecord> {
  const rec = await readJobRecord(dataDir, run.job);
  if ('lastStarted' in restore) rec.lastStarted = restore.lastStarted ?? null;
  rec.last = run;
  if (run.outcome !== 'skipped') rec.lastStarted = run;
  if (run.outcome === 'success') rec.lastSuccess = run;
  if (run.outcome === 'failure') rec.lastFailure = run;
  await writeJobRecord(dataDir, rec);
  return rec;
}

const markerFile = (dataDir: string) => join(jobsDir(dataDir), 'schedule.json');

export async function readScheduleMarker(dataDir: string): Promise<ScheduleMarker | null> {
  try {
    return JSON.parse(await readFile(markerFile(dataDir), 'utf8')) as ScheduleMarker;
  } catch {
    // no marker: the schedule was never installed
    return null;
  }
}

/** Keep the first `since`: re-installing must not forgive jobs that have been missing for a week. */
export async function markScheduled(dataDir: string, via: string, now = new Date()): Promise<void> {
  const old = await readScheduleMarker(dataDir);
  if (old && !old.uninstalledAt) return;
  await mkdir(jobsDir(dataDir), { recursive: true, mode: 0o700 });
  const marker: ScheduleMarker = { since: old?.since ?? now.toISOString(), via };
  await writeFileAtomic(markerFile(dataDir), JSON.stringify(marker) + '\n', 0o600);
}

/** `schedule uninstall`: the schedule `via` installed is gone (`since` is kept for a re-install). */
export async function markUnscheduled(dataDir: string, via: string, now = new Date()): Promise<void> {
  const old = await readScheduleMarker(dataDir);
  if (!old || old.via !== via || old.uninstalledAt) return;
  const marker: ScheduleMarker = { ...old, uninstalledAt: now.toISOString() };
  await writeFileAtomic(markerFile(dataDir), JSON.stringify(marker) + '\n', 0o600);
}
