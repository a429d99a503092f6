import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, normalize } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { extract, type Extract } from 'tar-stream';
import { AttenduxError } from '../../errors.js';
import { AgeDecryptError, AgeDecryptStream } from '../../crypto/age-stream.js';
import { ByteCounter, HashTap, hashFile } from './bytes.js';
import {
  MANIFEST_ENTRY,
  dataFileName,
  parseManifest,
  parseSidecar,
  sidecarFileName,
  type Manifest,
  type Sidecar,
} from './format.js';

export interface OpenedEntry {
  name: string;
  bytes: number;
  sha256: string;
  /** Where it was written (extract mode). */
  path?: string;
}

export interface ReadBackupResult {
  manifest: Manifest;
  entries: OpenedEntry[];
  /** SHA-256 and size of the encrypted file as read. */
  sha256: string;
  bytes: number;
  /** Size of the decrypted tar. */
  tarBytes: number;
}

export interface ReadBackupOptions {
  file: string;
  identities: readonly string[];
  /** Write the entries under this directory (created 0700); without it the entries are only checksummed. */
  extractTo?: string;
  sidecar?: Sidecar;
  onBytes?: (encryptedBytesRead: number) => void;
}

export async function readSidecar(backupDir: string, id: string): Promise<Sidecar> {
  const path = join(backupDir, sidecarFileName(id));
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new AttenduxError('NOT_FOUND', `no backup "${id}" in ${backupDir}`, {
      hint: 'run `attendux backup list` to see the backups',
    });
  }
  return parseSidecar(text, path);
}

/**
 * Knows which tar entry the plaintext decrypted so far ends in, so that damage found by the decryption is
 * attributed to its entry even though the extractor downstream lags behind. It is a second tar-stream
 * extractor fed synchronously with every verified plaintext chunk; its entries are drained and dropped.
 */
class EntryLocator {
  private readonly ex: Extract = extract();
  private current: string | null = null;
  private last: string | null = null;

  constructor() {
    // Only verified plaintext is fed, so this never fails on its own; when the read is abandoned its
    // unfinished archive must not become an uncaught error.
    this.ex.on('error', () => undefined);
    this.ex.on('entry', (header, stream, next) => {
      this.current = header.name;
      stream.on('error', () => undefined);
      stream.on('end', () => {
        this.last = header.name;
        this.current = null;
        next();
      });
      stream.resume();
    });
  }

  feed(chunk: Buffer): void {
    this.ex.write(chunk);
  }

  /** Where the next byte falls, in words, once every byte fed has been parsed. */
  async locate(): Promise<{ where: string; entry: string | null }> {
    // streamx (tar-stream's stream library) resolves drained() once every pending write is processed;
    // the extractor is a streamx Writable, so the static is reached through its class.
    const drained = (this.ex.constructor as { drained?: (w: Extract) => Promise<unknown> }).drained;
    await drained?.(this.ex);
    this.ex.destroy();
    if (this.current) return { where: ` in entry ${this.current}`, entry: this.current };
    return { where: this.last ? ` after entry ${this.last}` : ' at the start of the archive', entry: null };
  }
}

function safeEntryName(name: string): boolean {
  if (name.startsWith('/') || name.includes('\\')) return false;
  const n = normalize(name);
  return !n.startsWith('..') && n === name && !name.includes('\0');
}

interface Collected {
  entries: OpenedEntry[];
  manifestText?: string;
  current?: string;
  afterManifest: boolean;
}

