import { readdir, readFile } from 'node:fs/promises';
import { warnSwallowed } from '../../lib/log.js';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AttenduxError, isAttenduxError } from '../../errors.js';
import { actorOf, type Acting } from '../actor.js';
import { loadSecrets, type LoadedConfig } from '../config/load.js';
import { writeFileAtomic } from '../../lib/fs.js';
import type { Queryable } from '../../db/pool.js';
import { appendAudit, SYSTEM_TENANT } from '../../db/queries/audit.js';
import { payload, runNotify } from '../schedule/notify.js';
import { dataFileName, sidecarFileName, type Sidecar } from '../archive/format.js';
import { hashStream } from '../archive/bytes.js';
import type { TargetConfig, TargetSecrets } from './schema.js';
import {
  offsiteError,
  openTarget,
  resolveTargetPaths,
  targetCredentials,
  type OffsiteTarget,
} from './target.js';

const DAY = 86_400_000;

export interface OffsiteProgress {
  target: string;
  id: string;
  phase: 'upload' | 'verify' | 'download';
  bytes: number;
  total: number;
}

export interface CopyOptions extends Acting {
  onProgress?: (p: OffsiteProgress) => void;
  /** First retry delay; doubles per attempt, at most 30 s (tests shorten it). */
  retryBaseMs?: number;
  /** For the audit entries; best effort (a copy never fails because the audit could not be written). */
  db?: Queryable;
}

export interface CopyOutcome {
  target: string;
  id: string;
  ok: boolean;
  bytes: number;
  seconds: number;
  attempts: number;
  error?: { code: string; message: string };
}

/** The target configs of an install, paths resolved, with the secrets file's credentials (if readable). */
export async function configuredTargets(
  loaded: LoadedConfig,
  only?: string,
): Promise<{ targets: TargetConfig[]; secrets: TargetSecrets | undefined }> {
  let targets = loaded.config.backup.targets.map((t) => resolveTargetPaths(t, loaded.path));
  if (only !== undefined) {
    targets = targets.filter((t) => t.name === only);
    if (!targets.length)
      throw new AttenduxError('NOT_FOUND', `no backup target "${only}" in backup.targets`, {
        hint: loaded.config.backup.targets.length
          ? `configured targets: ${loaded.config.backup.targets.map((x) => x.name).join(', ')}`
          : 'add one to backup.targets (see "Off-site copies" in the README)',
      });
  }
  let secrets: TargetSecrets | undefined;
  if (targets.length)
    secrets = await loadSecrets(loaded.secretsPath).then(
      (s) => s.backupTargets,
      () => undefined,
    );
  return { targets, secrets };
}

export async function connect(t: TargetConfig, secrets: TargetSecrets | undefined): Promise<OffsiteTarget> {
  try {
    return await openTarget(t, targetCredentials(t, secrets));
  } catch (err) {
    throw offsiteError(t, 'cannot open', err);
  }
}

/** SHA-256 and size of a remote file, streamed (nothing is held in memory or written locally). */
export async function hashRemote(
  target: OffsiteTarget,
  name: string,
  onBytes?: (n: number) => void,
): Promise<{ sha256: string; bytes: number }> {
  return hashStream(await target.read(name), onBytes);
}

/**
 * Of a directory's or target's file names, those beside backup `id`'s data file and sidecar that belong to it
 * (its signature, a drill record): copied between the two, and downloaded with them.
 */
export function companionNames(names: readonly string[], id: string): string[] {
  return names.filter(
    (n) =>
      n.startsWith(`${id}.`) && n !== dataFileName(id) && n !== sidecarFileName(id) && !n.endsWith('.part'),
  );
}

async function companions(backupDir: string, id: string): Promise<string[]> {
  // no backup dir: no companions
  return companionNames(await readdir(backupDir).catch(() => [] as string[]), id);
}

export function retainUntil(loaded: LoadedConfig, s: Sidecar): Date {
  const r = loaded.config.backup.retention;
  const days = s.kind === 'full' ? r.fullDays : s.kind === 'incremental' ? r.incrementalDays : r.configDays;
  return new Date(Date.parse(s.createdAt) + days * DAY);
}

/**
 * Copy one backup to an open target: the data file first (temporary name, renamed), read back and checked
 * against the sidecar's size and SHA-256, then any companion files, then the sidecar last, so that a
 * reader of the target never sees a sidecar whose data is not complete and checked.
 */
