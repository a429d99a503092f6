import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Readable, Transform } from 'node:stream';

/**
 * Encryption of staged files. A full backup stages each table's compressed COPY on disk before it goes into
 * the tar (tar needs every entry's size first); those bytes are the plaintext of the backup and must never
 * sit on the backup disk. Each run encrypts them with a random key that lives only in this process's memory
 * (AES-256-CTR, a fresh IV per file: the length is kept, so the tar entry's size is the file's size): a run
 * that is killed leaves only ciphertext whose key is gone. Integrity is not this layer's job: every entry is
 * hashed as it is read back into the archive, and the archive is what is verified.
 */
export class StagingCipher {
  private readonly key = randomBytes(32);
  private readonly ivs = new Map<string, Buffer>();

  /** A transform to pipe a staged file's plaintext through on its way to `path`. */
  encryptTo(path: string): Transform {
    const iv = randomBytes(16);
    this.ivs.set(path, iv);
    return createCipheriv('aes-256-ctr', this.key, iv);
  }

  /** The plaintext of a staged file, streamed. */
  read(path: string): Readable {
    const iv = this.ivs.get(path);
    // A programming assertion: only paths this staging area wrote are read back.
    if (!iv) throw new Error(`no staging key for ${path}`);
    return createReadStream(path, { highWaterMark: 256 * 1024 }).pipe(
      createDecipheriv('aes-256-ctr', this.key, iv),
    );
  }
}
