import type { LoadedConfig } from '../config/load.js';
import type { Install } from '../install.js';
import type { HasCommand } from '../schedule/plan.js';

export type CheckStatus = 'pass' | 'warn' | 'fail' | 'skip';

export interface CheckResult {
  status: CheckStatus;
  message: string;
  /** One line saying what to do; null when there is nothing to do. */
  fix: string | null;
  /** A safe fix doctor --fix may apply itself (file modes, ownership). */
  apply?: () => Promise<void>;
}

/** What the checks look at; every part may be missing (then the checks that need it skip). */
export interface DoctorEnv {
  loaded?: LoadedConfig;
  /** Why the config could not be loaded. */
  configError?: Error;
  /** The install, opened (database reachable), or why not. */
  install?: Install;
  installError?: Error;
  now: Date;
  /** Overridable in tests: how the server is probed, where mounts and block devices are read from. */
  fetch?: typeof fetch;
  procRoot?: string;
  sysRoot?: string;
  run?: (cmd: string, args: string[]) => Promise<string>;
  /** The oldest PostgreSQL major db.version accepts (MIN_PG unless a test raises it). */
  minPostgres?: number;
  /** Which attendux command lines exist (the CLI's command tree), so unavailable jobs are not overdue. */
  hasCommand?: HasCommand;
}

export interface Check {
  id: string;
  run(env: DoctorEnv): Promise<CheckResult> | CheckResult;
}

export const pass = (message: string): CheckResult => ({ status: 'pass', message, fix: null });
export const skip = (message: string): CheckResult => ({ status: 'skip', message, fix: null });
export const warn = (message: string, fix: string | null): CheckResult => ({ status: 'warn', message, fix });
export const fail = (message: string, fix: string | null, apply?: () => Promise<void>): CheckResult => ({
  status: 'fail',
  message,
  fix,
  ...(apply ? { apply } : {}),
});

export const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);
export const isLoopback = (host: string) => LOOPBACK.has(host) || host.startsWith('127.');
