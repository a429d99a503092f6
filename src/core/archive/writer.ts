import { constants, createReadStream, createWriteStream } from 'node:fs';
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { once } from 'node:events';
import { pack as tarPack, type Pack } from 'tar-stream';
import { fsyncDir, writeFileAtomic } from '../../lib/fs.js';
import { VERSION } from '../../version.js';
import { AgeEncryptStream } from '../../crypto/age-stream.js';
import { ByteCounter, HashTap } from './bytes.js';
import { QUARANTINE_DIR } from './catalog.js';
import {
  FORMAT,
  ID_PATTERN,
  MANIFEST_ENTRY,
  dataFileName,
  sidecarFileName,
  type Manifest,
  type ManifestEntry,
  type Sidecar,
} from './format.js';

/** One tar entry: the concatenation of staged files (gzip members concatenate into one valid gzip file). */
export interface StagedEntry {
  name: string;
  files?: string[];
  content?: Buffer;
  /** Recorded in the manifest entry (config backups: where the file came from). */
  path?: string;
  /** Delete the staged files once they are in the archive (keeps the staging disk use down). */
  removeAfter?: boolean;
  /** Reads a staged file's plaintext (staged files are encrypted, see StagingCipher). */
  open?: (file: string) => import('node:stream').Readable;
}

export interface WriteArchiveOptions {
  backupDir: string;
  id: string;
  recipients: readonly string[];
  /** Entries in archive order; an async iterable lets the archive start while later entries are staged. */
  entries: Iterable<StagedEntry> | AsyncIterable<StagedEntry>;
  /** The manifest without `entries` and `format`, asked for once every entry is in the archive. */
  manifest: () => Omit<Manifest, 'entries' | 'format'>;
  startedAt: Date;
  rows: () => number;
  onBytes?: (written: number) => void;
}

type ManifestBase = Omit<Manifest, 'entries' | 'format'>;

/** Put one staged entry into the tar, hashing it on the way; the staged files are removed if asked. */
async function packEntry(pack: Pack, e: StagedEntry, mtime: Date): Promise<ManifestEntry> {
  const h = createHash('sha256');
  let size = 0;
  if (e.content) size = e.content.length;
  for (const f of e.files ?? []) size += (await stat(f)).size;
  const sink = pack.entry({ name: e.name, size, mode: 0o600, mtime });
  const done = new Promise<void>((resolve, reject) => {
    sink.on('error', reject);
    sink.on('finish', () => resolve());
    sink.on('close', () => resolve());
  });
  // When the output fails (disk full), the entry errors while the loop below is still waiting to
  // write: the loop's own error is what is reported, and this one must not become an unhandled rejection.
  done.catch(() => undefined);
  if (e.content) {
    h.update(e.content);
    sink.write(e.content);
  }
  for (const f of e.files ?? []) {
    const source = e.open ? e.open(f) : createReadStream(f, { highWaterMark: 256 * 1024 });
    for await (const chunk of source as AsyncIterable<Buffer>) {
      h.update(chunk);
      if (!sink.write(chunk)) await once(sink, 'drain');
    }
  }
  sink.end(() => undefined);
  await done;
  // Best effort: a staged file left behind is removed with the staging dir.
  if (e.removeAfter) for (const f of e.files ?? []) await unlink(f).catch(() => undefined);
  return { name: e.name, bytes: size, sha256: h.digest('hex'), ...(e.path ? { path: e.path } : {}) };
}

/** Every entry, then manifest.json (last); returns the manifest without its entries. */
async function packAll(pack: Pack, opts: WriteArchiveOptions): Promise<ManifestBase> {
  const mtime = opts.startedAt;
  const entries: ManifestEntry[] = [];
  for await (const e of opts.entries) entries.push(await packEntry(pack, e, mtime));
  const base = opts.manifest();
  const manifest: Manifest = { format: FORMAT, ...base, entries };
  const text = Buffer.from(JSON.stringify(manifest, null, 2) + '\n');
  await new Promise<void>((resolve, reject) =>
    pack.entry({ name: MANIFEST_ENTRY, size: text.length, mode: 0o600, mtime }, text, (err) =>
      err ? reject(err) : resolve(),
    ),
  );
  pack.finalize();
  return base;
}

