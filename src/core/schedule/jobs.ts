import type { Config } from '../config/schema.js';

/**
 * The jobs attendux schedules. Each is an attendux command line (run as a child process by
 * `attendux schedule exec JOB`, which adds the lock, the run record, the notify hook and the ping).
 *
 * Adding a job is one line here. A job whose command another change has not shipped yet is listed as "not available" and never installed or run until the command, and every flag it passes,
 * exists in this binary's command tree (checked at run time: `planJobs` in ./plan.ts, with the CLI's
 * `hasCommandOf`).
 */
export interface JobDef {
  /** Unit and config name: attendux-<id>.service / .timer, schedule.jobs.<id>. */
  id: string;
  description: string;
  /** Default cron expression (5 fields), or one taken from the config (backup.schedule.*). */
  cron: string | ((c: Config) => string);
  /** The attendux arguments the job runs (global flags are added by `schedule exec`). */
  args: string[];
  /**
   * The command line that must exist in the CLI (subcommands and `--flags`); defaults to `args`. Give it
   * when `args` holds an option's value, which is not a subcommand.
   */
  requires?: string[];
  /** Why the job cannot run with this config, or undefined when it can. */
  unavailableWith?: (c: Config) => string | undefined;
  /** systemd RandomizedDelaySec= where spreading the start is harmless (not for the timed backups). */
  randomizedDelay?: string;
  /** Overdue this long after a scheduled time that did not run. */
  graceMinutes: number;
}

// One line per job, on purpose: adding or removing one is a one-line change.
// prettier-ignore
export const DEFAULT_JOBS: readonly JobDef[] = [
  { id: 'backup-full', description: 'full backup', cron: (c) => c.backup.schedule.full, args: ['backup', 'full'], graceMinutes: 120 },
  { id: 'backup-incremental', description: 'incremental backup', cron: (c) => c.backup.schedule.incremental, args: ['backup', 'incremental', '--full-if-needed'], graceMinutes: 60 },
  { id: 'backup-config', description: 'config backup when something changed', cron: '*/15 * * * *', args: ['backup', 'config', '--if-changed'], randomizedDelay: '60', graceMinutes: 30 },
  { id: 'backup-prune', description: 'apply backup retention', cron: '30 3 * * *', args: ['backup', 'prune', '--yes'], randomizedDelay: '10min', graceMinutes: 120 },
  // The audit issue's commands: listed as "not available" until `audit verify` / `audit purge` exist.
  { id: 'audit-verify', description: 'verify the audit hash chains', cron: '15 4 * * *', args: ['audit', 'verify'], randomizedDelay: '10min', graceMinutes: 120 },
  { id: 'audit-purge', description: 'purge audit entries past retention', cron: '45 4 * * *', args: ['audit', 'purge', '--yes'], randomizedDelay: '10min', graceMinutes: 120 },
  // The DSAR issue's commands (names from PRODUCT.md): "not available" until they exist.
  { id: 'retention-apply', description: 'apply data retention', cron: '0 5 * * *', args: ['retention', 'apply', '--yes'], randomizedDelay: '10min', graceMinutes: 120 },
  { id: 'dsar-overdue', description: 'check for overdue data subject requests', cron: '0 8 * * *', args: ['dsar', 'list', '--overdue'], randomizedDelay: '10min', graceMinutes: 120 },
  { id: 'restore-drill', description: 'restore drill into a throwaway database', cron: '0 5 * * 0', args: ['restore', '--drill'], unavailableWith: (c) => (c.backup.identityFile ? undefined : 'needs backup.identityFile to decrypt the backups'), randomizedDelay: '30min', graceMinutes: 240 },
];

export const DEFAULT_JOB_IDS = DEFAULT_JOBS.map((j) => j.id);
