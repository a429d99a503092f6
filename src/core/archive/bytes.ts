import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * Passes bytes through while counting them; `onBytes` sees the running total (progress lines), or with
 * `{ delta: true }` each chunk's size. The one byte-counting stream of backup, restore and offsite.
 */
export class ByteCounter extends Transform {
  bytes = 0;
  private readonly onBytes: ((n: number) => void) | undefined;
  private readonly delta: boolean;
  constructor(onBytes?: (n: number) => void, delta = false) {
    super();
    this.onBytes = onBytes;
    this.delta = delta;
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    this.onBytes?.(this.delta ? chunk.length : this.bytes);
    cb(null, chunk);
  }
}

/** A ByteCounter that also hashes (SHA-256) what passes: the writer and the readers share it. */
export class HashTap extends ByteCounter {
  readonly hash = createHash('sha256');
  override _transform(chunk: Buffer, e: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    super._transform(chunk, e, cb);
  }
}

/** SHA-256 and size of a stream, read to the end; onBytes sees the running count. */
export async function hashStream(
  source: NodeJS.ReadableStream,
  onBytes?: (n: number) => void,
): Promise<{ sha256: string; bytes: number }> {
  const tap = new HashTap(onBytes);
  await pipeline(source, tap, new Writable({ write: (_c: Buffer, _e, cb) => cb() }));
  return { sha256: tap.hash.digest('hex'), bytes: tap.bytes };
}

/** SHA-256 and size of a file, streamed. */
export async function hashFile(
  path: string,
  onBytes?: (n: number) => void,
): Promise<{ sha256: string; bytes: number }> {
  return hashStream(createReadStream(path, { highWaterMark: 1 << 20 }), onBytes);
}