export async function copyBackupTo(
  target: OffsiteTarget,
  backupDir: string,
  sidecar: Sidecar,
  opts: { retainUntil?: Date; onProgress?: (p: OffsiteProgress) => void } = {},
): Promise<void> {
  const id = sidecar.id;
  const data = dataFileName(id);
  const progress = (phase: OffsiteProgress['phase']) => (bytes: number) =>
    opts.onProgress?.({ target: target.name, id, phase, bytes, total: sidecar.bytes });
  await target.putFile(join(backupDir, data), data, {
    bytes: sidecar.bytes,
    onBytes: progress('upload'),
    retainUntil: opts.retainUntil,
  });
  const got = await hashRemote(target, data, progress('verify'));
  if (got.bytes !== sidecar.bytes || got.sha256 !== sidecar.sha256) {
    // removing a bad remote copy: the mismatch is thrown below, the next run replaces it
    await target.remove(data).catch(() => undefined);
    throw new AttenduxError(
      'OFFSITE_FAILED',
      `target ${target.name}: the uploaded ${data} reads back as ${got.bytes} bytes with another SHA-256 than its sidecar`,
    );
  }
  for (const c of await companions(backupDir, id))
    await target.putBytes(c, await readFile(join(backupDir, c)), { retainUntil: opts.retainUntil });
  const side = await readFile(join(backupDir, sidecarFileName(id)));
  await target.putBytes(sidecarFileName(id), side, { retainUntil: opts.retainUntil });
}

const PERMANENT = new Set(['OFFSITE_HOST_KEY', 'SECRETS_INSECURE']);

/**
 * Copy backups to one target with retries: each attempt connects afresh (a dropped SSH session is not
 * reused) and redoes the file it failed on; waits 1 s, 2 s, 4 s, ... (at most 30 s) between attempts.
 * A wrong host key or an insecure key file is not retried.
 */