/** The extractor that checksums (and with extractTo writes) every entry, manifest.json last. */
function entryCollector(extractTo: string | undefined): { ex: Extract; got: Collected } {
  const got: Collected = { entries: [], afterManifest: false };
  const ex = extract();
  ex.on('entry', (header, stream, next) => {
    // When the decryption fails later, the pipeline destroys the extractor with that error, which destroys
    // the entry streams again, long after their own pipeline stopped listening: without a listener of its
    // own, that 'error' would be thrown as an uncaught exception.
    stream.on('error', () => undefined);
    const name = header.name;
    got.current = name;
    const fail = (msg: string) => {
      stream.resume();
      next(new AttenduxError('BACKUP_CORRUPT', msg, { details: { entry: name } }));
    };
    if (got.afterManifest) return fail(`entry ${name} follows manifest.json (manifest must be last)`);
    if (header.type !== 'file' || !safeEntryName(name)) return fail(`unexpected tar entry "${name}"`);
    const hash = createHash('sha256');
    let bytes = 0;
    const chunks: Buffer[] = [];
    const isManifest = name === MANIFEST_ENTRY;
    let out: WriteStream | undefined;
    const write = (chunk: Buffer, cb: (e?: Error | null) => void) => {
      hash.update(chunk);
      bytes += chunk.length;
      if (isManifest) {
        chunks.push(chunk);
        return cb(
          bytes > 64 * 1024 * 1024 ? new AttenduxError('BACKUP_CORRUPT', 'manifest.json is too large') : null,
        );
      }
      if (out) return out.write(chunk) ? cb() : out.once('drain', () => cb());
      cb();
    };
    const start = async () => {
      if (extractTo && !isManifest) {
        const p = join(extractTo, name);
        await mkdir(dirname(p), { recursive: true, mode: 0o700 });
        out = createWriteStream(p, { mode: 0o600, flags: 'wx' });
      }
      const sink = new Writable({
        write: (chunk: Buffer, _e, cb) => write(chunk, cb),
        final: (cb) => (out ? out.end(() => cb()) : cb()),
      });
      // A failed open or write of the extracted file (its directory removed after an abandoned read, disk
      // full) fails this entry instead of escaping as an uncaught error.
      out?.on('error', (err) => sink.destroy(err));
      // The entry stream is a streamx stream; pipeline handles it through its async iterator.
      await pipeline(stream, sink);
    };
    start().then(
      () => {
        got.entries.push({ name, bytes, sha256: hash.digest('hex'), path: out?.path as string | undefined });
        if (isManifest) {
          got.manifestText = Buffer.concat(chunks).toString('utf8');
          got.afterManifest = true;
        }
        next();
      },
      (err: unknown) => next(err as Error),
    );
  });
  return { ex, got };
}

/** A failure of the decrypting pipeline, as the error to report (the entry it falls in, when it is damage). */
async function readFailure(
  err: unknown,
  opts: ReadBackupOptions,
  got: Collected,
  locator: EntryLocator,
): Promise<AttenduxError> {
  if (err instanceof AttenduxError) return err;
  if (err instanceof AgeDecryptError) {
    if (/no identity matches/.test(err.message)) {
      // A damaged header stanza looks exactly like a foreign key; the sidecar's checksum tells them apart.
      const damaged = opts.sidecar
        ? // an unreadable file counts as damaged, which is what is reported
          (await hashFile(opts.file).catch(() => null))?.sha256 !== opts.sidecar.sha256
        : false;
      if (damaged)
        return new AttenduxError(
          'BACKUP_CORRUPT',
          `${opts.file}: the age header is damaged (no identity can open it and the file does not match its sidecar's SHA-256)`,
          { details: { entry: null } },
        );
      return new AttenduxError('BACKUP_BAD_IDENTITY', `${opts.file}: ${err.message}`, {
        hint: 'use the identity whose public key is in backup.recipients when the backup was made',
      });
    }
    const at = await locator.locate();
    return new AttenduxError('BACKUP_CORRUPT', `${opts.file}: ${err.message}${at.where}`, {
      details: { entry: at.entry, offset: err.offset },
    });
  }
  if ((err as { code?: string }).code === 'ENOENT')
    return new AttenduxError('BACKUP_CORRUPT', `${opts.file} is missing`, { cause: err });
  const where = got.current ? ` in entry ${got.current}` : got.afterManifest ? ' after the manifest' : '';
  return new AttenduxError(
    'BACKUP_CORRUPT',
    `${opts.file}: cannot read the archive${where}: ${(err as Error).message}`,
    { cause: err, details: { entry: got.current ?? null } },
  );
}

/** Every entry the manifest lists is there with its checksum, and nothing else is. */
function checkEntries(file: string, manifest: Manifest, data: OpenedEntry[]): void {
  const byName = new Map(data.map((e) => [e.name, e]));
  for (const want of manifest.entries) {
    const got = byName.get(want.name);
    if (!got)
      throw new AttenduxError(
        'BACKUP_CORRUPT',
        `${file}: entry ${want.name} listed in the manifest is missing`,
        {
          details: { entry: want.name },
        },
      );
    if (got.sha256 !== want.sha256 || got.bytes !== want.bytes)
      throw new AttenduxError('BACKUP_CORRUPT', `${file}: entry ${want.name} does not match its checksum`, {
        details: { entry: want.name },
      });
  }
  if (data.length !== manifest.entries.length) {
    const extra = data.find((e) => !manifest.entries.some((m) => m.name === e.name));
    throw new AttenduxError('BACKUP_CORRUPT', `${file}: entry ${extra?.name ?? '?'} is not in the manifest`);
  }
}

