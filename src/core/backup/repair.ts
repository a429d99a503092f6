import { auditBackupOperation } from './audit-entry.js';
import { open, mkdir, rename, stat } from 'node:fs/promises';
import { warnSwallowed } from '../../lib/log.js';
import { join } from 'node:path';
import { AttenduxError, isAttenduxError } from '../../errors.js';
import type { Acting } from '../actor.js';
import { ensureInstallKeys, loadConfig, loadSecrets, type ConfigLocation } from '../config/load.js';
import { signBackup } from './signature.js';
import { fsyncDir, writeFileAtomic } from '../../lib/fs.js';
import { QUARANTINE_DIR, readCatalog, type CatalogProblem } from '../archive/catalog.js';
import { dataFileName, sidecarFileName, type Manifest, type Sidecar } from '../archive/format.js';
import { readBackup } from '../archive/reader.js';
import { readIdentityFile } from '../archive/identity.js';
import { acquireFileLock } from './lock.js';

export interface RepairOptions extends ConfigLocation, Acting {
  identityFile?: string;
  /** Already read identities (a passphrase-protected file opened by the CLI). */
  identities?: string[];
  dryRun?: boolean;
}

export interface RepairItem {
  id: string;
  /** What was wrong (the catalog's problem kind). */
  was: CatalogProblem['kind'];
  outcome: 'repaired' | 'quarantined' | 'unrepairable';
  detail: string;
}

export interface RepairResult {
  backupDir: string;
  dryRun: boolean;
  items: RepairItem[];
}

/** Number of recipient stanzas in an age header (`-> X25519 ...` lines before `---`). */
async function countRecipients(file: string): Promise<number> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(64 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const header = buf.subarray(0, bytesRead).toString('latin1');
    const end = header.indexOf('\n---');
    return (end < 0 ? header : header.slice(0, end)).split('\n').filter((l) => l.startsWith('-> ')).length;
  } finally {
    await fh.close();
  }
}

function rowsOf(m: Manifest): number {
  if (m.kind === 'full') return m.tables.reduce((n, t) => n + t.rows, 0);
  if (m.kind === 'incremental') return m.changes?.count ?? 0;
  return 0;
}

/** The sidecar the encrypted file itself describes, once every entry checked out against its manifest. */
async function rebuildSidecar(file: string, p: CatalogProblem, identities: string[]): Promise<Sidecar> {
  const r = await readBackup({ file, identities });
  const m = r.manifest;
  if (m.id !== p.id) throw new AttenduxError('BACKUP_CORRUPT', `${p.file} holds backup ${m.id}, not ${p.id}`);
  const finishedAt = (await stat(file)).mtime;
  return {
    // The backup's own format version: a repaired older backup stays what it is.
    format: m.format,
    id: m.id,
    kind: m.kind,
    parent: m.parent,
    chainRoot: m.chainRoot,
    createdAt: m.createdAt,
    finishedAt: finishedAt.toISOString(),
    durationMs: Math.max(0, finishedAt.getTime() - Date.parse(m.createdAt)),
    file: dataFileName(m.id),
    bytes: r.bytes,
    sha256: r.sha256,
    tarBytes: r.tarBytes,
    snapshot: m.snapshot,
    schemaVersion: m.schemaVersion,
    databaseId: m.databaseId,
    attenduxVersion: m.attenduxVersion,
    contentHash: m.contentHash,
    rows: rowsOf(m),
    recipients: await countRecipients(file),
    outcome: 'success',
    repairedAt: new Date().toISOString(),
  };
}

/** Move a file that did not decrypt or check out, and its damaged sidecar, into quarantine/. */
async function quarantine(backupDir: string, q: string, file: string, p: CatalogProblem): Promise<void> {
  await mkdir(q, { recursive: true, mode: 0o700 });
  await rename(file, join(q, dataFileName(p.id))).catch((err: unknown) =>
    warnSwallowed(`${file} not moved to quarantine`, err),
  );
  if (p.kind === 'sidecar-invalid')
    await rename(join(backupDir, sidecarFileName(p.id)), join(q, `${sidecarFileName(p.id)}.damaged`)).catch(
      (err: unknown) => warnSwallowed(`the sidecar of ${p.id} not moved to quarantine`, err),
    );
}

