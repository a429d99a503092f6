import { readFile, rm, unlink } from 'node:fs/promises';
import { warnSwallowed } from '../../lib/log.js';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { AttenduxError } from '../../errors.js';
import { connectClient, ddl } from '../../db/pool.js';
import { fsyncDir, writeFileAtomic } from '../../lib/fs.js';
import { leaveMaintenance, maintenancePath } from '../maintenance.js';
import { databaseUrl } from './load.js';
import { processAlive } from '../../lib/pid.js';

const maintenanceClient = (adminUrl: string) =>
  connectClient(databaseUrl(adminUrl, 'postgres'), 'attendux-restore');

/**
 * The journal of an in-place restore: which databases it works with and how far it got, written atomically
 * before every step that changes the cluster. A run that is killed (even `kill -9`) leaves it behind; the
 * next restore command (or `attendux restore --recover`) reads it and finishes the job from the state of the
 * cluster itself: if `<live>_old_<time>` exists, the swap committed and is rolled forward; otherwise it is
 * rolled back (the live database keeps its name, its connection limit is lifted, the half-built one dropped).
 */
export interface RestoreJournal {
  version: 1;
  pid: number;
  host: string;
  startedAt: string;
  live: string;
  restored: string;
  old: string;
  dropOld: boolean;
  /** Private temp dir holding the decrypted chain (removed by recovery). */
  tempDir: string | null;
  step: 'building' | 'swapping' | 'swapped';
}

export const JOURNAL_FILE = 'restore-journal.json';
export const journalPath = (dataDir: string) => join(dataDir, JOURNAL_FILE);

export async function writeJournal(dataDir: string, j: RestoreJournal): Promise<void> {
  await writeFileAtomic(journalPath(dataDir), JSON.stringify(j, null, 2) + '\n', 0o600);
}