function checkAgainstSidecar(
  file: string,
  m: Manifest,
  s: Sidecar,
  r: { sha256: string; bytes: number },
): void {
  if (r.sha256 !== s.sha256 || r.bytes !== s.bytes)
    throw new AttenduxError('BACKUP_CORRUPT', `${file}: SHA-256 of the file does not match its sidecar`);
  for (const k of ['id', 'kind', 'parent', 'snapshot', 'schemaVersion', 'createdAt'] as const) {
    if ((m[k] ?? null) !== (s[k] ?? null))
      throw new AttenduxError(
        'BACKUP_CORRUPT',
        `${file}: manifest ${k} "${m[k]}" differs from the sidecar's "${s[k]}"`,
      );
  }
}

/**
 * Decrypt a backup in one streaming pass, checksum every entry and check it all against the manifest (and
 * the sidecar when given). Throws BACKUP_CORRUPT naming the first bad entry. With `extractTo`, entries are
 * written there; their content is trustworthy only after this function returned without error.
 */
export async function readBackup(opts: ReadBackupOptions): Promise<ReadBackupResult> {
  const outer = new HashTap();
  const locator = new EntryLocator();
  let plainBytes = 0;
  const { ex, got } = entryCollector(opts.extractTo);
  if (opts.extractTo) await mkdir(opts.extractTo, { recursive: true, mode: 0o700 });
  try {
    await pipeline(
      createReadStream(opts.file, { highWaterMark: 1 << 20 }),
      new ByteCounter(opts.onBytes),
      outer,
      new AgeDecryptStream(opts.identities, (b) => {
        plainBytes += b.length;
        locator.feed(b);
      }),
      ex,
    );
  } catch (err) {
    throw await readFailure(err, opts, got, locator);
  }
  void locator.locate();
  if (got.manifestText === undefined)
    throw new AttenduxError('BACKUP_CORRUPT', `${opts.file}: no manifest.json (the archive is incomplete)`);
  const manifest = parseManifest(got.manifestText);
  const data = got.entries.filter((e) => e.name !== MANIFEST_ENTRY);
  checkEntries(opts.file, manifest, data);
  const result: ReadBackupResult = {
    manifest,
    entries: data,
    sha256: outer.hash.digest('hex'),
    bytes: outer.bytes,
    tarBytes: plainBytes,
  };
  if (opts.sidecar) checkAgainstSidecar(opts.file, manifest, opts.sidecar, result);
  return result;
}

export interface OpenedBackup extends ReadBackupResult {
  sidecar: Sidecar;
  /** Private (0700) directory holding the decrypted entries; remove it with `cleanup()`. */
  dir: string;
  cleanup(): Promise<void>;
}

/**
 * For restore: decrypt a backup into a private temp dir and verify every entry against the manifest and the
 * sidecar. On any failure the directory is removed before the error is thrown.
 */
export async function openBackup(opts: {
  backupDir: string;
  id: string;
  identities: readonly string[];
  /** Parent of the private temp dir (default: the OS temp dir). */
  tempRoot?: string;
}): Promise<OpenedBackup> {
  const sidecar = await readSidecar(opts.backupDir, opts.id);
  const file = join(opts.backupDir, dataFileName(opts.id));
  // Not swallowed: a missing file is BACKUP_CORRUPT.
  await stat(file).catch(() => {
    throw new AttenduxError('BACKUP_CORRUPT', `${file} is missing (the sidecar exists)`);
  });
  const dir = await mkdtemp(join(opts.tempRoot ?? tmpdir(), `attendux-restore-${opts.id}-`));
  const cleanup = () => rm(dir, { recursive: true, force: true });
  try {
    const r = await readBackup({ file, identities: opts.identities, extractTo: dir, sidecar });
    return { ...r, sidecar, dir, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
