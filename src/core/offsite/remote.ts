import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AttenduxError, isAttenduxError } from '../../errors.js';
import { loadConfig, type ConfigLocation, type LoadedConfig } from '../config/load.js';
import { computeChains, readCatalog, type CatalogEntry } from '../archive/catalog.js';
import { dataFileName, ID_PATTERN, parseSidecar, sidecarFileName, type Sidecar } from '../archive/format.js';
import { readBackup } from '../archive/reader.js';
import { identityFileFrom, readIdentityFile } from '../archive/identity.js';
import { acquireFileLock } from '../backup/lock.js';
import { auditBackupOperation } from '../backup/audit-entry.js';
import type { TargetConfig, TargetSecrets } from './schema.js';
import {
  configuredTargets,
  connect,
  copyWithRetries,
  hashRemote,
  recordOutcomes,
  type CopyOptions,
  type CopyOutcome,
  type OffsiteProgress,
} from './copy.js';
import type { VerifyItem } from '../backup/verify.js';
import { isTempName, offsiteError, type OffsiteTarget } from './target.js';
import { download, privateDir } from './download.js';

export async function readStreamText(target: OffsiteTarget, name: string): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of await target.read(name)) {
    n += (c as Buffer).length;
    // A sidecar is a few hundred bytes; refuse to buffer something that is clearly not one.
    if (n > 1 << 20)
      throw new AttenduxError('BACKUP_CORRUPT', `target ${target.name}: ${name} is too large for a sidecar`);
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export interface RemoteCatalog {
  target: string;
  url: string;
  backups: CatalogEntry[];
  invalid: { file: string; problem: string }[];
  /** Temporary files of interrupted uploads, and data files without a sidecar (not backups yet). */
  incomplete: string[];
  /** Every file name on the target, as listed for this catalog. */
  names: string[];
}

/** Read a target's sidecars and work out chains exactly as for the local dir (file sizes from the listing). */
export async function remoteCatalog(target: OffsiteTarget): Promise<RemoteCatalog> {
  const files = await target.list();
  const sizes = new Map(files.map((f) => [f.name, f.bytes]));
  const sidecars: Sidecar[] = [];
  const invalid: RemoteCatalog['invalid'] = [];
  for (const f of files.map((x) => x.name).sort()) {
    if (!f.endsWith('.json') || !ID_PATTERN.test(f.slice(0, -5))) continue;
    try {
      sidecars.push(parseSidecar(await readStreamText(target, f), `${target.name}:${f}`));
    } catch (err) {
      invalid.push({ file: f, problem: (err as Error).message });
    }
  }
  sidecars.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  const dataSizes = new Map(sidecars.map((s) => [s.id, sizes.get(dataFileName(s.id)) ?? null]));
  const ids = new Set(sidecars.map((s) => s.id));
  const incomplete = files
    .map((f) => f.name)
    .filter(
      (n) =>
        isTempName(n) ||
        (n.endsWith('.tar.age') && ID_PATTERN.test(n.slice(0, -8)) && !ids.has(n.slice(0, -8))),
    );
  return {
    target: target.name,
    url: target.url,
    backups: computeChains(sidecars, dataSizes, `${target.name}:`),
    invalid,
    incomplete,
    names: files.map((f) => f.name),
  };
}

export async function withTarget<T>(
  loaded: LoadedConfig,
  name: string,
  fn: (t: OffsiteTarget, cfg: TargetConfig, secrets: TargetSecrets | undefined) => Promise<T>,
): Promise<T> {
  const { targets, secrets } = await configuredTargets(loaded, name);
  const cfg = targets[0]!;
  const target = await connect(cfg, secrets);
  try {
    return await fn(target, cfg, secrets);
  } catch (err) {
    if (isAttenduxError(err)) throw err;
    throw offsiteError(cfg, 'failed', err);
  } finally {
    await target.close();
  }
}

/** `backup list --target NAME`. */
export async function listTarget(loc: ConfigLocation, name: string): Promise<RemoteCatalog> {
  const loaded = await loadConfig(loc);
  return withTarget(loaded, name, (t) => remoteCatalog(t));
}

// ---------------------------------------------------------------------------------------------------------
// sync

export interface SyncTargetResult {
  target: string;
  url?: string;
  /** Local backups the target lacked (or held incomplete or damaged in size), oldest first. */
  missing: string[];
  copied: CopyOutcome[];
  removedLeftovers: string[];
  error?: { code: string; message: string };
}

export interface SyncResult {
  ok: boolean;
  dryRun: boolean;
  targets: SyncTargetResult[];
}

/**
 * `backup sync`: copy to each target what it lacks (after an outage, a new target, a killed upload), oldest
 * first so a full lands before its incrementals, and remove temporary files of interrupted uploads. Holds
 * the backup lock so that no backup or prune runs meanwhile.
 */
export async function syncTargets(
  loc: ConfigLocation & CopyOptions & { target?: string; dryRun?: boolean },
): Promise<SyncResult> {
  const loaded = await loadConfig(loc);
  const { targets, secrets } = await configuredTargets(loaded, loc.target);
  const lock = loc.dryRun ? undefined : await acquireFileLock(loaded.config.dataDir, 'backup sync');
  const results: SyncTargetResult[] = [];
  try {
    const local = (await readCatalog(loaded.backupDir)).backups.filter((b) => b.status === 'ok');
    for (const t of targets) {
      const r: SyncTargetResult = { target: t.name, missing: [], copied: [], removedLeftovers: [] };
      results.push(r);
      try {
        const target = await connect(t, secrets);
        try {
          r.url = target.url;
          const files = new Map((await target.list()).map((f) => [f.name, f.bytes]));
          r.missing = local
            .filter((b) => !files.has(sidecarFileName(b.id)) || files.get(dataFileName(b.id)) !== b.bytes)
            .map((b) => b.id);
          if (!loc.dryRun)
            for (const n of (await target.leftovers?.()) ?? []) {
              await target.remove(n);
              r.removedLeftovers.push(n);
            }
        } finally {
          await target.close();
        }
        if (!loc.dryRun && r.missing.length) {
          const todo = local.filter((b) => r.missing.includes(b.id));
          r.copied = await copyWithRetries(loaded, t, secrets, todo, loc);
        }
        if (!loc.dryRun)
          await recordOutcomes(
            loaded.backupDir,
            t.name,
            r.copied,
            r.copied.every((c) => c.ok),
          );
      } catch (err) {
        const e = isAttenduxError(err) ? err : offsiteError(t, 'sync failed', err);
        r.error = { code: e.code, message: e.message };
        if (!loc.dryRun)
          await recordOutcomes(loaded.backupDir, t.name, [
            {
              target: t.name,
              id: r.missing[0] ?? '-',
              ok: false,
              bytes: 0,
              seconds: 0,
              attempts: 1,
              error: r.error,
            },
          ]);
      }
    }
  } finally {
    await lock?.release();
  }
  const ok = results.every((r) => !r.error && r.copied.every((c) => c.ok));
  if (!loc.dryRun)
    await auditBackupOperation(loc, 'backup.offsite.sync', {
      outcome: ok ? 'success' : 'failure',
      targets: results.map((r) => ({
        target: r.target,
        copied: r.copied.filter((c) => c.ok).map((c) => c.id),
        failed: r.copied.filter((c) => !c.ok).map((c) => c.id),
        error: r.error?.code,
      })),
    });
  return { ok, dryRun: loc.dryRun === true, targets: results };
}

// ---------------------------------------------------------------------------------------------------------
// verify

/** A target's copy checked like a local backup (`backup verify`), without the local chain name. */
export type RemoteVerifyItem = Omit<VerifyItem, 'chain'>;

/**
 * `backup verify --target NAME`: without an identity, stream each remote file through SHA-256 and compare
 * it with its remote sidecar (and the local one, when this server still has it), writing nothing locally;
 * with one, download it into a private temp dir, decrypt and check every entry, and remove it.
 */
export async function verifyTarget(
  loc: ConfigLocation & {
    target: string;
    id?: string;
    all?: boolean;
    identityFile?: string;
    onProgress?: (p: OffsiteProgress) => void;
  },
): Promise<{ ok: boolean; target: string; backups: RemoteVerifyItem[] }> {
  const loaded = await loadConfig(loc);
  const identityFile = identityFileFrom({ identityFile: loc.identityFile, env: loc.env });
  const identities = identityFile ? await readIdentityFile(identityFile) : null;
  const localById = new Map((await readCatalog(loaded.backupDir)).backups.map((b) => [b.id, b]));
  return withTarget(loaded, loc.target, async (target) => {
    const cat = await remoteCatalog(target);
    let chosen = cat.backups;
    if (loc.id) {
      chosen = cat.backups.filter((b) => b.id === loc.id);
      if (!chosen.length)
        throw new AttenduxError('NOT_FOUND', `no backup "${loc.id}" on target ${target.name}`, {
          hint: `see \`attendux backup list --target ${target.name}\``,
        });
    } else if (!loc.all) chosen = cat.backups.slice(-1);
    if (!chosen.length) throw new AttenduxError('NOT_FOUND', `no backups on target ${target.name}`);
    const items: RemoteVerifyItem[] = [];
    for (const b of chosen) {
      const t0 = Date.now();
      const item: RemoteVerifyItem = {
        id: b.id,
        kind: b.kind,
        ok: true,
        depth: identities ? 'full' : 'checksum',
        bytes: 0,
        seconds: 0,
      };
      const onBytes = (n: number) =>
        loc.onProgress?.({ target: target.name, id: b.id, phase: 'verify', bytes: n, total: b.bytes });
      try {
        const mine = localById.get(b.id);
        if (mine && (mine.sha256 !== b.sha256 || mine.bytes !== b.bytes))
          throw new AttenduxError(
            'BACKUP_CORRUPT',
            `the sidecar of ${b.id} on ${target.name} differs from the local one`,
          );
        if (identities) {
          const dir = await privateDir(`verify-${target.name}`);
          try {
            const file = join(dir, dataFileName(b.id));
            await download(target, dataFileName(b.id), file, b, onBytes);
            const r = await readBackup({ file, identities, sidecar: b });
            item.bytes = r.bytes;
            item.entries = r.entries.length;
          } finally {
            await rm(dir, { recursive: true, force: true });
          }
        } else {
          const h = await hashRemote(target, dataFileName(b.id), onBytes);
          item.bytes = h.bytes;
          if (h.bytes !== b.bytes || h.sha256 !== b.sha256)
            throw new AttenduxError(
              'BACKUP_CORRUPT',
              `${target.name}:${dataFileName(b.id)}: SHA-256 of the file does not match its sidecar${h.bytes !== b.bytes ? ` (${h.bytes} bytes, expected ${b.bytes})` : ''}`,
            );
        }
      } catch (err) {
        if (isAttenduxError(err) && err.code === 'BACKUP_BAD_IDENTITY') throw err;
        const e = isAttenduxError(err) ? err : new AttenduxError('BACKUP_CORRUPT', (err as Error).message);
        item.ok = false;
        item.error = { code: e.code, message: e.message };
      }
      item.seconds = (Date.now() - t0) / 1000;
      items.push(item);
    }
    return { ok: items.every((i) => i.ok), target: target.name, backups: items };
  });
}
