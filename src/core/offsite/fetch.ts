import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AttenduxError, isAttenduxError } from '../../errors.js';
import type { Acting } from '../actor.js';
import { loadConfig, type ConfigLocation, type LoadedConfig } from '../config/load.js';
import type { CatalogEntry } from '../archive/catalog.js';
import { dataFileName, sidecarFileName } from '../archive/format.js';
import { TargetsSchema, type TargetConfig } from './schema.js';
import { companionNames, connect, type OffsiteProgress } from './copy.js';
import { readStreamText, remoteCatalog, type RemoteCatalog } from './remote.js';
import { auditBackupOperation } from '../backup/audit-entry.js';
import { offsiteError, resolveTargetPaths } from './target.js';
import { download, privateDir } from './download.js';

// `restore --from TARGET`: download and check the backups a restore needs.

export interface FetchedBackups {
  /** Private (0700) directory holding the downloaded sidecars and data files: a backup dir for restore. */
  dir: string;
  target: string;
  backups: string[];
  bytes: number;
  cleanup(): Promise<void>;
}

/** The targets when no config exists yet (disaster recovery): $ATTENDUX_BACKUP_TARGETS, a JSON array. */
async function targetsForRestore(
  loc: ConfigLocation,
): Promise<{ loaded?: LoadedConfig; targets: TargetConfig[] }> {
  try {
    const loaded = await loadConfig(loc);
    return { loaded, targets: loaded.config.backup.targets.map((t) => resolveTargetPaths(t, loaded.path)) };
  } catch (err) {
    if (!isAttenduxError(err) || err.code !== 'CONFIG_NOT_FOUND') throw err;
    const env = loc.env ?? process.env;
    const text = env.ATTENDUX_BACKUP_TARGETS;
    if (!text) throw err;
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      throw new AttenduxError('CONFIG_INVALID', 'ATTENDUX_BACKUP_TARGETS: not a JSON array');
    }
    const r = TargetsSchema.safeParse(raw);
    if (!r.success)
      throw new AttenduxError(
        'CONFIG_INVALID',
        `ATTENDUX_BACKUP_TARGETS: ${r.error.issues[0]?.path.join('.')}: ${r.error.issues[0]?.message}`,
      );
    return { targets: r.data.map((t) => resolveTargetPaths(t, join(process.cwd(), 'attendux.json'))) };
  }
}
/** The backup to restore from the target's catalog: `backupId`, the newest at or before `at`, or the newest. */
function chooseBackup(
  cat: RemoteCatalog,
  loc: { kind: 'config' | 'database'; backupId?: string; at?: string },
  targetName: string,
): CatalogEntry {
  const ok = cat.backups.filter((b) => b.status === 'ok');
  let chosen: CatalogEntry | undefined;
  const pool = ok.filter((b) => (loc.kind === 'config' ? b.kind === 'config' : b.kind !== 'config'));
  if (loc.backupId) chosen = cat.backups.find((b) => b.id === loc.backupId);
  else if (loc.at) chosen = pool.filter((b) => Date.parse(b.createdAt) <= Date.parse(loc.at!)).at(-1);
  else chosen = pool.at(-1);
  if (!chosen)
    throw new AttenduxError(
      'RESTORE_NO_BACKUP',
      loc.backupId
        ? `no backup "${loc.backupId}" on target ${targetName}`
        : `no intact ${loc.kind === 'config' ? 'config' : 'database'} backup on target ${targetName}${loc.at ? ` at or before ${loc.at}` : ''}`,
      { hint: `see \`attendux backup list --target ${targetName}\`` },
    );
  return chosen;
}

/**
 * `restore ... --from NAME`: download what the restore needs from a target into a private temp dir and
 * check every data file against its sidecar (size and SHA-256) while it streams, before the restore
 * (which then decrypts and checks every entry) touches any database. Config restores take one config
 * backup; database restores the chain of the chosen backup (newest, `backupId`, or the newest at or before
 * `at`) and the incremental after it (whose changes `--at` may apply).
 */
export async function fetchForRestore(
  loc: ConfigLocation &
    Acting & {
      from: string;
      kind: 'config' | 'database';
      backupId?: string;
      at?: string;
      onProgress?: (p: OffsiteProgress) => void;
    },
): Promise<FetchedBackups> {
  const { loaded, targets } = await targetsForRestore(loc);
  const cfg = targets.find((t) => t.name === loc.from);
  if (!cfg)
    throw new AttenduxError('NOT_FOUND', `no backup target "${loc.from}" in backup.targets`, {
      hint: loaded
        ? `configured: ${targets.map((t) => t.name).join(', ') || 'none'}`
        : 'on a new server, set ATTENDUX_BACKUP_TARGETS to the JSON list of targets',
    });
  const secrets = loaded
    ? await (await import('../config/load.js')).loadSecrets(loaded.secretsPath).then(
        (s) => s.backupTargets,
        () => undefined,
      )
    : undefined;
  const target = await connect(cfg, secrets);
  const dir = await privateDir(`from-${cfg.name}`);
  const cleanup = () => rm(dir, { recursive: true, force: true });
  try {
    const cat = await remoteCatalog(target);
    const chosen = chooseBackup(cat, loc, cfg.name);
    const ids = new Set(chosen.chain);
    const next = cat.backups.find(
      (b) => b.kind === 'incremental' && b.parent === chosen.id && b.status === 'ok',
    );
    if (next && loc.at) ids.add(next.id);
    const byId = new Map(cat.backups.map((b) => [b.id, b]));
    let bytes = 0;
    for (const id of ids) {
      const s = byId.get(id)!;
      await download(target, dataFileName(id), join(dir, dataFileName(id)), s, (n) =>
        loc.onProgress?.({ target: cfg.name, id, phase: 'download', bytes: n, total: s.bytes }),
      );
      // Companion files (the signature `<id>.sig`): restore checks them before anything is decrypted.
      for (const n of companionNames(cat.names, id))
        await writeFile(join(dir, n), await readStreamText(target, n), { mode: 0o600, flag: 'wx' });
      // The sidecar last, as in a backup dir: it is what makes the backup visible to the restore.
      await writeFile(join(dir, sidecarFileName(id)), await readStreamText(target, sidecarFileName(id)), {
        mode: 0o600,
        flag: 'wx',
      });
      bytes += s.bytes;
    }
    const fetched: FetchedBackups = { dir, target: cfg.name, backups: [...ids], bytes, cleanup };
    if (loaded)
      await auditBackupOperation(
        loc,
        'restore.fetch',
        { target: cfg.name, backups: fetched.backups, bytes, outcome: 'success' },
        chosen.id,
      );
    return fetched;
  } catch (err) {
    await cleanup();
    if (loaded && isAttenduxError(err))
      await auditBackupOperation(loc, 'restore.fetch', {
        target: cfg.name,
        outcome: 'failure',
        error: err.code,
        message: err.message,
      });
    throw isAttenduxError(err) ? err : offsiteError(cfg, 'download failed', err);
  } finally {
    await target.close();
  }
}
