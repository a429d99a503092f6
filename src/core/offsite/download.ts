import { createWriteStream } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { AttenduxError } from '../../errors.js';
import type { Sidecar } from '../archive/format.js';
import { HashTap } from '../archive/bytes.js';
import type { OffsiteTarget } from './target.js';

/** Named like restore's own temp dirs, so that a killed run's downloads are swept the same way. */
export async function privateDir(what: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `attendux-restore-${process.pid}-${what}-`));
}

/** Download one data file, checking its size and SHA-256 against the sidecar as it streams. */
export async function download(
  target: OffsiteTarget,
  name: string,
  file: string,
  s: Sidecar,
  onBytes?: (n: number) => void,
): Promise<void> {
  const tap = new HashTap(onBytes);
  await pipeline(await target.read(name), tap, createWriteStream(file, { mode: 0o600, flags: 'wx' }));
  const sha = tap.hash.digest('hex');
  if (tap.bytes !== s.bytes || sha !== s.sha256)
    throw new AttenduxError(
      'BACKUP_CORRUPT',
      `the copy of ${s.id} on target ${target.name} does not match its sidecar (${tap.bytes} bytes, expected ${s.bytes}${tap.bytes === s.bytes ? '; SHA-256 differs' : ''}); nothing was restored`,
      {
        hint: `run \`attendux backup verify --target ${target.name} --all\`; restore an earlier point with --backup ID`,
      },
    );
}
