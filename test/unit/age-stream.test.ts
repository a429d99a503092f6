import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createReadStream, createWriteStream } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgeDecryptStream, AgeEncryptStream } from '../../src/crypto/age-stream.js';
import { ageKeygen } from '../helpers/backup.js';

let dir: string;
let keyFile: string;
let identity: string;
let recipient: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'attendux-age-'));
  keyFile = join(dir, 'key.txt');
  ({ identity, recipient } = ageKeygen(keyFile));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

// Sizes around the 64 KiB chunk boundary are where STREAM implementations go wrong.
const SIZES = [0, 1, 65_535, 65_536, 65_537, 131_072, 300_001];

describe('age streams', () => {
  it('writes files that Debian’s age CLI decrypts, at every size around the chunk boundary', async () => {
    for (const size of SIZES) {
      const plain = randomBytes(size);
      const enc = join(dir, `ours-${size}.age`);
      await pipeline(
        Readable.from([plain]),
        await AgeEncryptStream.create([recipient]),
        createWriteStream(enc),
      );
      const out = execFileSync('age', ['-d', '-i', keyFile, enc]);
      expect(out.equals(plain), `size ${size}`).toBe(true);
    }
  });

  it('reads files that Debian’s age CLI encrypted, at every size around the chunk boundary', async () => {
    for (const size of SIZES) {
      const plain = randomBytes(size);
      const src = join(dir, `plain-${size}`);
      const enc = join(dir, `cli-${size}.age`);
      await writeFile(src, plain);
      execFileSync('age', ['-e', '-r', recipient, '-o', enc, src]);
      const chunks: Buffer[] = [];
      await pipeline(createReadStream(enc), new AgeDecryptStream([identity]), async function* (s) {
        for await (const c of s) chunks.push(c as Buffer);
      });
      expect(Buffer.concat(chunks).equals(plain), `size ${size}`).toBe(true);
    }
  });

  it('encrypts to every recipient so that each identity alone opens the file', async () => {
    const second = ageKeygen(join(dir, 'escrow.txt'));
    const enc = join(dir, 'two.age');
    await pipeline(
      Readable.from([Buffer.from('hello')]),
      await AgeEncryptStream.create([recipient, second.recipient]),
      createWriteStream(enc),
    );
    expect(execFileSync('age', ['-d', '-i', keyFile, enc]).toString()).toBe('hello');
    expect(execFileSync('age', ['-d', '-i', join(dir, 'escrow.txt'), enc]).toString()).toBe('hello');
  });

  it('rejects a file with data appended after the final chunk', async () => {
    const enc = join(dir, 'ext.age');
    await pipeline(
      Readable.from([randomBytes(70_000)]),
      await AgeEncryptStream.create([recipient]),
      createWriteStream(enc),
    );
    await writeFile(enc, Buffer.concat([await readFile(enc), randomBytes(40)]));
    await expect(
      pipeline(createReadStream(enc), new AgeDecryptStream([identity]), async function* (s) {
        for await (const _ of s) void _;
      }),
    ).rejects.toThrow(/authentication failed|truncated/);
  });
});
