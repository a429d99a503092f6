import { readFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, normalize, resolve } from 'node:path';
import { AttenduxError, isAttenduxError } from '../../errors.js';
import { loadConfig, configCandidates, type ConfigLocation, type LoadedConfig } from '../config/load.js';
import { pathExists, writeFileAtomic } from '../../lib/fs.js';
import { readCatalog, newestOf } from '../archive/catalog.js';
import { openBackup } from '../archive/reader.js';
import { readIdentityFile, requireIdentityFile } from '../archive/identity.js';
import { sweepTempDirs } from './chain.js';
import { checkBackupSignature, trustedSigningKeys } from '../backup/signature.js';
import { dataDirOf, restoreLedgerMirror } from '../ledger/index.js';

/** The service files `backup config` takes (defaultServiceFiles in backup/config.ts), by name. */
const SERVICE_FILE = /^attendux[A-Za-z0-9@._-]*\.(service|timer)$/;
const CRON_FILE = /^attendux[A-Za-z0-9._-]*$/;

export interface ConfigRestoreOptions extends ConfigLocation {
  /** A config backup id; default the newest intact one. */
  backupId?: string;
  identityFile?: string;
  /** Overwrite files that exist. */
  force?: boolean;
  /** Decrypt and list what would be written; write nothing. */
  dryRun?: boolean;
  /** Where the backups are when no config exists yet (default $ATTENDUX_BACKUP_DIR). */
  backupDir?: string;
  /**
   * The service-file allow-list: the only directories a service file is written to (default
   * /etc/systemd/system for attendux*.service/.timer, /etc/cron.d for attendux*). A backup that records
   * where each file came from has it written back exactly there, and is refused when that path is not in
   * these directories under an attendux name; an older backup (no recorded paths) has its files written
   * here by name. Tests point these at temp dirs.
   */
  systemdDir?: string;
  cronDir?: string;
  tempRoot?: string;
}

export interface ConfigRestoreFile {
  entry: string;
  path: string;
  bytes: number;
  mode: number;
  exists: boolean;
}

export interface ConfigRestoreResult {
  backup: string;
  createdAt: string;
  dryRun: boolean;
  files: ConfigRestoreFile[];
}

/**
 * `attendux restore --config-only`: bring back the config file, the secrets file (without which encrypted
 * face templates are lost) and the service files from a config backup, typically onto a new server where
 * no config exists yet: the backups are then found through $ATTENDUX_BACKUP_DIR and the config is written
 * to --config (or $ATTENDUX_CONFIG, or /etc/attendux/attendux.json). Existing files are never overwritten
 * without `force`; every file is checked before the first one is written.
 */
export async function restoreConfig(opts: ConfigRestoreOptions): Promise<ConfigRestoreResult> {
  const { loaded, env, backupDir, target } = await locate(opts);
  const identityFile = requireIdentityFile({
    identityFile: opts.identityFile,
    env,
    configured: loaded?.config.backup.identityFile,
  });
  const identities = await readIdentityFile(identityFile);
  const chosen = chooseBackup(await readCatalog(backupDir), opts.backupId, backupDir);
  await checkBackupSignature(backupDir, chosen.id, await trustedSigningKeys({ loaded, identityFile }));
  await sweepTempDirs(opts.tempRoot);
  const opened = await openBackup({ backupDir, id: chosen.id, identities, tempRoot: opts.tempRoot });
  try {
    const entries = opened.manifest.entries.filter((e) => e.name.startsWith('config/'));
    if (entries.length < 2)
      throw new AttenduxError('BACKUP_CORRUPT', `${chosen.id} holds no config and secrets file`);
    const configText = await readFile(join(opened.dir, entries[0]!.name), 'utf8');
    let secretsFile: string | undefined;
    try {
      secretsFile = (JSON.parse(configText) as { secretsFile?: string }).secretsFile;
    } catch {
      throw new AttenduxError('BACKUP_CORRUPT', `${chosen.id}: the config file in it is not JSON`);
    }
    const configDir = dirname(resolve(target));
    const secretsTarget = secretsFile
      ? isAbsolute(secretsFile)
        ? secretsFile
        : resolve(configDir, secretsFile)
      : join(configDir, 'attendux.secrets.json');
    const files = await filesToWrite(entries, chosen.id, resolve(target), secretsTarget, opts);
    const existing = files.filter((f) => f.exists);
    if (existing.length && !opts.force && !opts.dryRun)
      throw new AttenduxError(
        'RESTORE_TARGET_EXISTS',
        `${existing.map((f) => f.path).join(', ')} already exist${existing.length === 1 ? 's' : ''}; nothing was written`,
        { hint: 'pass --force to overwrite them, or --config to write the config elsewhere' },
      );
    if (!opts.dryRun)
      for (const f of files) await writeFileAtomic(f.path, await readFile(join(opened.dir, f.entry)), f.mode);
    const ledger = opened.manifest.entries.find((e) => e.name.startsWith('ledger/'));
    if (ledger && !opts.dryRun)
      await restoreLedgerMirror(join(opened.dir, ledger.name), dataDirOf(configText, configDir));
    return { backup: chosen.id, createdAt: chosen.createdAt, dryRun: opts.dryRun === true, files };
  } finally {
    await opened.cleanup();
  }
}

