import { isAttenduxError } from '../../errors.js';
import { loadConfig, type ConfigLocation } from '../config/load.js';
import { hasSeconds, nextRun } from './cron.js';
import { execJob, notifyOverdue, type ExecResult } from './exec.js';
import { isActive, planJobs, type HasCommand } from './plan.js';
import { markScheduled } from './runs.js';
import { refreshPrometheusFile } from './status.js';

export type SchedulerEvent =
  | { type: 'started'; at: string; jobs: { id: string; cron: string; next: string }[] }
  | { type: 'run'; at: string; job: string }
  | { type: 'done'; at: string; job: string; result: ExecResult }
  | { type: 'skipped'; at: string; job: string; reason: string }
  | { type: 'failed'; at: string; job: string; message: string }
  | { type: 'warning'; at: string; job?: string; message: string }
  | { type: 'stopping'; at: string; waitingFor: string | null }
  | { type: 'stopped'; at: string };

export interface SchedulerOptions extends ConfigLocation {
  hasCommand: HasCommand;
  onEvent: (e: SchedulerEvent) => void;
  /** Aborted on SIGTERM: no new run starts, the running one is waited for. */
  stop: AbortSignal;
}

/**
 * The foreground scheduler for containers and hosts without cron: the same jobs at the same times, one at
 * a time, each through execJob (lock, record, ping, hook). A job whose time comes while its previous run is
 * still going (or still queued behind another job) is skipped and logged, never run twice at once.
 */
export async function runScheduler(opts: SchedulerOptions): Promise<void> {
  const loaded = await loadConfig(opts);
  const jobs = planJobs(loaded.config, opts.hasCommand).filter(isActive);
  await markScheduled(loaded.config.dataDir, 'schedule run');
  const at = () => new Date().toISOString();
  const next = new Map<string, Date>();
  for (const j of jobs) next.set(j.id, nextRun(j.cron, j.timeZone, new Date()));
  opts.onEvent({
    type: 'started',
    at: at(),
    jobs: jobs.map((j) => ({ id: j.id, cron: j.cron, next: next.get(j.id)!.toISOString() })),
  });

  const queue: string[] = [];
  // In an object: the run's completion callback clears it, which TypeScript's narrowing cannot see.
  const state: { running: { id: string; done: Promise<void> } | null } = { running: null };
  let wake: (() => void) | null = null;
  const wakeUp = () => wake?.();
  opts.stop.addEventListener('abort', wakeUp, { once: true });
  let lastOverdueCheck = 0;

  const start = (id: string) => {
    opts.onEvent({ type: 'run', at: at(), job: id });
    const done = execJob({ ...opts, job: id, trigger: 'scheduler', detached: true })
      .then((result) => {
        for (const w of result.warnings) opts.onEvent({ type: 'warning', at: at(), job: id, message: w });
        if (result.run.outcome === 'skipped')
          opts.onEvent({ type: 'skipped', at: at(), job: id, reason: result.run.error?.message ?? 'locked' });
        else if (result.run.outcome === 'failure')
          opts.onEvent({ type: 'failed', at: at(), job: id, message: result.run.error?.message ?? 'failed' });
        else opts.onEvent({ type: 'done', at: at(), job: id, result });
      })
      .catch((err: unknown) => {
        if (isAttenduxError(err) && err.code === 'JOB_LOCKED')
          opts.onEvent({ type: 'skipped', at: at(), job: id, reason: err.message });
        else opts.onEvent({ type: 'failed', at: at(), job: id, message: (err as Error).message });
      })
      .finally(() => {
        state.running = null;
        wakeUp();
      });
    state.running = { id, done };
  };

  while (!opts.stop.aborted) {
    const now = new Date();
    for (const j of jobs) {
      if (next.get(j.id)! > now) continue;
      next.set(j.id, nextRun(j.cron, j.timeZone, now));
      if (state.running?.id === j.id || queue.includes(j.id))
        opts.onEvent({ type: 'skipped', at: at(), job: j.id, reason: 'the previous run is still going' });
      else queue.push(j.id);
    }
    if (!state.running && queue.length) start(queue.shift()!);
    if (Date.now() - lastOverdueCheck > 60_000) {
      lastOverdueCheck = Date.now();
      const warnings: string[] = [];
      await notifyOverdue(loaded, opts.hasCommand, new Date(), warnings).catch((e: Error) =>
        warnings.push(e.message),
      );
      await refreshPrometheusFile(loaded, opts.hasCommand, warnings);
      for (const w of warnings) opts.onEvent({ type: 'warning', at: at(), message: w });
    }
    const soonest = Math.min(...[...next.values()].map((d) => d.getTime()), Date.now() + 60_000);
    // Sub-second schedules exist only in tests; a seconds field still wakes at its second.
    const delay = Math.max(jobs.some((j) => hasSeconds(j.cron)) ? 5 : 50, soonest - Date.now());
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, delay);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
    wake = null;
  }
  opts.onEvent({ type: 'stopping', at: at(), waitingFor: state.running?.id ?? null });
  if (state.running) await state.running.done;
  opts.onEvent({ type: 'stopped', at: at() });
}
