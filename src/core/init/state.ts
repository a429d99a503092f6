import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { AttenduxError } from '../../errors.js';
import { pathExists, writeFileAtomic } from '../../lib/fs.js';
import { loadConfig, type LoadedConfig } from '../config/load.js';
import type { InitOptions } from '../init.js';

/** What a run has done so far, in <dataDir>/install-state.json (0600): a re-run continues from here. */
export interface InstallState {
  version: 1;
  /**
   * The first company and owner asked for, so that a bare re-run (`init --yes`, `npm start`) can finish.
   * Absent only for an install made before progress was recorded.
   */
  request?: {
    tenantSlug: string;
    tenantName: string;
    timeZone?: string;
    currency?: string;
    adminEmail: string;
  };
  /** Step name → when it last completed. */
  done: Partial<Record<InitStep, string>>;
  /** Roles this install created on its server: resetting their passwords on a re-run is safe. */
  ownRoles: string[];
  completedAt?: string;
  failed?: { step: InitStep; at: string; code: string; message: string };
}

export const INIT_STEPS = [
  'config',
  'secrets',
  'cluster',
  'roles',
  'database',
  'migrations',
  'company',
  'owner',
] as const;
export type InitStep = (typeof INIT_STEPS)[number];

export function installStatePath(dataDir: string): string {
  return join(dataDir, 'install-state.json');
}

export async function readInstallState(dataDir: string): Promise<InstallState | undefined> {
  try {
    return JSON.parse(await readFile(installStatePath(dataDir), 'utf8')) as InstallState;
  } catch {
    // no state file (not initialised yet) or a torn one: no state
    return undefined;
  }
}

export async function writeState(dataDir: string, state: InstallState): Promise<void> {
  await writeFileAtomic(installStatePath(dataDir), JSON.stringify(state, null, 2) + '\n', 0o600);
}

export type InstallStatus = 'none' | 'complete' | 'incomplete';

/**
 * Is there an install at configPath, and did its provisioning finish? Decided from files alone, before any
 * flag is validated or question asked: `init --yes` on an installed system is a no-op. An install made
 * before progress was recorded counts as complete when it uses a configured server; on the embedded
 * default it is resumed (every step is idempotent on its own cluster).
 */
export async function installStatus(configPath: string): Promise<InstallStatus> {
  if (!(await pathExists(resolve(configPath)))) return 'none';
  let loaded: LoadedConfig;
  try {
    loaded = await loadConfig({ configPath: resolve(configPath) });
  } catch {
    return 'complete'; // an invalid config: the commands that use it say what is wrong; init must not touch it
  }
  const state = await readInstallState(loaded.config.dataDir);
  if (state) return state.completedAt ? 'complete' : 'incomplete';
  return loaded.config.database.url ? 'complete' : 'incomplete';
}

export function requestOf(opts: InitOptions, old: InstallState | undefined): InstallState['request'] {
  const slug = opts.tenantSlug ?? old?.request?.tenantSlug;
  const email = opts.adminEmail ?? old?.request?.adminEmail;
  if (!slug || !email) {
    const missing = [!slug && '--company', !email && '--admin-email'].filter(Boolean);
    throw new AttenduxError('USAGE', `init --yes needs ${missing.join(' and ')}`);
  }
  return {
    tenantSlug: slug,
    tenantName: opts.tenantName ?? old?.request?.tenantName ?? slug,
    timeZone: opts.timeZone ?? old?.request?.timeZone,
    currency: opts.currency ?? old?.request?.currency,
    adminEmail: email,
  };
}

export function newState(opts: InitOptions, old: InstallState | undefined): InstallState {
  return {
    version: 1,
    request: requestOf(opts, old),
    done: {},
    ownRoles: old?.ownRoles ?? [],
  };
}
