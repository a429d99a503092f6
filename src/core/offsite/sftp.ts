import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import type { SFTPWrapper } from 'ssh2';
import type SftpSession from 'ssh2-sftp-client';
import { AttenduxError } from '../../errors.js';
import type { SftpTarget } from './schema.js';
import {
  isTempName,
  tempName,
  type OffsiteTarget,
  type PutOptions,
  type RemoteFile,
  type TargetCredentials,
} from './target.js';

/** OpenSSH's fingerprint of a public key blob: `SHA256:` + unpadded base64 of its SHA-256. */
export function sshFingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

const CHUNK = 64 * 1024;
const WINDOW = 32;

/**
 * Reads a remote file with up to WINDOW requests in flight and hands the bytes on in order: SFTP answers
 * each read after a round trip, so one request at a time (ssh2's own read stream) runs at a fraction of
 * the link's speed. Memory is bounded by the window (2 MiB), and reading pauses while the consumer does.
 */
class ParallelReader extends Readable {
  private handle: Buffer | undefined;
  private next = 0;
  private pushed = 0;
  private inflight = 0;
  private paused = false;
  private readonly pieces = new Map<number, Buffer>();
  private failed = false;
  private readonly sftp: SFTPWrapper;
  private readonly path: string;
  private readonly size: number;

  constructor(sftp: SFTPWrapper, path: string, size: number) {
    super({ highWaterMark: CHUNK * WINDOW });
    this.sftp = sftp;
    this.path = path;
    this.size = size;
  }

  override _construct(cb: (err?: Error | null) => void): void {
    this.sftp.open(this.path, 'r', (err, handle) => {
      if (err) return cb(err);
      this.handle = handle;
      cb();
    });
  }

  override _read(): void {
    this.paused = false;
    if (this.size === 0) return this.finish();
    this.pump();
  }

  private pump(): void {
    while (
      !this.paused &&
      !this.failed &&
      this.inflight < WINDOW &&
      this.next < this.size &&
      this.next - this.pushed < CHUNK * WINDOW
    ) {
      const len = Math.min(CHUNK, this.size - this.next);
      this.issue(this.next, len);
      this.next += len;
    }
  }

  private issue(pos: number, len: number): void {
    this.inflight++;
    this.sftp.read(this.handle!, Buffer.allocUnsafe(len), 0, len, pos, (err, n, buf) => {
      this.inflight--;
      if (this.failed) return;
      if (err || n === 0) {
        this.failed = true;
        return this.destroy(
          err ??
            new AttenduxError(
              'OFFSITE_FAILED',
              `${this.path}: file ended at ${pos} bytes, expected ${this.size}`,
            ),
        );
      }
      this.pieces.set(pos, buf.subarray(0, n));
      // A short read: ask for the rest of this piece.
      if (n < len) this.issue(pos + n, len - n);
      this.flush();
      this.pump();
    });
  }

  private flush(): void {
    for (let b = this.pieces.get(this.pushed); b; b = this.pieces.get(this.pushed)) {
      this.pieces.delete(this.pushed);
      this.pushed += b.length;
      if (!this.push(b)) this.paused = true;
    }
    if (this.pushed >= this.size) this.finish();
  }

  private finish(): void {
    const h = this.handle;
    this.handle = undefined;
    if (h) this.sftp.close(h, () => undefined);
    this.push(null);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.failed = true;
    const h = this.handle;
    this.handle = undefined;
    if (h) this.sftp.close(h, () => cb(err));
    else cb(err);
  }
}

