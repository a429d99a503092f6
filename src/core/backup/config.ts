import { createHash } from 'node:crypto';
import { allStoredSettings } from '../../db/queries/settings.js';
import { readdir, readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { AttenduxError } from '../../errors.js';
import { actorOf, type Acting } from '../actor.js';
import {
  ensureInstallKeys,
  loadConfig,
  loadSecrets,
  type ConfigLocation,
  type LoadedConfig,
} from '../config/load.js';
import { signBackup } from './signature.js';
import type { Install } from '../install.js';
import { appendAudit, SYSTEM_TENANT } from '../../db/queries/audit.js';
import { VERSION } from '../../version.js';
import { newestOf, readCatalog } from '../archive/catalog.js';
import { newBackupId, type Sidecar } from '../archive/format.js';
import { acquireFileLock } from './lock.js';
import { backupFailure, ensureBackupDir, requireRecipients, lastRunFile, type LastRun } from './run.js';
import { cleanupLeftovers, writeArchive, type StagedEntry } from '../archive/writer.js';
import { writeFileAtomic } from '../../lib/fs.js';
import { ledgerBackupEntry } from '../ledger/index.js';
import { copyAfterBackup, type CopyOutcome } from '../offsite/copy.js';

export interface ConfigBackupOptions extends ConfigLocation, Acting {
  ifChanged?: boolean;
  /**
   * Rendered service files to include. Default: what `schedule install` writes, i.e.
   * /etc/systemd/system/attendux*.{service,timer} and /etc/cron.d/attendux*, those that exist.
   */
  serviceFiles?: string[];
  /** Write the audit entry (default true; needs the database, skipped with a note when unreachable). */
  audit?: boolean;
  /**
   * Include every company's settings (tenant_settings) as settings/tenant-settings.json, so that each settings
   * change made in the server leaves a dated copy (default true; skipped with a note when the database is
   * unreachable). `restore --config-only` restores only the config/ entries.
   */
  tenantSettings?: boolean;
}

export interface ConfigBackupResult {
  written: boolean;
  sidecar?: Sidecar;
  /** The config backup whose content equals the current files (--if-changed, nothing written). */
  previous?: string;
  files: string[];
  contentHash: string;
  auditSkipped?: string;
  settingsSkipped?: string;
  /** Copies to backup.targets (src/core/offsite); a failed copy never fails the backup. */
  offsite?: CopyOutcome[];
}

async function defaultServiceFiles(): Promise<string[]> {
  const out: string[] = [];
  for (const [dir, re] of [
    ['/etc/systemd/system', /^attendux.*\.(service|timer)$/],
    ['/etc/cron.d', /^attendux/],
  ] as const) {
    // no such dir on this host: no units to back up
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const n of names.sort()) if (re.test(n)) out.push(join(dir, n));
  }
  return out;
}

/**
 * Back up the config file, the secrets file and the service files, encrypted like every backup. With
 * `ifChanged`, compare a hash over the names and contents with the newest config backup and write nothing
 * when they are equal. Does not need the database (the audit entry is written when it is reachable).
 */
export async function backupConfig(opts: ConfigBackupOptions = {}): Promise<ConfigBackupResult> {
  const startedAt = new Date();
  const loaded = await loadConfig(opts);
  const wantDb = opts.audit !== false || opts.tenantSettings !== false;
  const db = wantDb ? await openInstallQuietly(opts) : { skipped: 'disabled' };
  try {
    return await backupConfigWith(opts, loaded, db, startedAt);
  } finally {
    await db.install?.close();
  }
}

type MaybeInstall = { install?: Install; skipped?: string };

async function openInstallQuietly(loc: ConfigLocation): Promise<MaybeInstall> {
  try {
    const { openInstall } = await import('../install.js');
    return { install: await openInstall({ ...loc, requireMigrated: false }) };
  } catch (err) {
    return { skipped: `database unreachable: ${(err as Error).message}` };
  }
}

async function backupConfigWith(
  opts: ConfigBackupOptions,
  loaded: LoadedConfig,
  db: MaybeInstall,
  startedAt: Date,
): Promise<ConfigBackupResult> {
  const backupDir = loaded.backupDir;
  const record = (run: LastRun) =>
    writeFileAtomic(lastRunFile(backupDir, 'config'), JSON.stringify(run, null, 2) + '\n', 0o600).catch(
      () => undefined,
    );
  try {
    const recipients = requireRecipients(loaded);
    await ensureBackupDir(backupDir);
    const files = [loaded.path, loaded.secretsPath, ...(opts.serviceFiles ?? (await defaultServiceFiles()))];
    const entries = await configFileEntries(files);
    const settings = await tenantSettingsEntry(opts, db);
    if (settings.entry) entries.push(settings.entry);
    const settingsSkipped = settings.skipped;
    const ledger = await ledgerBackupEntry(loaded.config.dataDir, db.install?.admin);
    if (ledger) entries.push(ledger);
    const contentHash = contentHashOf(entries);
    if (opts.ifChanged) {
      const newest = newestOf(await readCatalog(backupDir), 'config');
      if (newest && newest.contentHash === contentHash)
        return { written: false, previous: newest.id, files, contentHash };
    }
    const sidecar = await writeSignedConfigArchive(loaded, db, entries, contentHash, recipients, startedAt);
    await record({
      kind: 'config',
      id: sidecar.id,
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      outcome: 'success',
    });
    const auditSkipped =
      opts.audit === false ? 'disabled' : await auditConfigBackup(db, sidecar, actorOf(opts));
    const offsite = await copyAfterBackup(loaded, sidecar, { db: db.install?.admin, actor: actorOf(opts) });
    return {
      written: true,
      sidecar,
      files,
      contentHash,
      ...(auditSkipped ? { auditSkipped } : {}),
      ...(settingsSkipped ? { settingsSkipped } : {}),
      ...(offsite.length ? { offsite } : {}),
    };
  } catch (err) {
    const e = backupFailure(err, 'config', 'writing the config backup');
    if (e.code !== 'BACKUP_LOCKED')
      await record({
        kind: 'config',
        id: null,
        startedAt: startedAt.toISOString(),
        finishedAt: new Date().toISOString(),
        outcome: 'failure',
        error: { code: e.code, message: e.message },
      });
    throw e;
  }
}