/**
 * `attendux backup repair`: for every backup whose sidecar is unreadable or missing (in the backup dir or
 * set aside in quarantine/), decrypt the encrypted file, check every entry against its manifest, and write
 * the sidecar again from what the file itself says; the data file goes back beside it. A file that does not
 * decrypt or check out stays (or is moved) in quarantine/: never deleted, still reported.
 */
export async function repairBackups(opts: RepairOptions): Promise<RepairResult> {
  const loaded = await loadConfig(opts);
  const backupDir = loaded.backupDir;
  const identityFile =
    opts.identityFile ?? process.env.ATTENDUX_BACKUP_IDENTITY ?? loaded.config.backup.identityFile;
  if (!opts.identities && !identityFile)
    throw new AttenduxError('USAGE', 'backup repair needs the backup identity to read the encrypted files', {
      hint: 'pass --identity FILE or set $ATTENDUX_BACKUP_IDENTITY',
    });
  const identities = opts.identities ?? (await readIdentityFile(identityFile!));
  const lock = opts.dryRun ? null : await acquireFileLock(loaded.config.dataDir, 'backup repair');
  const items: RepairItem[] = [];
  let signingKey: string | undefined;
  try {
    const catalog = await readCatalog(backupDir);
    const q = join(backupDir, QUARANTINE_DIR);
    for (const p of catalog.problems) {
      const file = join(backupDir, p.file);
      let sidecar: Sidecar;
      try {
        sidecar = await rebuildSidecar(file, p, identities);
      } catch (err) {
        if (isAttenduxError(err) && err.code === 'BACKUP_BAD_IDENTITY') throw err;
        const detail = (err as Error).message;
        if (p.kind === 'quarantined' || opts.dryRun) {
          items.push({ id: p.id, was: p.kind, outcome: 'unrepairable', detail });
          continue;
        }
        // Out of the way of every other command, kept for inspection.
        await quarantine(backupDir, q, file, p);
        items.push({ id: p.id, was: p.kind, outcome: 'quarantined', detail });
        continue;
      }
      if (opts.dryRun) {
        items.push({ id: p.id, was: p.kind, outcome: 'repaired', detail: 'would rebuild the sidecar' });
        continue;
      }
      if (p.kind === 'quarantined') await rename(file, join(backupDir, dataFileName(p.id)));
      if (p.kind === 'sidecar-invalid')
        await mkdir(q, { recursive: true, mode: 0o700 }).then(() =>
          rename(join(backupDir, sidecarFileName(p.id)), join(q, `${sidecarFileName(p.id)}.damaged`)),
        );
      await writeFileAtomic(
        join(backupDir, sidecarFileName(p.id)),
        JSON.stringify(sidecar, null, 2) + '\n',
        0o600,
      );
      await fsyncDir(backupDir);
      // The old signature covered the lost sidecar. Sign the rebuilt one: repair is an explicit admin action
      // on a file that decrypted with the admin's identity and matched its own manifest (README: backup repair).
      signingKey ??= (await ensureInstallKeys(loaded.secretsPath, await loadSecrets(loaded.secretsPath)))
        .signingKey;
      await signBackup(backupDir, p.id, signingKey);
      items.push({
        id: p.id,
        was: p.kind,
        outcome: 'repaired',
        detail: `sidecar rebuilt from the encrypted file (${sidecar.kind}, ${sidecar.rows} ${sidecar.kind === 'incremental' ? 'changes' : 'rows'})`,
      });
    }
  } finally {
    await lock?.release();
  }
  if (!opts.dryRun && items.length)
    await auditBackupOperation(opts, 'backup.repair', {
      items: items.map((i) => ({ id: i.id, was: i.was, outcome: i.outcome })),
    });
  return { backupDir, dryRun: !!opts.dryRun, items };
}
