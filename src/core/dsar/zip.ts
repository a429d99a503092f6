import { constants, createWriteStream } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createRequire } from 'node:module';
import type { Archiver, ZipOptions } from 'archiver';
import type { Queryable } from '../../db/pool.js';
import { ageEncrypted, type AgeHandover } from '../../crypto/age.js';
import { appliedSchemaVersion, type Subject } from '../../db/queries/dsar.js';
import { VERSION } from '../../version.js';
import { fsyncDir } from '../../lib/fs.js';
import type { OvertimeRule } from '../reports/payroll.js';
import { appendSubjectFiles, appendText, type FileDigest } from './export.js';
import { exportReadme } from './readme-text.js';

// archiver 7 is CommonJS exporting a factory; @types/archiver 8 describes the class API of archiver 8.
const archiver = createRequire(import.meta.url)('archiver') as (format: 'zip', o: ZipOptions) => Archiver;

export interface ExportManifest {
  requestId: string;
  tenant: { id: string; slug: string };
  subject: { employeeId: string; employeeNumber: string | null; fullName: string };
  generatedAt: string;
  attendux: string;
  schemaVersion: string | null;
  files: FileDigest[];
}

export interface ExportOptions {
  requestId: string;
  tenantSlug: string;
  overtime: OvertimeRule;
  holdYears: number;
  generatedAt: Date;
  pageSize?: number;
}

/** Encrypt for hand-over: to a passphrase (age scrypt) or an age recipient. */
export type ExportEncryption = AgeHandover;

/**
 * Write the subject's export zip to `out` (a stream): data files, README.txt, then manifest.json with every
 * other file's SHA-256 (archiver consumes entries in order, so the digests are complete when it is read).
 */
export async function writeExport(
  q: Queryable,
  subject: Subject,
  out: Writable,
  opts: ExportOptions & { encryption?: ExportEncryption },
): Promise<ExportManifest> {
  const archive = archiver('zip', { zlib: { level: 6 } });
  const schemaVersion = await appliedSchemaVersion(q);
  const files = appendSubjectFiles(archive, q, subject, { overtime: opts.overtime, pageSize: opts.pageSize });
  const readme = appendText(archive, 'README.txt', () => Promise.resolve(exportReadme(subject, opts)));
  let manifest: ExportManifest | undefined;
  void appendText(archive, 'manifest.json', async () => {
    manifest = {
      requestId: opts.requestId,
      tenant: { id: subject.tenantId, slug: opts.tenantSlug },
      subject: {
        employeeId: subject.employeeId,
        employeeNumber: subject.employeeNumber,
        fullName: subject.fullName,
      },
      generatedAt: opts.generatedAt.toISOString(),
      attendux: VERSION,
      schemaVersion,
      files: [...(await files.done), await readme],
    };
    return JSON.stringify(manifest, null, 2) + '\n';
  });
  const finalized = archive.finalize();
  // A failure surfaces through the pipeline; finalize's own rejection must not go unhandled.
  finalized.catch(() => undefined);
  const source = opts.encryption ? await ageEncrypted(archive, opts.encryption) : archive;
  await pipeline(source, out);
  await finalized;
  return manifest!;
}

/** The same, to a file: written as a `.part`, fsynced, then renamed, so a reader never sees half a zip. */
export async function writeExportFile(
  q: Queryable,
  subject: Subject,
  path: string,
  opts: ExportOptions & { encryption?: ExportEncryption },
): Promise<ExportManifest & { bytes: number }> {
  const part = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}.part`);
  try {
    const manifest = await writeExport(
      q,
      subject,
      createWriteStream(part, { flags: 'wx', mode: 0o600 }),
      opts,
    );
    const fh = await open(part, constants.O_RDONLY);
    let bytes = 0;
    try {
      await fh.sync();
      bytes = (await fh.stat()).size;
    } finally {
      await fh.close();
    }
    await rename(part, path);
    await fsyncDir(dirname(path));
    return { ...manifest, bytes };
  } catch (err) {
    await unlink(part).catch(() => undefined); // removing the .part: its error is rethrown
    throw err;
  }
}