export async function readJournal(dataDir: string): Promise<RestoreJournal | null> {
  let text: string;
  try {
    text = await readFile(journalPath(dataDir), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new AttenduxError('IO_ERROR', `cannot read ${journalPath(dataDir)}: ${(err as Error).message}`);
  }
  try {
    const j = JSON.parse(text) as RestoreJournal;
    // An internal signal: caught below and rethrown as an AttenduxError naming the journal.
    if (j.version !== 1 || !j.live || !j.restored || !j.old) throw new Error('missing fields');
    return j;
  } catch (err) {
    throw new AttenduxError(
      'IO_ERROR',
      `${journalPath(dataDir)} is damaged (${(err as Error).message}); the in-place restore it belongs to cannot be recovered automatically`,
      {
        hint: 'check pg_database for <live>_old_* / <live>_restore_* databases and their connection limits, then remove the file',
      },
    );
  }
}

export async function removeJournal(dataDir: string): Promise<void> {
  await unlink(journalPath(dataDir)).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  await fsyncDir(dataDir).catch((err: unknown) =>
    warnSwallowed('the removal of the restore journal is not durable', err),
  );
}

export { faultPoint } from '../fault.js';

export interface RecoveryReport {
  action: 'rolled-forward' | 'rolled-back';
  journal: RestoreJournal;
  steps: string[];
}

async function exists(c: import('pg').Client, name: string): Promise<boolean> {
  const { rowCount } = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
  return rowCount === 1;
}

/**
 * Bring the cluster back to a consistent state after an in-place restore that did not finish, decided by what
 * the cluster holds, not by what the journal last said (the kill may have come between a step and its
 * journal entry). Idempotent: running it twice does nothing more.
 */
export async function recoverJournal(
  dataDir: string,
  adminUrl: string,
  opts: { own?: boolean } = {},
): Promise<RecoveryReport | null> {
  const j = await readJournal(dataDir);
  if (!j) return null;
  if (!opts.own && j.host === hostname() && j.pid !== process.pid && processAlive(j.pid))
    throw new AttenduxError(
      'RESTORE_IN_PROGRESS',
      `an in-place restore (pid ${j.pid}, started ${j.startedAt}) is still running`,
      { hint: 'wait for it to finish, then try again' },
    );
  const steps: string[] = [];
  const m = await maintenanceClient(adminUrl);
  let action: RecoveryReport['action'];
  try {
    // `old` exists from the rename's commit until --drop-old drops it, which happens only after the journal
    // says 'swapped'; so either one proves the swap committed.
    if (j.step === 'swapped' || (await exists(m, j.old))) {
      // The rename transaction committed: the restored database is live. Finish what came after it.
      action = 'rolled-forward';
      if (await exists(m, j.old)) {
        await ddl(m, 'ALTER DATABASE %I CONNECTION LIMIT -1', j.old);
        steps.push(`lifted the connection limit of ${j.old}`);
      }
      if (await exists(m, j.live)) {
        await ddl(m, 'ALTER DATABASE %I CONNECTION LIMIT -1', j.live);
        await ddl(m, 'COMMENT ON DATABASE %I IS NULL', j.live);
      }
      if (j.dropOld) {
        await ddl(m, 'DROP DATABASE IF EXISTS %I WITH (FORCE)', j.old);
        steps.push(`dropped ${j.old} (--drop-old)`);
      }
    } else {
      // The swap never committed: the live database is the one it was. Undo everything around it.
      action = 'rolled-back';
      if (await exists(m, j.live)) {
        await ddl(m, 'ALTER DATABASE %I CONNECTION LIMIT -1', j.live);
        steps.push(`lifted the connection limit of ${j.live}`);
      }
      if (await exists(m, j.restored)) {
        await ddl(m, 'DROP DATABASE IF EXISTS %I WITH (FORCE)', j.restored);
        steps.push(`dropped the unfinished ${j.restored}`);
      }
    }
  } finally {
    await m.end().catch(() => undefined); // closing the maintenance client: the outcome is decided
  }
  if (j.tempDir) {
    await rm(j.tempDir, { recursive: true, force: true });
    steps.push(`removed the decrypted temp dir ${j.tempDir}`);
  }
  // Read the file itself: readMaintenance() already hides a file whose writer is gone.
  const maintPid = await readFile(maintenancePath(dataDir), 'utf8').then(
    (t) => Number((JSON.parse(t) as { pid?: unknown }).pid) || 0,
    (err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? null : 0),
  );
  if (maintPid !== null && (maintPid === j.pid || !processAlive(maintPid))) {
    await leaveMaintenance(dataDir, [databaseUrl(adminUrl, j.live), databaseUrl(adminUrl, j.old)]);
    steps.push('left maintenance mode');
  }
  await removeJournal(dataDir);
  return { action, journal: j, steps };
}

/** Marker on a database while attendux builds it: a killed build can be told from a finished restore. */
export const BUILDING_MARKER = 'attendux-restore-building';

export function buildingComment(): string {
  return `${BUILDING_MARKER} pid=${process.pid} host=${hostname()} since=${new Date().toISOString()}`;
}

/**
 * Drop databases a killed restore or drill left half-built: they carry the building marker (cleared once a
 * restore finished), their process is gone, and they are never the live database.
 */
export async function sweepHalfBuilt(adminUrl: string, live: string): Promise<string[]> {
  const m = await maintenanceClient(adminUrl);
  const dropped: string[] = [];
  try {
    const { rows } = await m.query<{ datname: string; d: string }>(
      `SELECT datname, shobj_description(oid, 'pg_database') AS d FROM pg_database
        WHERE starts_with(shobj_description(oid, 'pg_database'), $1) AND datname <> $2
          AND pg_get_userbyid(datdba) = current_user`,
      [BUILDING_MARKER, live],
    );
    for (const r of rows) {
      const pid = Number(/pid=(\d+)/.exec(r.d)?.[1] ?? 0);
      const host = /host=(\S+)/.exec(r.d)?.[1];
      if (!pid || host !== hostname() || processAlive(pid)) continue;
      await ddl(m, 'DROP DATABASE IF EXISTS %I WITH (FORCE)', r.datname);
      dropped.push(r.datname);
    }
  } finally {
    await m.end().catch(() => undefined); // closing the maintenance client: the outcome is decided
  }
  return dropped;
}
