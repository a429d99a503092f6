import { createHash } from 'node:crypto';
import { constants, createWriteStream } from 'node:fs';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { PassThrough, Readable, Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { once } from 'node:events';
import { AttenduxError } from '../../errors.js';
import type { Pool, PoolClient } from '../../db/pool.js';
import { appendAudit } from '../../db/queries/audit.js';
import { schemaVersion } from '../../db/migrate.js';
import { copyCsvSql, employeeIds, exportTables, WITHHELD_COLUMNS } from '../../db/queries/tenant-data.js';
import { findSubject } from '../../db/queries/dsar.js';
import { loadSettings } from '../settings/settings.js';
import { appendSubjectFiles } from '../dsar/export.js';
import { VERSION } from '../../version.js';
import { fsyncDir } from '../../lib/fs.js';
import { checkRecipient } from '../../crypto/age-stream.js';
import { ageEncrypted } from '../../crypto/age.js';
import { requireTenant } from '../accounts/tenants.js';
import type { Tenant } from '../../db/queries/tenants.js';

/**
 * `attendux tenant export T --out FILE`: the whole company's data in one zip, streamed in constant memory
 * (each table and each person's rows are COPY streams, one at a time, through archiver), optionally
 * age-encrypted, written as a .part file, fsynced and renamed. All of it is read in one repeatable-read
 * snapshot, so the tables agree with each other.
 */
export interface TenantExportOptions {
  tenant: string;
  out: string;
  /** age scrypt passphrase, or an age1... recipient (not both). */
  passphrase?: string;
  recipient?: string;
  actor: string;
}

export interface ExportedFile {
  name: string;
  bytes: number;
  sha256: string;
}

export interface TenantExportResult {
  tenantId: string;
  slug: string;
  out: string;
  encrypted: 'passphrase' | 'recipient' | null;
  files: number;
  people: number;
  seconds: number;
}

/** Counts and hashes what passes through, for the manifest. */
function hashing(name: string, files: ExportedFile[]): Transform {
  const h = createHash('sha256');
  let bytes = 0;
  return new Transform({
    transform(chunk: Buffer, _e, cb) {
      h.update(chunk);
      bytes += chunk.length;
      cb(null, chunk);
    },
    flush(cb) {
      files.push({ name, bytes, sha256: h.digest('hex') });
      cb();
    },
  });
}

function encrypted(source: Readable, opts: TenantExportOptions): Promise<Readable> {
  if (opts.passphrase) return ageEncrypted(source, { passphrase: opts.passphrase });
  if (opts.recipient) return ageEncrypted(source, { recipient: opts.recipient });
  return Promise.resolve(source);
}

type Archive = import('archiver').Archiver;

/** Append one entry and wait until archiver has consumed it: one COPY at a time on the snapshot's client. */
async function addEntry(zip: Archive, name: string, source: Readable, files: ExportedFile[]): Promise<void> {
  const through = new PassThrough();
  const done = once(zip, 'entry');
  zip.append(through, { name });
  await pipeline(source, hashing(name, files), through);
  await done;
}

async function addTables(zip: Archive, c: PoolClient, tenantId: string, files: ExportedFile[]) {
  const { to: copyTo } = await import('pg-copy-streams');
  const tables = await exportTables(c);
  for (const t of tables)
    await addEntry(zip, `tables/${t}.csv`, c.query(copyTo(await copyCsvSql(c, t, tenantId))), files);
  const s = await loadSettings(c, tenantId);
  const overtime = {
    dailyMinutes: s['overtime.dailyMinutes'],
    multiplierPercent: s['overtime.multiplierPercent'],
  };
  const people = await employeeIds(c, tenantId);
  // The DSAR export's files of each person (src/core/dsar/export.ts), one person at a time.
  for (const id of people) {
    const [subject] = await findSubject(c, tenantId, { employeeId: id });
    if (!subject) continue;
    const f = appendSubjectFiles(zip, c, subject, { prefix: `people/${id}/`, overtime });
    files.push(...(await f.done));
  }
  return { tables, people: people.length };
}

const README = (slug: string) => `Export of company ${slug} from attendux.

tables/<table>.csv       every row of the company, one file per table (CSV with a header line)
people/<employee>/       per person, what \`attendux dsar export\` gives them: data.json (everything about
                         the person), attendance events, timesheets, payroll lines, corrections and the
                         audit events about them (other staff by role only)
manifest.json            what was exported, when, from which attendux and schema version, and the SHA-256
                         of every file

Withheld: password hashes, API key secrets and the audit chain's MACs (secrets), and the face template
vector (biometric: employees.face_template_present says whether one exists, face_enrolled_at when).
`;

/** The zip (encrypted when asked) written to the open file `fh`, fsynced; returns what went in. */
async function writeZip(
  c: PoolClient,
  tenant: Tenant,
  fh: FileHandle,
  opts: TenantExportOptions,
): Promise<{ files: ExportedFile[]; people: number }> {
  // archiver 7 (installed) exports a factory; @types/archiver describes version 8's classes.
  const archiver = (await import('archiver')) as unknown as {
    default: (format: 'zip', o: import('archiver').ZipOptions) => Archive;
  };
  const zip = archiver.default('zip', { zlib: { level: 6 } });
  const sink: Writable = createWriteStream('', { fd: fh.fd, autoClose: false });
  const written = pipeline(await encrypted(zip, opts), sink);
  const files: ExportedFile[] = [];
  try {
    const { people } = await addTables(zip, c, tenant.id, files);
    zip.append(README(tenant.slug), { name: 'README.txt' });
    const manifest = {
      kind: 'attendux-tenant-export',
      tenant: { id: tenant.id, slug: tenant.slug, name: tenant.name },
      generatedAt: new Date().toISOString(),
      attendux: VERSION,
      schemaVersion: await schemaVersion(c),
      withheldColumns: WITHHELD_COLUMNS,
      people,
      files,
    };
    zip.append(JSON.stringify(manifest, null, 2) + '\n', { name: 'manifest.json' });
    await zip.finalize();
    await written;
    await fh.sync();
    return { files, people };
  } catch (err) {
    zip.abort();
    await written.catch(() => undefined); // the aborted zip's own error: the cause is rethrown
    throw err;
  }
}

export async function exportTenant(pool: Pool, opts: TenantExportOptions): Promise<TenantExportResult> {
  if (opts.passphrase && opts.recipient)
    throw new AttenduxError('USAGE', 'give --passphrase-file or --recipient, not both');
  if (opts.recipient && !(await checkRecipient(opts.recipient)))
    throw new AttenduxError('USAGE', `"${opts.recipient}" is not an age recipient`, {
      hint: 'an age public key starts with age1 (`age-keygen -y identity.txt` prints it)',
    });
  const t0 = Date.now();
  const c = await pool.connect();
  const part = `${opts.out}.part`;
  let created = false;
  try {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const tenant = await requireTenant(c, opts.tenant);
    const fh = await open(part, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600).catch(
      (err: NodeJS.ErrnoException) => {
        throw new AttenduxError('IO_ERROR', `cannot write ${part}: ${err.message}`, {
          hint:
            err.code === 'EEXIST'
              ? 'another export is writing it, or a killed one left it: remove it'
              : undefined,
        });
      },
    );
    created = true;
    const { files, people } = await writeZip(c, tenant, fh, opts).finally(() => fh.close());
    await c.query('COMMIT');
    await rename(part, opts.out);
    await fsyncDir(dirname(opts.out));
    const encryptedWith = opts.passphrase ? 'passphrase' : opts.recipient ? 'recipient' : null;
    await appendAudit(pool, {
      tenantId: tenant.id,
      actor: opts.actor,
      action: 'tenant.export',
      entityType: 'tenant',
      entityId: tenant.id,
      details: { file: basename(opts.out), files: files.length, people, encrypted: encryptedWith },
    });
    return {
      tenantId: tenant.id,
      slug: tenant.slug,
      out: opts.out,
      encrypted: encryptedWith,
      files: files.length,
      people,
      seconds: (Date.now() - t0) / 1000,
    };
  } catch (err) {
    // ROLLBACK of a failed transaction: its error is rethrown
    await c.query('ROLLBACK').catch(() => undefined);
    if (created) await unlink(part).catch(() => undefined); // removing the .part: the error is rethrown
    throw err;
  } finally {
    c.release();
  }
}
