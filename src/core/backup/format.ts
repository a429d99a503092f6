import type { BackupAudit } from '../audit/service.js';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, normalize } from 'node:path';
import { Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AttenduxError } from '../../errors.js';
import { parseIdentityFile } from '../../crypto/age.js';
import { AgeDecryptError, AgeDecryptStream } from './age-stream.js';

/**
 * The backup format, version 1. One backup is two files in the backup dir:
 *
 *   <id>.tar.age   age-encrypted (X25519, to every configured recipient) POSIX tar of
 *                    data/<table>.copy.gz   (full) COPY text format of the table, gzip; a big table is
 *                                           data/<table>.<n>.copy.gz, n = 0.. (block ranges, see tables[].entries)
 *                    data/changes.copy.gz   (incremental) COPY text of change_log rows, see CHANGE_COLUMNS
 *                    config/<name>          (config) the config file, the secrets file, service files
 *                    manifest.json          always the LAST entry (its checksums cover the entries before it)
 *   <id>.json      the sidecar: unencrypted, no personal data; lets list/status/prune work without the key
 *
 * By hand: `age -d -i KEY <id>.tar.age | tar -x` gives manifest.json and the data;
 * `zcat data/tenants.copy.gz | psql -c '\copy tenants from stdin'` loads a table.
 */
export const FORMAT = 'attendux-backup/1';
export const MANIFEST_ENTRY = 'manifest.json';
export const CHANGES_ENTRY = 'data/changes.copy.gz';
/** Columns of data/changes.copy.gz, in order: change_log's columns. `row` is the new row as jsonb (I/U). */
export const CHANGE_COLUMNS = ['id', 'txid', 'at', 'table_name', 'op', 'tenant_id', 'pk', 'row'] as const;

export type BackupKind = 'full' | 'incremental' | 'config';
export const KINDS: readonly BackupKind[] = ['full', 'incremental', 'config'];

export const ID_PATTERN = /^(full|incremental|config)-\d{8}T\d{9}Z$/;

export function newBackupId(kind: BackupKind, at = new Date()): string {
  const s = at.toISOString(); // 2026-11-23T15:33:00.123Z
  return `${kind}-${s.slice(0, 10).replace(/-/g, '')}T${s.slice(11, 23).replace(/[:.]/g, '')}Z`;
}

export const dataFileName = (id: string) => `${id}.tar.age`;
export const sidecarFileName = (id: string) => `${id}.json`;

export interface ManifestEntry {
  /** Path inside the tar. */
  name: string;
  /** Bytes of the entry inside the tar (compressed data as stored). */
  bytes: number;
  sha256: string;
  /**
   * Config backups: the absolute path the file was read from (additive; absent in older backups).
   * `restore --config-only` writes a service file only back to this path, and only when it is on the
   * allow-list (src/core/restore/config.ts); the manifest is signed, so the path is what `backup config`
   * recorded.
   */
  path?: string;
}

export interface ManifestTable {
  name: string;
  /** Rows in the full backup's snapshot. */
  rows: number;
  /**
   * The table's tar entries, COPY text gzip each: one (data/<table>.copy.gz), or for a big table several
   * block ranges (data/<table>.<n>.copy.gz) that together hold every row once, loadable in any order or
   * in parallel.
   */
  entries: string[];
  /** Primary-key columns, in key order. */
  primaryKey: string[];
}