/** fsync the finished part file, rename it into place, fsync the directory. */
async function commitPart(part: string, final: string, dir: string): Promise<void> {
  const fh = await open(part, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(part, final);
  await fsyncDir(dir);
}

/**
 * Tar the staged entries plus manifest.json (last), encrypt with age, write `<id>.tar.age.part`, fsync,
 * rename to `<id>.tar.age`, then write the sidecar `<id>.json` atomically. Until the sidecar exists nothing
 * counts as a backup; a crash anywhere leaves only leftovers that `cleanupLeftovers` removes.
 */
export async function writeArchive(opts: WriteArchiveOptions): Promise<Sidecar> {
  const pack = tarPack();
  const tarTap = new HashTap();
  const outTap = new HashTap();
  const part = join(opts.backupDir, `${dataFileName(opts.id)}.part`);
  const final = join(opts.backupDir, dataFileName(opts.id));
  const enc = await AgeEncryptStream.create(opts.recipients);
  const out = createWriteStream(part, { mode: 0o600, flags: 'wx' });
  const writing = pipeline(pack, tarTap, enc, outTap, new ByteCounter(opts.onBytes), out);
  let m: ManifestBase;
  try {
    const feeding = packAll(pack, opts).catch((err: unknown) => {
      pack.destroy(err as Error);
      throw err;
    });
    [, m] = await Promise.all([writing, feeding]);
    await commitPart(part, final, opts.backupDir);
  } catch (err) {
    // The part file is a leftover either way; the error that stopped the run is what is reported.
    await unlink(part).catch(() => undefined);
    throw err;
  }
  const finishedAt = new Date();
  const sidecar: Sidecar = {
    format: FORMAT,
    id: opts.id,
    kind: m.kind,
    parent: m.parent,
    chainRoot: m.chainRoot,
    createdAt: m.createdAt,
    finishedAt: finishedAt.toISOString(),
    durationMs: finishedAt.getTime() - opts.startedAt.getTime(),
    file: dataFileName(opts.id),
    bytes: outTap.bytes,
    sha256: outTap.hash.digest('hex'),
    tarBytes: tarTap.bytes,
    snapshot: m.snapshot,
    schemaVersion: m.schemaVersion,
    databaseId: m.databaseId,
    attenduxVersion: VERSION,
    contentHash: m.contentHash,
    rows: opts.rows(),
    recipients: opts.recipients.length,
    outcome: 'success',
    ...(m.audit ? { audit: m.audit } : {}),
  };
  try {
    await writeFileAtomic(
      join(opts.backupDir, sidecarFileName(opts.id)),
      JSON.stringify(sidecar, null, 2) + '\n',
      0o600,
    );
  } catch (err) {
    // Without its sidecar the data file would be quarantined by the next run: remove it now instead.
    await unlink(final).catch(() => undefined);
    throw err;
  }
  return sidecar;
}

/** A queue that producers push to and writeArchive iterates: entries in the order they are ready. */
export class EntryQueue implements AsyncIterable<StagedEntry> {
  private items: StagedEntry[] = [];
  private waiting: ((v: IteratorResult<StagedEntry>) => void) | undefined;
  private failWaiting: ((err: unknown) => void) | undefined;
  private closed = false;
  private error: Error | undefined;

  push(e: StagedEntry): void {
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = this.failWaiting = undefined;
      w({ value: e, done: false });
    } else this.items.push(e);
  }

  close(err?: unknown): void {
    this.closed = true;
    this.error =
      err === undefined
        ? undefined
        : err instanceof Error
          ? err
          : // an internal stream cause: wraps a non-Error throw so the stream can be destroyed with it
            new Error('backup entry producer failed', { cause: err });
    if (this.waiting) {
      const [w, f] = [this.waiting, this.failWaiting!];
      this.waiting = this.failWaiting = undefined;
      if (this.error) f(this.error);
      else w({ value: undefined, done: true });
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<StagedEntry> {
    return {
      next: () => {
        const item = this.items.shift();
        if (item) return Promise.resolve({ value: item, done: false });
        if (this.closed)
          return this.error ? Promise.reject(this.error) : Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => {
          this.waiting = resolve;
          this.failWaiting = reject;
        });
      },
    };
  }
}

/**
 * Remove what killed or failed runs left behind: `*.part` files and `.staging-*` directories; data files
 * whose sidecar is missing (a crash between the rename and the sidecar, an interrupted prune, a lost
 * sidecar) are moved to quarantine/ instead (listed as `quarantine/<file>`), never deleted.
 * Only called while holding the matching lock, so nothing removed belongs to a running backup.
 */
export async function cleanupLeftovers(
  backupDir: string,
  which: 'database' | 'config' = 'database',
): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(backupDir);
  } catch {
    // no backup dir: no leftovers to remove
    return [];
  }
  const removed: string[] = [];
  const set = new Set(names);
  for (const n of names) {
    // Config backups run under their own lock (a config change must not wait for a long full backup), so
    // each side only cleans up its own leftovers.
    const isConfig = /^\.?(config-|last-run-config)/.test(n);
    if (isConfig !== (which === 'config')) continue;
    const orphan =
      n.endsWith('.tar.age') && ID_PATTERN.test(n.slice(0, -8)) && !set.has(sidecarFileName(n.slice(0, -8)));
    if (orphan) {
      // An intact backup may be all that is left of a crash between its rename and its sidecar (or of a
      // lost sidecar): never delete it. It waits in quarantine/ for `backup repair`, and is reported.
      const q = join(backupDir, QUARANTINE_DIR);
      await mkdir(q, { recursive: true, mode: 0o700 });
      await rename(join(backupDir, n), join(q, n));
      removed.push(`${QUARANTINE_DIR}/${n}`);
    } else if (n.endsWith('.part') || n.startsWith('.staging-')) {
      await rm(join(backupDir, n), { recursive: true, force: true });
      removed.push(n);
    }
  }
  return removed;
}
