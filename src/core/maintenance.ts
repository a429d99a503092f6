import { readFile, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { AttenduxError } from '../errors.js';
import { fsyncDir, writeFileAtomic } from '../lib/fs.js';
import { processAlive } from '../lib/pid.js';
import { connectClient, type Queryable } from '../db/pool.js';
import { deleteMaintenanceRow, readMaintenanceRow, writeMaintenanceRow } from '../db/queries/maintenance.js';
import { warnSwallowed } from '../lib/log.js';
import { redactUrl } from '../lib/db-url.js';

/**
 * Maintenance mode is a file, not a flag in memory, because the process that switches it on (`attendux
 * restore --in-place`) is not the server. Every server process on the host sees it within about a second.
 * It is also a row in the live database (server_maintenance, migrations/0010), which serve instances on
 * other hosts read; the file stays for the moment the database itself is swapped (no connection then).
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
  opts: {
    reason: string;
    retryAfterSeconds?: number;
    /** The live database (owner role), for the row. */ dbUrl?: string;
  },
): Promise<MaintenanceState> {
  const state: MaintenanceState = {
    reason: opts.reason,
    retryAfterSeconds: Math.max(1, Math.round(opts.retryAfterSeconds ?? 60)),
    since: new Date().toISOString(),
    pid: process.pid,
  };
  await writeFileAtomic(maintenancePath(dataDir), JSON.stringify(state, null, 2) + '\n', 0o644);
  if (opts.dbUrl) {
    const c = await connectClient(opts.dbUrl, 'attendux-maintenance');
    try {
      await writeMaintenanceRow(c, { ...state, host: hostname() });
    } finally {
      await c.end();
    }
  }
  return state;
}

/**
 * Returns whether maintenance mode was on (the file). The row is removed from each of `dbUrls` (the live
 * database, and the one it replaced when kept); a database that is gone has no row to remove.
 */
export async function leaveMaintenance(dataDir: string, dbUrls: string[] = []): Promise<boolean> {
  for (const url of dbUrls) {
    const c = await connectClient(url, 'attendux-maintenance').catch((err: unknown) => {
      // A database that does not exist (3D000: dropped, or never swapped in) holds no row: nothing to say.
      if ((err as { cause?: { code?: string } }).cause?.code === '3D000') return undefined;
      warnSwallowed(`maintenance row not removed from ${redactUrl(url)}`, err);
      return undefined;
    });
    if (!c) continue;
    try {
      await deleteMaintenanceRow(c);
    } finally {
      await c.end();
    }
  }
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
 * The row in the database, as a state; a writer on this host that is gone is ignored like the file's. On
 * another host the writer cannot be checked: its row holds until the next restore (or its recovery) clears it.
 */
export async function readMaintenanceDb(q: Queryable): Promise<MaintenanceState | undefined> {
  const row = await readMaintenanceRow(q);
  if (!row) return undefined;
  if (row.host === hostname() && row.pid > 0 && !processAlive(row.pid)) return undefined;
  return {
    reason: row.reason,
    retryAfterSeconds: row.retryAfterSeconds,
    since: row.since.toISOString(),
    pid: row.pid,
  };
}

/**
 * A cheap check for the request path: the file (and the row, given the server's pool) is read at most once
 * per `ttlMs`, so a busy server does not stat or query on every request, and a restore's switch is seen
 * within that time. Either one on means maintenance.
 */
export function maintenanceWatcher(
  dataDir: string,
  ttlMs = 1000,
  db?: Queryable,
): () => Promise<MaintenanceState | undefined> {
  let checkedAt = 0;
  let fromFile: MaintenanceState | undefined;
  let fromDb: MaintenanceState | undefined;
  let pending: Promise<MaintenanceState | undefined> | undefined;
  let dbPending: Promise<void> | undefined;
  // A transient read error keeps the last known state rather than flapping maintenance on or off: while a
  // restore swaps the database, no connection succeeds and the row's last answer stands.
  const readDb = (q: Queryable) =>
    (dbPending ??= readMaintenanceDb(q).then(
      (m) => {
        fromDb = m;
        dbPending = undefined;
      },
      () => {
        dbPending = undefined;
      },
    ));
  const refresh = async () => {
    const first = checkedAt === 0;
    // The row is read in the background after the first time: under load the query waits for a pooled
    // connection, and requests should not wait for it (the row is seen within ttlMs plus that wait).
    const db$ = db ? readDb(db) : undefined;
    // an unreadable file keeps its last known state, as the row does (above)
    fromFile = await readMaintenance(dataDir).catch(() => fromFile);
    if (first) await db$;
    checkedAt = Date.now();
    pending = undefined;
    return fromFile ?? fromDb;
  };
  return async () => {
    if (Date.now() - checkedAt < ttlMs) return fromFile ?? fromDb;
    pending ??= refresh();
    return pending;
  };
}