/** The config (if there is one yet), the backup directory and where the config file is written. */
async function locate(opts: ConfigRestoreOptions): Promise<{
  loaded: LoadedConfig | undefined;
  env: NodeJS.ProcessEnv;
  backupDir: string;
  target: string;
}> {
  let loaded: LoadedConfig | undefined;
  try {
    loaded = await loadConfig(opts);
  } catch (err) {
    if (!isAttenduxError(err) || err.code !== 'CONFIG_NOT_FOUND') throw err;
  }
  const env = opts.env ?? process.env;
  const backupDir = opts.backupDir ?? loaded?.backupDir ?? env.ATTENDUX_BACKUP_DIR;
  if (!backupDir)
    throw new AttenduxError('USAGE', 'no config found, so the backup directory is not known', {
      hint: 'set ATTENDUX_BACKUP_DIR to the directory holding the backups (e.g. copied from the old server)',
    });
  const target =
    loaded?.path ??
    (opts.configPath || env.ATTENDUX_CONFIG ? configCandidates(opts)[0]! : '/etc/attendux/attendux.json');
  return { loaded, env, backupDir, target };
}

type Catalog = Awaited<ReturnType<typeof readCatalog>>;

/** The config backup asked for, or the newest intact one. */
function chooseBackup(catalog: Catalog, backupId: string | undefined, backupDir: string) {
  const chosen = backupId ? catalog.backups.find((b) => b.id === backupId) : newestOf(catalog, 'config');
  if (!chosen)
    throw new AttenduxError(
      'RESTORE_NO_BACKUP',
      backupId ? `no backup "${backupId}" in ${backupDir}` : `no intact config backup in ${backupDir}`,
      { hint: 'see `attendux backup list`' },
    );
  if (chosen.kind !== 'config')
    throw new AttenduxError('USAGE', `${chosen.id} is a ${chosen.kind} backup, not a config backup`, {
      hint: 'drop --config-only to restore a database backup',
    });
  return chosen;
}

type ManifestEntry = Awaited<ReturnType<typeof openBackup>>['manifest']['entries'][number];

/** Where each config entry is written (config, secrets, then service files), checked before any is written. */
async function filesToWrite(
  entries: ManifestEntry[],
  id: string,
  configTarget: string,
  secretsTarget: string,
  opts: ConfigRestoreOptions,
): Promise<ConfigRestoreFile[]> {
  const files: ConfigRestoreFile[] = [];
  const allow = {
    systemd: resolve(opts.systemdDir ?? '/etc/systemd/system'),
    cron: resolve(opts.cronDir ?? '/etc/cron.d'),
  };
  // A backup made by this version records every file's path; then every service file must have one.
  const recorded = entries.some((e) => e.path !== undefined);
  for (const [i, e] of entries.entries()) {
    const name = basename(e.name);
    const refuse = (why: string) =>
      new AttenduxError('BACKUP_CORRUPT', `${id}: entry ${e.name} ${why}; nothing was written`, {
        hint: `service files are written only to ${allow.systemd}/attendux*.{service,timer} and ${allow.cron}/attendux*`,
      });
    let path: string;
    if (i === 0) path = configTarget;
    else if (i === 1) path = secretsTarget;
    else if (recorded) {
      // The signed manifest says where the file came from: write it back there and nowhere else, and only
      // when that is one of attendux's own unit or cron files in the allowed directories.
      const p = e.path;
      if (typeof p !== 'string' || !isAbsolute(p) || normalize(p) !== p)
        throw refuse(`records no absolute path (${JSON.stringify(p ?? null)})`);
      const allowed =
        (dirname(p) === allow.systemd && SERVICE_FILE.test(basename(p))) ||
        (dirname(p) === allow.cron && CRON_FILE.test(basename(p)));
      if (!allowed) throw refuse(`would be written to ${p}, which is not a path a config restore writes`);
      path = p;
    } else {
      // Older backups: only what `backup config` records, attendux's own unit and cron files, by their
      // names, into the service directories; a backup naming anything else (a forged one) is refused.
      if (!SERVICE_FILE.test(name) && !CRON_FILE.test(name))
        throw refuse('is not a file a config backup records');
      path = /\.(service|timer)$/.test(name) ? join(allow.systemd, name) : join(allow.cron, name);
    }
    files.push({
      entry: e.name,
      path,
      bytes: e.bytes,
      mode: i === 1 ? 0o600 : 0o644,
      exists: await pathExists(path),
    });
  }
  return files;
}