export interface Manifest {
  format: typeof FORMAT;
  id: string;
  kind: BackupKind;
  /** The backup this one applies on top of (incrementals); null for full and config backups. */
  parent: string | null;
  /** The full backup at the root of this chain (itself for a full); null for config backups. */
  chainRoot: string | null;
  createdAt: string;
  attenduxVersion: string;
  /** Newest applied migration; null for config backups. */
  schemaVersion: string | null;
  postgresVersion: string | null;
  /** pg_current_snapshot() of the backup's repeatable-read transaction, as text (xmin:xmax:xip,...). */
  snapshot: string | null;
  /** The parent's snapshot (incrementals): the changes are exactly those not visible in it. */
  parentSnapshot: string | null;
  /** backup_meta.database_id of the database backed up. */
  databaseId: string | null;
  /** Full: tables in foreign-key order (referenced tables first). */
  tables: ManifestTable[];
  /** Incremental: number of change rows per table, and the change_log id range. */
  changes: {
    count: number;
    byTable: Record<string, number>;
    firstId: number | null;
    lastId: number | null;
  } | null;
  /** Config: SHA-256 over the config entries' names and checksums (what --if-changed compares). */
  contentHash: string | null;
  /** Database backups: the audit log's verification and signed checkpoints at backup time (issue 13). */
  audit?: BackupAudit;
  /** Every entry of the tar except manifest.json itself. */
  entries: ManifestEntry[];
}

export interface Sidecar {
  format: typeof FORMAT;
  id: string;
  kind: BackupKind;
  parent: string | null;
  chainRoot: string | null;
  createdAt: string;
  finishedAt: string;
  durationMs: number;
  file: string;
  /** Size and SHA-256 of the encrypted file. */
  bytes: number;
  sha256: string;
  /** Size of the tar inside (before encryption). */
  tarBytes: number;
  snapshot: string | null;
  schemaVersion: string | null;
  databaseId: string | null;
  attenduxVersion: string;
  /** Config backups only. */
  contentHash: string | null;
  /** Total rows (full) or changes (incremental): numbers only, no personal data. */
  rows: number;
  recipients: number;
  outcome: 'success';
  /** Set when `backup repair` rebuilt this sidecar from the encrypted file (finishedAt is then its mtime). */
  repairedAt?: string;
  /** Database backups: the audit log's verification and signed checkpoints at backup time (issue 13). */
  audit?: BackupAudit;
}

function isObj(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

export function parseSidecar(text: string, source: string): Sidecar {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new AttenduxError('BACKUP_CORRUPT', `${source}: sidecar is not valid JSON`);
  }
  if (
    !isObj(v) ||
    v.format !== FORMAT ||
    typeof v.id !== 'string' ||
    !ID_PATTERN.test(v.id) ||
    !KINDS.includes(v.kind as BackupKind) ||
    typeof v.sha256 !== 'string' ||
    typeof v.bytes !== 'number' ||
    typeof v.createdAt !== 'string'
  ) {
    throw new AttenduxError('BACKUP_CORRUPT', `${source}: not an attendux backup sidecar (${FORMAT})`);
  }
  return v as unknown as Sidecar;
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

export function parseManifest(text: string): Manifest {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new AttenduxError('BACKUP_CORRUPT', 'manifest.json is not valid JSON');
  }
  if (!isObj(v) || v.format !== FORMAT || typeof v.id !== 'string' || !Array.isArray(v.entries))
    throw new AttenduxError('BACKUP_CORRUPT', `manifest.json is not an ${FORMAT} manifest`);
  return v as unknown as Manifest;
}

// ---------------------------------------------------------------------------------------------------------
// Identities

/**
 * Where the passphrase of a passphrase-protected identity file (`age -p`) comes from. The CLI sets it (from
 * --identity-passphrase-file, $ATTENDUX_BACKUP_IDENTITY_PASSPHRASE_FILE, or a prompt on a terminal); core code
 * never prompts. Without one, such a file is refused with the reason.
 */
export type PassphraseSource = (identityFile: string) => Promise<string | null>;
let passphraseSource: PassphraseSource | null = null;

export function setIdentityPassphraseSource(source: PassphraseSource | null): void {
  passphraseSource = source;
}

/** The file is an age-encrypted file (binary or armored): an identity file protected with `age -p`. */
export function isEncryptedIdentity(bytes: Buffer): boolean {
  const head = bytes.subarray(0, 64).toString('latin1');
  return head.startsWith('age-encryption.org/v1\n') || head.startsWith('-----BEGIN AGE ENCRYPTED FILE-----');
}

