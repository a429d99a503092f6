import { loadConfig, type ConfigLocation } from '../config/load.js';
import { openInstall } from '../install.js';
import type { Check, CheckResult, DoctorEnv } from './types.js';
import { configChecks } from './config.js';
import { databaseChecks } from './database.js';
import { backupChecks } from './backups.js';
import { serverChecks } from './server.js';
import { hostChecks } from './host.js';

export type { Check, CheckResult, DoctorEnv } from './types.js';

export const ALL_CHECKS: Check[] = [
  ...configChecks,
  ...databaseChecks,
  ...backupChecks,
  ...serverChecks,
  ...hostChecks,
];

export interface DoctorCheck {
  id: string;
  status: CheckResult['status'];
  message: string;
  fix: string | null;
}

/** The stable shape of `doctor --json`. */
export interface DoctorReport {
  checks: DoctorCheck[];
  ok: boolean;
}

export async function runChecks(env: DoctorEnv, checks: Check[] = ALL_CHECKS) {
  const out: (DoctorCheck & { apply?: () => Promise<void> })[] = [];
  for (const c of checks) {
    let r: CheckResult;
    try {
      r = await c.run(env);
    } catch (err) {
      r = { status: 'fail', message: `the check itself failed: ${(err as Error).message}`, fix: null };
    }
    out.push({
      id: c.id,
      status: r.status,
      message: r.message,
      fix: r.fix,
      ...(r.apply ? { apply: r.apply } : {}),
    });
  }
  return out;
}

/**
 * `attendux doctor`: every check against the install; with fix, the safe fixes (file modes, ownership) are
 * applied (onFix tells which, before) and the checks run again.
 */
export async function doctor(
  loc: ConfigLocation,
  opts: {
    fix?: boolean;
    onFix?: (id: string, fix: string) => void;
    now?: Date;
    hasCommand?: DoctorEnv['hasCommand'];
  } = {},
): Promise<DoctorReport> {
  const env: DoctorEnv = {
    now: opts.now ?? new Date(),
    ...(opts.hasCommand ? { hasCommand: opts.hasCommand } : {}),
  };
  try {
    env.loaded = await loadConfig(loc);
  } catch (err) {
    env.configError = err as Error;
  }
  if (env.loaded) {
    try {
      env.install = await openInstall({ ...loc, requireMigrated: false });
    } catch (err) {
      env.installError = err as Error;
    }
  }
  try {
    let results = await runChecks(env);
    if (opts.fix) {
      const fixable = results.filter((r) => r.apply);
      for (const r of fixable) {
        opts.onFix?.(r.id, r.fix ?? '');
        await r.apply!();
      }
      if (fixable.length) results = await runChecks(env);
    }
    const checks = results.map(({ apply, ...r }) => (void apply, r));
    return { checks, ok: checks.every((c) => c.status !== 'fail') };
  } finally {
    await env.install?.close();
  }
}
