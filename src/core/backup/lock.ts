import { constants } from 'node:fs';
import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { AttenduxError } from '../../errors.js';
import { processAlive } from '../../lib/pid.js';

/**
 * PostgreSQL advisory lock key held by every backup run for its whole duration (session level):
 * 0x41545842, 'ATXB'. It stops two backups of one database from different hosts or data dirs; the lock
 * file stops them on one host even before the database is reached.
 */
export const BACKUP_ADVISORY_KEY = 1096046658;

/*
 * Why a lock file of our own rather than a library such as proper-lockfile: the semantics differ where it
 * matters here. proper-lockfile judges a lock stale by its mtime (it must be refreshed on a timer, and a
 * crashed run blocks the next one until the stale period has passed); ours is the run's pid, so a lock
 * left by a killed or crashed run is taken over at once, and a live run is never thought stale however
 * long a full takes. It also records who holds it (pid, host, start time, command), which the "exit 75,
 * locked, try later" message names; proper-lockfile keeps no owner.
 */
export interface LockInfo {
  pid: number;
  host: string;
  startedAt: string;
  command: string;
}

export interface HeldLock {
  path: string;
  info: LockInfo;
  release(): Promise<void>;
}

function lockedError(info: LockInfo | undefined, path: string): AttenduxError {
  const who = info
    ? `pid ${info.pid} on ${info.host}, started ${info.startedAt} (${info.command})`
    : 'unknown';
  return new AttenduxError('BACKUP_LOCKED', `another backup is running: ${who}`, {
    hint: `wait for it to finish; if no backup is running, remove ${path}`,
    details: { lock: info ?? null, lockFile: path },
  });
}

async function readLock(path: string): Promise<LockInfo | undefined> {
  try {
    const v = JSON.parse(await readFile(path, 'utf8')) as LockInfo;
    return typeof v.pid === 'number' ? v : undefined;
  } catch {
    // absent or torn lock file: no holder
    return undefined;
  }
}

/**
 * Take `<dataDir>/<name>` with O_EXCL. A lock whose process is dead (same host) is taken over; a live one
 * fails with BACKUP_LOCKED naming it.
 */
export async function acquireFileLock(
  dataDir: string,
  command: string,
  name = 'backup.lock',
): Promise<HeldLock> {
  const path = join(dataDir, name);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const info: LockInfo = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString(), command };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
      try {
        await fh.writeFile(JSON.stringify(info) + '\n');
        await fh.sync();
      } finally {
        await fh.close();
      }
      return {
        path,
        info,
        release: async () => {
          const cur = await readLock(path);
          if (cur && cur.pid === info.pid && cur.startedAt === info.startedAt)
            await unlink(path).catch(() => undefined); // a lock file already gone is released
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const cur = await readLock(path);
      if (cur && (cur.host !== info.host || processAlive(cur.pid))) throw lockedError(cur, path);
      if (!cur) {
        // Unreadable: a writer that has not finished writing it yet, or garbage. Give it a moment first.
        await new Promise((r) => setTimeout(r, 200));
        const again = await readLock(path);
        if (again) {
          if (again.host !== info.host || processAlive(again.pid)) throw lockedError(again, path);
        }
      }
      // Stale: its process is gone. Remove and retry the exclusive create (another taker may win the race).
      await unlink(path).catch(() => undefined);
    }
  }
  throw lockedError(await readLock(path), path);
}

/** Hold the advisory lock on a dedicated connection; released when that connection ends. */
export async function acquireAdvisoryLock(client: pg.ClientBase): Promise<void> {
  const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [
    BACKUP_ADVISORY_KEY,
  ]);
  if (rows[0]?.ok) return;
  const holder = await client
    .query<{ pid: number; app: string; started: Date; addr: string | null }>(
      `SELECT a.pid, a.application_name AS app, a.backend_start AS started, a.client_addr::text AS addr
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.objid = $1 AND l.objsubid = 1 AND l.granted LIMIT 1`,
      [BACKUP_ADVISORY_KEY],
    )
    .then((r) => r.rows[0])
    .catch(() => undefined); // the holder only names who holds the lock: unknown if this fails
  const who = holder
    ? `database session ${holder.pid} (${holder.app || 'unknown'} from ${holder.addr ?? 'local'}, since ${holder.started.toISOString()})`
    : 'another session';
  throw new AttenduxError('BACKUP_LOCKED', `another backup of this database is running: ${who}`, {
    hint: 'wait for it to finish (it may run on another host or from another data dir)',
    details: { databasePid: holder?.pid ?? null },
  });
}