/** The config, secrets and service files as archive entries, each under a unique name. */
async function configFileEntries(files: string[]): Promise<StagedEntry[]> {
  const entries: StagedEntry[] = [];
  const used = new Set<string>();
  for (const f of files) {
    let content: Buffer;
    try {
      content = await readFile(f);
    } catch (err) {
      throw new AttenduxError('IO_ERROR', `cannot read ${f}: ${(err as Error).message}`, { cause: err });
    }
    let name = `config/${basename(f)}`;
    for (let i = 2; used.has(name); i++) name = `config/${i}-${basename(f)}`;
    used.add(name);
    // Where it came from: `restore --config-only` writes service files back only there (and only when the
    // path is on its allow-list). Not part of contentHash, so --if-changed compares as before.
    entries.push({ name, content, path: resolve(f) });
  }
  return entries;
}

/** The tenant settings entry, or why it was skipped. */
async function tenantSettingsEntry(
  opts: ConfigBackupOptions,
  db: MaybeInstall,
): Promise<{ entry?: StagedEntry; skipped?: string }> {
  const skipped: string | undefined = opts.tenantSettings === false ? 'disabled' : db.skipped;
  if (!db.install || opts.tenantSettings === false) return { skipped };
  try {
    const rows = await allStoredSettings(db.install.admin);
    return {
      entry: {
        name: 'settings/tenant-settings.json',
        content: Buffer.from(JSON.stringify(rows, null, 2) + '\n'),
      },
      skipped,
    };
  } catch (err) {
    return { skipped: `cannot read tenant settings: ${(err as Error).message}` };
  }
}

function contentHashOf(entries: StagedEntry[]): string {
  const h = createHash('sha256');
  for (const e of entries) h.update(`${e.name}\0${createHash('sha256').update(e.content!).digest('hex')}\n`);
  return h.digest('hex');
}

/** Write and sign the config backup archive under its own lock. */
async function writeSignedConfigArchive(
  loaded: LoadedConfig,
  db: MaybeInstall,
  entries: StagedEntry[],
  contentHash: string,
  recipients: ReturnType<typeof requireRecipients>,
  startedAt: Date,
): Promise<Sidecar> {
  const backupDir = loaded.backupDir;
  // Its own lock file: a config change during a long full backup must still be backed up.
  const lock = await acquireFileLock(loaded.config.dataDir, 'backup config', 'backup-config.lock');
  try {
    await cleanupLeftovers(backupDir, 'config');
    const id = newBackupId('config', startedAt);
    const sidecar = await writeArchive({
      backupDir,
      id,
      recipients,
      entries,
      startedAt,
      rows: () => 0,
      manifest: () => ({
        id,
        kind: 'config',
        parent: null,
        chainRoot: null,
        createdAt: startedAt.toISOString(),
        attenduxVersion: VERSION,
        schemaVersion: null,
        postgresVersion: null,
        snapshot: null,
        parentSnapshot: null,
        databaseId: null,
        tables: [],
        changes: null,
        contentHash,
      }),
    });
    const signingKey =
      db.install?.secrets.signingKey ??
      (await ensureInstallKeys(loaded.secretsPath, await loadSecrets(loaded.secretsPath))).signingKey;
    await signBackup(backupDir, sidecar.id, signingKey);
    return sidecar;
  } finally {
    await lock.release();
  }
}

/** Returns why the entry was not written, or undefined when it was. */
async function auditConfigBackup(
  db: MaybeInstall,
  sidecar: Sidecar,
  actor: string,
): Promise<string | undefined> {
  if (!db.install) return db.skipped;
  try {
    await appendAudit(db.install.admin, {
      tenantId: SYSTEM_TENANT,
      actor,
      action: 'backup.config',
      entityType: 'backup',
      entityId: sidecar.id,
      details: { kind: 'config', outcome: 'success', bytes: sidecar.bytes },
    });
    return undefined;
  } catch (err) {
    return `database unreachable: ${(err as Error).message}`;
  }
}