async function decryptIdentityFile(path: string, bytes: Buffer): Promise<string> {
  const passphrase = passphraseSource ? await passphraseSource(path) : null;
  if (passphrase === null)
    throw new AttenduxError(
      'BACKUP_BAD_IDENTITY',
      `${path} is a passphrase-protected identity (age -p) and no passphrase was given`,
      {
        hint: 'run on a terminal to be asked for it, or pass --identity-passphrase-file FILE (or set $ATTENDUX_BACKUP_IDENTITY_PASSPHRASE_FILE)',
      },
    );
  const age = await import('age-encryption');
  const d = new age.Decrypter();
  d.addPassphrase(passphrase);
  const text = bytes.subarray(0, 64).toString('latin1').startsWith('-----BEGIN')
    ? age.armor.decode(bytes.toString('latin1'))
    : new Uint8Array(bytes);
  try {
    return await d.decrypt(text, 'text');
  } catch (err) {
    throw new AttenduxError(
      'BACKUP_BAD_IDENTITY',
      `cannot open the passphrase-protected identity ${path}: ${/passphrase|scrypt|no identity matched|header/i.test((err as Error).message) ? 'wrong passphrase' : (err as Error).message}`,
      { hint: 'check the passphrase (the one given to `age -p` when the identity was protected)' },
    );
  }
}

/**
 * Read an age identity file (age-keygen format, comments allowed; one or more AGE-SECRET-KEY-1 lines), or
 * one protected with a passphrase (`age-keygen | age -p > key.age`, binary or armored).
 */
export async function readIdentityFile(path: string): Promise<string[]> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new AttenduxError(
      'BACKUP_BAD_IDENTITY',
      `cannot read identity file ${path}: ${(err as Error).message}`,
      {
        hint: 'pass --identity FILE (the age key written by `attendux init`) or set $ATTENDUX_BACKUP_IDENTITY',
      },
    );
  }
  const text = isEncryptedIdentity(bytes) ? await decryptIdentityFile(path, bytes) : bytes.toString('utf8');
  const ids = parseIdentityFile(text);
  if (!ids.length)
    throw new AttenduxError('BACKUP_BAD_IDENTITY', `${path} holds no AGE-SECRET-KEY-1... line`, {
      hint: 'an age identity file as written by age-keygen or `attendux init` (or one protected with age -p)',
    });
  return ids;
}

// ---------------------------------------------------------------------------------------------------------
// Reading a backup

/** Passes bytes through while hashing and counting them (the writer and the readers share it). */
export class HashTap extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

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

/**
 * Follows tar headers in the plaintext as it is decrypted, so that damage found by the decryption can be
 * attributed to the entry it falls in even though the extractor downstream lags behind.
 */
export class TarWalker {
  private pos = 0;
  /** Offset where the current region (header or data) ends. */
  private regionEnd = 0;
  private inHeader = true;
  private header = Buffer.alloc(0);
  current: string | null = null;
  last: string | null = null;

  feed(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.inHeader) {
        const need = 512 - this.header.length;
        const take = Math.min(need, chunk.length - off);
        this.header = Buffer.concat([this.header, chunk.subarray(off, off + take)]);
        off += take;
        this.pos += take;
        if (this.header.length === 512) {
          const name = this.header.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
          const size = parseInt(
            this.header.subarray(124, 136).toString('utf8').replace(/\0.*$/s, '').trim() || '0',
            8,
          );
          this.header = Buffer.alloc(0);
          if (!name) continue; // end-of-archive blocks
          this.current = name;
          this.regionEnd = this.pos + Math.ceil(size / 512) * 512;
          this.inHeader = this.regionEnd === this.pos;
          if (this.inHeader) this.last = name;
        }
      } else {
        const take = Math.min(this.regionEnd - this.pos, chunk.length - off);
        off += take;
        this.pos += take;
        if (this.pos === this.regionEnd) {
          this.inHeader = true;
          this.last = this.current;
        }
      }
    }
  }

  /** Where the next byte falls, in words. */
  describe(): string {
    if (!this.inHeader && this.current) return ` in entry ${this.current}`;
    return this.last ? ` after entry ${this.last}` : ' at the start of the archive';
  }

  entry(): string | null {
    return !this.inHeader ? this.current : null;
  }
}

