import type { Config } from '../config/schema.js';
import { DEFAULT_JOBS } from './jobs.js';

/** Does this attendux binary have this command line (e.g. ['dsar', 'list', '--overdue'])? Given by the CLI. */
export type HasCommand = (path: string[]) => boolean;

export interface PlannedJob {
  id: string;
  description: string;
  cron: string;
  timeZone: string;
  /** attendux arguments (built-in jobs) or a program and its arguments (an admin's own `exec` job). */
  command: { kind: 'attendux'; args: string[] } | { kind: 'exec'; argv: string[] };
  builtIn: boolean;
  enabled: boolean;
  available: boolean;
  /** Why it is not available: a command not in this version, or a missing setting. */
  unavailableReason?: string;
  graceMinutes: number;
  timeoutMinutes: number;
  randomizedDelay?: string;
}

export const isActive = (j: PlannedJob) => j.enabled && j.available;

export function scheduleTimeZone(config: Config): string {
  return config.schedule.timeZone ?? config.backup.schedule.timeZone;
}

/** The built-in jobs with the config's overrides, then the admin's own jobs, in that order. */
export function planJobs(config: Config, hasCommand: HasCommand): PlannedJob[] {
  const tz = scheduleTimeZone(config);
  const overrides = config.schedule.jobs;
  const out: PlannedJob[] = [];
  for (const def of DEFAULT_JOBS) {
    const o = overrides[def.id] ?? {};
    const requires = def.requires ?? def.args;
    const missing = hasCommand(requires)
      ? undefined
      : `\`attendux ${requires.join(' ')}\` is not in this version`;
    const reason = missing ?? def.unavailableWith?.(config);
    out.push({
      id: def.id,
      description: o.description ?? def.description,
      cron: o.cron ?? (typeof def.cron === 'function' ? def.cron(config) : def.cron),
      timeZone: tz,
      command: { kind: 'attendux', args: def.args },
      builtIn: true,
      enabled: o.enabled ?? true,
      available: !reason,
      ...(reason ? { unavailableReason: reason } : {}),
      graceMinutes: o.graceMinutes ?? def.graceMinutes,
      timeoutMinutes: o.timeoutMinutes ?? 360,
      ...(def.randomizedDelay ? { randomizedDelay: def.randomizedDelay } : {}),
    });
  }
  for (const [id, o] of Object.entries(overrides)) {
    if (DEFAULT_JOBS.some((d) => d.id === id) || !o.exec || !o.cron) continue;
    out.push({
      id,
      description: o.description ?? `${o.exec.join(' ')}`,
      cron: o.cron,
      timeZone: tz,
      command: { kind: 'exec', argv: o.exec },
      builtIn: false,
      enabled: o.enabled ?? true,
      available: true,
      graceMinutes: o.graceMinutes ?? 60,
      timeoutMinutes: o.timeoutMinutes ?? 360,
    });
  }
  return out;
}
