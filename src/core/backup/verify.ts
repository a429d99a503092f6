import { join } from 'node:path';
import { AttenduxError, isAttenduxError } from '../../errors.js';
import { loadConfig, type ConfigLocation } from '../config/load.js';
import { readCatalog, type Catalog, type CatalogEntry } from '../archive/catalog.js';
import { dataFileName } from '../archive/format.js';
import { hashFile } from '../archive/bytes.js';
import { readBackup } from '../archive/reader.js';
import { identityFileFrom, readIdentityFile } from '../archive/identity.js';
import { checkBackupSignature, trustedSigningKeys } from './signature.js';

export interface VerifyOptions extends ConfigLocation {
  /** A backup id; default the newest backup. */
  id?: string;
  all?: boolean;
  /** age identity file; without it only the encrypted file's size and SHA-256 are checked. */
  identityFile?: string;
  onProgress?: (p: { id: string; bytes: number; total: number }) => void;
}

export interface VerifyItem {
  id: string;
  kind: string;
  ok: boolean;
  /** 'full': decrypted and every entry checked; 'checksum': only the encrypted file against its sidecar. */
  depth: 'full' | 'checksum';
  bytes: number;
  seconds: number;
  entries?: number;
  chain: string;
  error?: { code: string; message: string; entry?: string | null };
}

export interface VerifyResult {
  ok: boolean;
  backups: VerifyItem[];
}
/** The backups asked for: all, one named id, or the newest. */
function pickTargets(catalog: Catalog, opts: VerifyOptions, backupDir: string): CatalogEntry[] {
  if (opts.all) return catalog.backups;
  if (opts.id) {
    const hit = catalog.backups.find((b) => b.id === opts.id);
    if (!hit)
      throw new AttenduxError('NOT_FOUND', `no backup "${opts.id}" in ${backupDir}`, {
        hint: 'run `attendux backup list` to see the backups',
      });
    return [hit];
  }
  const newest = catalog.backups[catalog.backups.length - 1];
  if (!newest) throw new AttenduxError('NOT_FOUND', `no backups in ${backupDir}`);
  return [newest];
}

/** Without an identity: the encrypted file's size and SHA-256 against its sidecar (its size goes in `item`). */
async function checkChecksum(
  file: string,
  b: CatalogEntry,
  opts: VerifyOptions,
  item: VerifyItem,
): Promise<void> {
  const h = await hashFile(file, (n) => opts.onProgress?.({ id: b.id, bytes: n, total: b.bytes })).catch(
    (err: unknown) => {
      const missing = (err as { code?: string }).code === 'ENOENT';
      throw new AttenduxError(
        'BACKUP_CORRUPT',
        missing ? `${file} is missing` : `${file}: ${(err as Error).message}`,
      );
    },
  );
  item.bytes = h.bytes;
  if (h.bytes !== b.bytes || h.sha256 !== b.sha256)
    throw new AttenduxError(
      'BACKUP_CORRUPT',
      `${file}: SHA-256 of the file does not match its sidecar${h.bytes !== b.bytes ? ` (${h.bytes} bytes, expected ${b.bytes})` : ''}`,
    );
}

/**
 * Check backups without touching the database: with an identity, decrypt in a stream and check every entry
 * against the manifest and the manifest against the sidecar; without one, the encrypted file's SHA-256.
 */
export async function verifyBackups(opts: VerifyOptions): Promise<VerifyResult> {
  const loaded = await loadConfig(opts);
  const identityFile = identityFileFrom({
    identityFile: opts.identityFile,
    env: opts.env,
    configured: loaded.config.backup.identityFile,
  });
  const identities = identityFile ? await readIdentityFile(identityFile) : null;
  const catalog = await readCatalog(loaded.backupDir);
  const targets = pickTargets(catalog, opts, loaded.backupDir);
  const trusted = await trustedSigningKeys({ loaded, identityFile });
  const out: VerifyItem[] = [];
  // Unreadable or missing sidecars are failures of their own, whatever was asked for (except one named id).
  if (!opts.id)
    for (const p of catalog.problems)
      out.push({
        id: p.id,
        kind: p.id.split('-')[0]!,
        ok: false,
        depth: 'checksum',
        bytes: 0,
        seconds: 0,
        chain: p.kind,
        error: { code: 'BACKUP_CORRUPT', message: `${p.file}: ${p.problem}`, entry: null },
      });
  for (const b of targets) {
    const t0 = Date.now();
    const file = join(loaded.backupDir, dataFileName(b.id));
    const item: VerifyItem = {
      id: b.id,
      kind: b.kind,
      ok: true,
      depth: identities ? 'full' : 'checksum',
      bytes: 0,
      seconds: 0,
      chain: b.status,
    };
    try {
      await checkBackupSignature(loaded.backupDir, b.id, trusted);
      if (identities) {
        const r = await readBackup({
          file,
          identities,
          sidecar: b,
          onBytes: (n) => opts.onProgress?.({ id: b.id, bytes: n, total: b.bytes }),
        });
        item.bytes = r.bytes;
        item.entries = r.entries.length;
      } else {
        await checkChecksum(file, b, opts, item);
      }
      // The file is fine, but a restore needs its whole chain: a gap or a damaged link is a failure too.
      if (b.status !== 'ok')
        throw new AttenduxError(
          'BACKUP_CHAIN_BROKEN',
          `${b.id} cannot be restored: its chain is broken (${b.problem ?? b.status})`,
        );
    } catch (err) {
      if (isAttenduxError(err) && err.code === 'BACKUP_BAD_IDENTITY') throw err;
      const e = isAttenduxError(err) ? err : new AttenduxError('BACKUP_CORRUPT', (err as Error).message);
      item.ok = false;
      item.error = {
        code: e.code,
        message: e.message,
        entry: (e.details?.entry as string | undefined) ?? null,
      };
    }
    item.seconds = (Date.now() - t0) / 1000;
    out.push(item);
  }
  return { ok: out.every((i) => i.ok), backups: out };
}
