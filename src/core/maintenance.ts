import { readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { AttenduxError } from '../errors.js';
import { fsyncDir, writeFileAtomic } from '../lib/fs.js';
import { processAlive } from '../lib/pid.js';

/**
 * Maintenance mode is a file, not a flag in memory, because the process that switches it on (`attendux
 * restore --in-place`) is not the server. Every server process on the host sees it within about a second.
 */
export interface MaintenanceState {
  reason: string;
  retryAfterSeconds: number;
  since: string;
  pid: number;
}

export const MAINTENANCE_FILE = 'maintenance.json';

export function maintenancePath(dataDir: string): string {
  return join(dataDir, MAINTENANCE_FILE);
}

export async function enterMaintenance(
  dataDir: string,
  opts: { reason: string; retryAfterSeconds?: number },
): Promise<MaintenanceState> {
  const state: MaintenanceState = {
    reason: opts.reason,
    retryAfterSeconds: Math.max(1, Math.round(opts.retryAfterSeconds ?? 60)),
    since: new Date().toISOString(),
    pid: process.pid,
  };
  await writeFileAtomic(maintenancePath(dataDir), JSON.stringify(state, null, 2) + '\n', 0o644);
  return state;
}

/** Returns whether maintenance mode was on. */
export async function leaveMaintenance(dataDir: string): Promise<boolean> {
  try {
    await unlink(maintenancePath(dataDir));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new AttenduxError(
      'IO_ERROR',
      `cannot remove ${maintenancePath(dataDir)}: ${(err as Error).message}`,
    );
  }
  await fsyncDir(dataDir);
  return true;
}

/** The current state, or undefined when the server is not in maintenance. A garbled file still means "on". */
export async function readMaintenance(dataDir: string): Promise<MaintenanceState | undefined> {
  let text: string;
  try {
    text = await readFile(maintenancePath(dataDir), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new AttenduxError('IO_ERROR', `cannot read ${maintenancePath(dataDir)}: ${(err as Error).message}`);
  }
  try {
    const v = JSON.parse(text) as Partial<MaintenanceState>;
    // A restore killed before it could switch maintenance off must not keep the server down: its swap is one
    // transaction, so the live database is whole either way. Only a writer known to be gone is ignored.
    if (typeof v.pid === 'number' && v.pid > 0 && !processAlive(v.pid)) return undefined;
    return {
      reason: typeof v.reason === 'string' ? v.reason : 'maintenance',
      retryAfterSeconds:
        typeof v.retryAfterSeconds === 'number' && v.retryAfterSeconds > 0 ? v.retryAfterSeconds : 60,
      since: typeof v.since === 'string' ? v.since : '',
      pid: typeof v.pid === 'number' ? v.pid : 0,
    };
  } catch {
    // a torn or unreadable flag file still means maintenance: the defaults
    return { reason: 'maintenance', retryAfterSeconds: 60, since: '', pid: 0 };
  }
}

/**
 * A cheap check for the request path: the file is read at most once per `ttlMs`, so a busy server does not
 * stat on every request, and a restore's switch is seen within that time.
 */
export function maintenanceWatcher(
  dataDir: string,
  ttlMs = 1000,
): () => Promise<MaintenanceState | undefined> {
  let checkedAt = 0;
  let current: MaintenanceState | undefined;
  let pending: Promise<MaintenanceState | undefined> | undefined;
  return async () => {
    const now = Date.now();
    if (now - checkedAt < ttlMs) return current;
    pending ??= readMaintenance(dataDir)
      // A transient read error keeps the last known state rather than flapping maintenance on or off.
      .catch(() => current)
      .then((s) => {
        current = s;
        checkedAt = Date.now();
        pending = undefined;
        return s;
      });
    return pending;
  };
}