function safeEntryName(name: string): boolean {
  if (name.startsWith('/') || name.includes('\\')) return false;
  const n = normalize(name);
  return !n.startsWith('..') && n === name && !name.includes('\0');
}

/**
 * Decrypt a backup in one streaming pass, checksum every entry and check it all against the manifest (and
 * the sidecar when given). Throws BACKUP_CORRUPT naming the first bad entry. With `extractTo`, entries are
 * written there; their content is trustworthy only after this function returned without error.
 */
export async function readBackup(opts: ReadBackupOptions): Promise<ReadBackupResult> {
  const { extract } = await import('tar-stream');
  const outer = new HashTap();
  let seen = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _e, cb) {
      seen += chunk.length;
      opts.onBytes?.(seen);
      cb(null, chunk);
    },
  });
  const entries: OpenedEntry[] = [];
  let plainBytes = 0;
  let manifestText: string | undefined;
  let current: string | undefined;
  let afterManifest = false;
  const walker = new TarWalker();
  const ex = extract();
  ex.on('entry', (header, stream, next) => {
    // When the decryption fails later, the pipeline destroys the extractor with that error, which destroys
    // the entry streams again, long after their own pipeline stopped listening: without a listener of its
    // own, that 'error' would be thrown as an uncaught exception.
    stream.on('error', () => undefined);
    const name = header.name;
    current = name;
    const fail = (msg: string) => {
      stream.resume();
      next(new AttenduxError('BACKUP_CORRUPT', msg, { details: { entry: name } }));
    };
    if (afterManifest) return fail(`entry ${name} follows manifest.json (manifest must be last)`);
    if (header.type !== 'file' || !safeEntryName(name)) return fail(`unexpected tar entry "${name}"`);
    const hash = createHash('sha256');
    let bytes = 0;
    const chunks: Buffer[] = [];
    const isManifest = name === MANIFEST_ENTRY;
    let out: import('node:fs').WriteStream | undefined;
    const finish = (err?: Error | null) => {
      if (err) return next(err);
      entries.push({ name, bytes, sha256: hash.digest('hex'), path: out?.path as string | undefined });
      if (isManifest) {
        manifestText = Buffer.concat(chunks).toString('utf8');
        afterManifest = true;
      }
      next();
    };
    const sinkWrite = (chunk: Buffer, cb: (e?: Error | null) => void) => {
      hash.update(chunk);
      bytes += chunk.length;
      if (isManifest) {
        chunks.push(chunk);
        if (bytes > 64 * 1024 * 1024)
          return cb(new AttenduxError('BACKUP_CORRUPT', 'manifest.json is too large'));
        return cb();
      }
      if (out) return out.write(chunk) ? cb() : out.once('drain', () => cb());
      cb();
    };
    const start = async () => {
      if (opts.extractTo && !isManifest) {
        const p = join(opts.extractTo, name);
        await mkdir(dirname(p), { recursive: true, mode: 0o700 });
        out = createWriteStream(p, { mode: 0o600, flags: 'wx' });
      }
      const sink = new Writable({
        write: (chunk: Buffer, _e, cb) => sinkWrite(chunk, cb),
        final: (cb) => (out ? out.end(() => cb()) : cb()),
      });
      // The entry stream is a streamx stream; pipeline handles it through its async iterator.
      await pipeline(stream, sink);
    };
    start().then(
      () => finish(),
      (err: unknown) => finish(err as Error),
    );
  });

  if (opts.extractTo) await mkdir(opts.extractTo, { recursive: true, mode: 0o700 });
  try {
    await pipeline(
      createReadStream(opts.file, { highWaterMark: 1 << 20 }),
      counter,
      outer,
      new AgeDecryptStream(opts.identities, (b) => {
        plainBytes += b.length;
        walker.feed(b);
      }),
      ex,
    );
  } catch (err) {
    if (err instanceof AttenduxError) throw err;
    const where = current ? ` in entry ${current}` : afterManifest ? ' after the manifest' : '';
    if (err instanceof AgeDecryptError) {
      if (/no identity matches/.test(err.message)) {
        // A damaged header stanza looks exactly like a foreign key; the sidecar's checksum tells them apart.
        const damaged = opts.sidecar
          ? (await hashFile(opts.file).catch(() => null))?.sha256 !== opts.sidecar.sha256
          : false;
        if (damaged)
          throw new AttenduxError(
            'BACKUP_CORRUPT',
            `${opts.file}: the age header is damaged (no identity can open it and the file does not match its sidecar's SHA-256)`,
            { details: { entry: null } },
          );
        throw new AttenduxError('BACKUP_BAD_IDENTITY', `${opts.file}: ${err.message}`, {
          hint: 'use the identity whose public key is in backup.recipients when the backup was made',
        });
      }
      throw new AttenduxError('BACKUP_CORRUPT', `${opts.file}: ${err.message}${walker.describe()}`, {
        details: { entry: walker.entry(), offset: err.offset },
      });
    }
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT')
      throw new AttenduxError('BACKUP_CORRUPT', `${opts.file} is missing`, { cause: err });
    throw new AttenduxError(
      'BACKUP_CORRUPT',
      `${opts.file}: cannot read the archive${where}: ${(err as Error).message}`,
      {
        cause: err,
        details: { entry: current ?? null },
      },
    );
  }
  if (manifestText === undefined)
    throw new AttenduxError('BACKUP_CORRUPT', `${opts.file}: no manifest.json (the archive is incomplete)`);
  const manifest = parseManifest(manifestText);
  const data = entries.filter((e) => e.name !== MANIFEST_ENTRY);
  const byName = new Map(data.map((e) => [e.name, e]));
  for (const want of manifest.entries) {
    const got = byName.get(want.name);
    if (!got)
      throw new AttenduxError(
        'BACKUP_CORRUPT',
        `${opts.file}: entry ${want.name} listed in the manifest is missing`,
        {
          details: { entry: want.name },
        },
      );
    if (got.sha256 !== want.sha256 || got.bytes !== want.bytes)
      throw new AttenduxError(
        'BACKUP_CORRUPT',
        `${opts.file}: entry ${want.name} does not match its checksum`,
        {
          details: { entry: want.name },
        },
      );
  }
  if (data.length !== manifest.entries.length) {
    const extra = data.find((e) => !manifest.entries.some((m) => m.name === e.name));
    throw new AttenduxError(
      'BACKUP_CORRUPT',
      `${opts.file}: entry ${extra?.name ?? '?'} is not in the manifest`,
    );
  }
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

/** SHA-256 and size of a file, streamed. */
/** SHA-256 and size of a stream, read to the end; onBytes sees the running count. */
export async function hashStream(
  source: NodeJS.ReadableStream,
  onBytes?: (n: number) => void,
): Promise<{ sha256: string; bytes: number }> {
  const tap = new HashTap();
  await pipeline(
    source,
    tap,
    new Writable({
      write(_c: Buffer, _e, cb) {
        onBytes?.(tap.bytes);
        cb();
      },
    }),
  );
  return { sha256: tap.hash.digest('hex'), bytes: tap.bytes };
}

export async function hashFile(
  path: string,
  onBytes?: (n: number) => void,
): Promise<{ sha256: string; bytes: number }> {
  return hashStream(createReadStream(path, { highWaterMark: 1 << 20 }), onBytes);
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