/** The target's private key, refused when others can read it; undefined when none is configured. */
async function readPrivateKey(t: SftpTarget): Promise<Buffer | undefined> {
  if (!t.privateKeyFile) return undefined;
  try {
    const st = await stat(t.privateKeyFile);
    if ((st.mode & 0o077) !== 0)
      throw new AttenduxError(
        'SECRETS_INSECURE',
        `target ${t.name}: key file ${t.privateKeyFile} is readable by others (mode ${(st.mode & 0o777).toString(8)})`,
        { hint: `run: chmod 600 ${t.privateKeyFile}` },
      );
    return await readFile(t.privateKeyFile);
  } catch (err) {
    if (err instanceof AttenduxError) throw err;
    throw new AttenduxError(
      'OFFSITE_FAILED',
      `target ${t.name}: cannot read key file ${t.privateKeyFile}: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/** Connect, checking the host key against the configured fingerprint before any credential is sent. */
async function connectSftp(
  client: SftpSession,
  t: SftpTarget,
  creds: TargetCredentials,
  privateKey: Buffer | undefined,
): Promise<void> {
  const want = t.hostKeyFingerprint.replace(/=$/, '');
  let seen: string | undefined;
  try {
    await client.connect({
      host: t.host,
      port: t.port,
      username: t.user,
      ...(privateKey ? { privateKey, passphrase: creds.passphrase } : {}),
      ...(creds.password ? { password: creds.password } : {}),
      readyTimeout: t.connectTimeoutSeconds * 1000,
      // Fail fast on a dead server instead of waiting for TCP to give up.
      keepaliveInterval: 10_000,
      keepaliveCountMax: 3,
      hostVerifier: (key: Buffer) => {
        seen = sshFingerprint(key);
        return seen === want;
      },
    });
  } catch (err) {
    await client.end().catch(() => undefined); // closing after a failed connect: its error is handled below
    if (seen !== undefined && seen !== want)
      throw new AttenduxError(
        'OFFSITE_HOST_KEY',
        `target ${t.name}: the host key of ${t.host}:${t.port} is ${seen}, not the configured ${t.hostKeyFingerprint}; refusing to connect`,
        {
          hint: 'if the server was rebuilt, check its key out of band (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on it) and update hostKeyFingerprint',
        },
      );
    throw new AttenduxError(
      'OFFSITE_FAILED',
      `target ${t.name}: cannot connect to ${t.user}@${t.host}:${t.port}: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/**
 * Writes under `root` through a hidden temporary name, then renamed into place; `root` is created on first
 * use.
 */
function tempUploader(client: SftpSession, root: string) {
  const remote = (name: string) => posix.join(root, name);
  let madeRoot = false;
  const ensureRoot = async () => {
    if (madeRoot) return;
    if (!(await client.exists(root))) await client.mkdir(root, true);
    madeRoot = true;
  };
  let posixRenameWorks = true;
  const moveIntoPlace = async (tmp: string, name: string) => {
    if (posixRenameWorks) {
      try {
        await client.posixRename(tmp, remote(name));
        return;
      } catch (err) {
        // Servers without the OpenSSH extension: plain SFTP rename refuses an existing target, so remove first.
        if (!/posix-rename|not supported|Unsupported/i.test((err as Error).message)) throw err;
        posixRenameWorks = false;
      }
    }
    await client.delete(remote(name), true).catch(() => undefined); // no previous file to replace
    await client.rename(tmp, remote(name));
  };
  /** Upload to a temporary name with `upload`, then move it into place; the temp file is removed on failure. */
  const put = async (name: string, upload: (tmp: string) => Promise<unknown>) => {
    await ensureRoot();
    const tmp = remote(tempName(name));
    try {
      await upload(tmp);
      await moveIntoPlace(tmp, name);
    } catch (err) {
      // removing the temp file: its error is rethrown
      await client.delete(tmp, true).catch(() => undefined);
      throw err;
    }
  };
  return { remote, put };
}

/**
 * An SFTP server (ssh2-sftp-client over ssh2). The host key must match the configured fingerprint before
 * any credential is sent: there is no trust on first use. Uploads go to a hidden temporary name and are
 * renamed (posix-rename@openssh.com where the server has it, so the final name appears atomically).
 */
export async function openSftpTarget(t: SftpTarget, creds: TargetCredentials): Promise<OffsiteTarget> {
  const { default: SftpClient } = await import('ssh2-sftp-client');
  // The library's default listeners print to stdout/stderr; the failing operation reports the error itself.
  const quiet = () => undefined;
  const client = new SftpClient(`attendux-${t.name}`, { error: quiet, end: quiet, close: quiet });
  const privateKey = await readPrivateKey(t);
  if (!privateKey && !creds.password)
    throw new AttenduxError('OFFSITE_FAILED', `target ${t.name}: no SFTP credentials`, {
      hint: `set privateKeyFile in the target, or a password in the secrets file (backupTargets.${t.name}.password)`,
    });
  await connectSftp(client, t, creds, privateKey);
  const root = t.path;
  const { remote, put } = tempUploader(client, root);
  const target: OffsiteTarget = {
    name: t.name,
    type: 'sftp',
    url: `sftp://${t.user}@${t.host}:${t.port}${root.startsWith('/') ? '' : '/'}${root}`,
    async list(): Promise<RemoteFile[]> {
      if (!(await client.exists(root))) return [];
      return (await client.list(root))
        .filter((f) => f.type === '-')
        .map((f) => ({ name: f.name, bytes: f.size }));
    },
    async putFile(localPath: string, name: string, opts: PutOptions): Promise<void> {
      await put(name, (tmp) =>
        client.fastPut(localPath, tmp, {
          mode: 0o600,
          step: (done: number) => opts.onBytes?.(done),
        }),
      );
    },
    async putBytes(name: string, data: Buffer): Promise<void> {
      await put(name, (tmp) => client.put(data, tmp, { writeStreamOptions: { mode: 0o600 } }));
    },
    async read(name: string): Promise<Readable> {
      let size: number;
      try {
        size = (await client.stat(remote(name))).size;
      } catch {
        throw new AttenduxError('NOT_FOUND', `target ${t.name}: ${name} does not exist`);
      }
      const sftp = (client as unknown as { sftp: SFTPWrapper }).sftp;
      return new ParallelReader(sftp, remote(name), size);
    },
    async remove(name: string): Promise<void> {
      await client.delete(remote(name), true);
    },
    async leftovers(): Promise<string[]> {
      return (await target.list()).map((f: RemoteFile) => f.name).filter(isTempName);
    },
    async close(): Promise<void> {
      await client.end().catch(() => undefined); // closing the session: nothing is pending on it
    },
  };
  return target;
}