export async function copyWithRetries(
  loaded: LoadedConfig,
  t: TargetConfig,
  secrets: TargetSecrets | undefined,
  sidecars: Sidecar[],
  opts: CopyOptions = {},
): Promise<CopyOutcome[]> {
  const out: CopyOutcome[] = [];
  let target: OffsiteTarget | undefined;
  try {
    for (const s of sidecars) {
      const t0 = Date.now();
      let attempts = 0;
      let lastErr: AttenduxError | undefined;
      for (;;) {
        attempts++;
        try {
          target ??= await connect(t, secrets);
          await copyBackupTo(target, loaded.backupDir, s, {
            retainUntil: retainUntil(loaded, s),
            onProgress: opts.onProgress,
          });
          lastErr = undefined;
          break;
        } catch (err) {
          lastErr =
            isAttenduxError(err) && PERMANENT.has(err.code) ? err : offsiteError(t, `copying ${s.id}`, err);
          // closing a target after a failed attempt: its error is lastErr
          await target?.close().catch(() => undefined);
          target = undefined;
          if (PERMANENT.has(lastErr.code) || attempts > t.retries) break;
          await sleep(Math.min(30_000, (opts.retryBaseMs ?? 1000) * 2 ** (attempts - 1)));
        }
      }
      const o: CopyOutcome = {
        target: t.name,
        id: s.id,
        ok: !lastErr,
        bytes: s.bytes,
        seconds: (Date.now() - t0) / 1000,
        attempts,
        ...(lastErr ? { error: { code: lastErr.code, message: lastErr.message } } : {}),
      };
      out.push(o);
      if (opts.db)
        await appendAudit(opts.db, {
          tenantId: SYSTEM_TENANT,
          actor: actorOf(opts),
          action: 'backup.offsite.copy',
          entityType: 'backup',
          entityId: s.id,
          details: {
            target: t.name,
            outcome: o.ok ? 'success' : 'failure',
            bytes: s.bytes,
            attempts,
            ...(o.error ? { error: o.error.code, message: o.error.message } : {}),
          },
        }).catch((err: unknown) =>
          warnSwallowed(`the off-site copy of ${s.id} to ${t.name} is not in the audit log`, err),
        );
      // A host key mismatch will not go away for the next file either.
      if (lastErr && PERMANENT.has(lastErr.code)) {
        for (const rest of sidecars.slice(sidecars.indexOf(s) + 1))
          out.push({
            target: t.name,
            id: rest.id,
            ok: false,
            bytes: rest.bytes,
            seconds: 0,
            attempts: 0,
            error: { code: lastErr.code, message: lastErr.message },
          });
        break;
      }
    }
  } finally {
    await target?.close().catch(() => undefined); // closing the target: the outcomes are recorded
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Per-target state: a small file in the backup dir, so `backup status` knows without the network.

export interface TargetState {
  target: string;
  lastAttemptAt: string;
  lastOutcome: 'success' | 'failure';
  lastSuccessAt: string | null;
  lastError: { code: string; message: string } | null;
  /** Backups whose copy failed and that the next `backup sync` must copy. */
  failed: string[];
}

export const stateFile = (backupDir: string, target: string) => join(backupDir, `offsite-${target}.json`);

export async function readTargetState(backupDir: string, target: string): Promise<TargetState | null> {
  try {
    return JSON.parse(await readFile(stateFile(backupDir, target), 'utf8')) as TargetState;
  } catch {
    // no state recorded for this target yet
    return null;
  }
}

/** Record outcomes; `synced` = the target now holds every local backup (a full sync succeeded). */
export async function recordOutcomes(
  backupDir: string,
  target: string,
  outcomes: CopyOutcome[],
  synced = false,
): Promise<TargetState> {
  const prev = await readTargetState(backupDir, target);
  const now = new Date().toISOString();
  const failed = new Set(synced ? [] : (prev?.failed ?? []));
  for (const o of outcomes) {
    if (o.ok) failed.delete(o.id);
    else failed.add(o.id);
  }
  const bad = outcomes.find((o) => !o.ok);
  const state: TargetState = {
    target,
    lastAttemptAt: now,
    lastOutcome: bad ? 'failure' : 'success',
    lastSuccessAt: bad ? (prev?.lastSuccessAt ?? null) : now,
    lastError: bad?.error ?? null,
    failed: [...failed].sort(),
  };
  await writeFileAtomic(stateFile(backupDir, target), JSON.stringify(state, null, 2) + '\n', 0o600).catch(
    () => undefined,
  );
  return state;
}

/**
 * What a backup run calls once its sidecar is written: copy the backup to every target. Never throws: the
 * local backup succeeded whatever happens here; failures are recorded (state file, audit) and returned.
 */
export async function copyAfterBackup(
  loaded: LoadedConfig,
  sidecar: Sidecar,
  opts: CopyOptions = {},
): Promise<CopyOutcome[]> {
  try {
    const { targets, secrets } = await configuredTargets(loaded);
    const all: CopyOutcome[] = [];
    for (const t of targets) {
      const r = await copyWithRetries(loaded, t, secrets, [sidecar], opts);
      await recordOutcomes(loaded.backupDir, t.name, r);
      all.push(...r);
    }
    await notifyFailedCopies(loaded, sidecar, all);
    return all;
  } catch (err) {
    const all: CopyOutcome[] = [
      {
        target: '*',
        id: sidecar.id,
        ok: false,
        bytes: sidecar.bytes,
        seconds: 0,
        attempts: 0,
        error: { code: 'OFFSITE_FAILED', message: (err as Error).message },
      },
    ];
    await notifyFailedCopies(loaded, sidecar, all);
    return all;
  }
}

/**
 * The backup job itself succeeds when only its off-site copy failed, so `schedule exec` never runs the
 * notify hook for it: run it here, with the same JSON-on-stdin contract (event `offsite-failure`, the job
 * that made the backup). Best effort: a hook that fails is no reason to fail a good local backup.
 */
async function notifyFailedCopies(loaded: LoadedConfig, sidecar: Sidecar, all: CopyOutcome[]): Promise<void> {
  const failed = all.filter((o) => !o.ok);
  if (!failed.length || !loaded.config.notify.command) return;
  await runNotify(
    loaded.config,
    payload({
      event: 'offsite-failure',
      job: `backup-${sidecar.kind}`,
      description: `off-site copy of ${sidecar.kind} backup ${sidecar.id}`,
      run: null,
      problem: `backup ${sidecar.id} was not copied to ${failed
        .map((o) => `${o.target} (${o.error?.message ?? 'failed'})`)
        .join(', ')}`,
      offsite: {
        backup: sidecar.id,
        failed: failed.map((o) => ({ target: o.target, error: o.error ?? null })),
      },
    }),
  ).then(
    // runNotify answers a failed command with its problem; either way the admin was not told.
    (problem) => problem && warnSwallowed('the off-site failure was not notified', problem),
    (err: unknown) => warnSwallowed('the off-site failure was not notified', err),
  );
}
