import { z } from 'zod';
import type { BackupAudit } from '../audit/service.js';
import { AttenduxError } from '../../errors.js';

/**
 * The backup format, version 3. One backup is two files in the backup dir:
 *
 *   <id>.tar.age   age-encrypted (X25519, to every configured recipient) POSIX tar of
 *                    data/<table>.bin.gz    (full) COPY binary format of the table, gzip; a big table is
 *                                           data/<table>.<n>.bin.gz, n = 0.. (block ranges, see tables[].entries)
 *                    data/changes.copy.gz   (incremental) COPY text of change_log rows, see CHANGE_COLUMNS
 *                    config/<name>          (config) the config file, the secrets file, service files
 *                    manifest.json          always the LAST entry (its checksums cover the entries before it)
 *   <id>.json      the sidecar: unencrypted, no personal data; lets list/status/prune work without the key
 *
 * Version 3 stores a full's tables in COPY's binary format (tables[].copyFormat = 'binary'): PostgreSQL
 * writes it in about half the time of text and it compresses to about 0.8 of the size, faster (README
 * "Performance (backup)"). Versions 1 and 2 hold COPY text, data/<table>[.<n>].copy.gz. Version 1 differs
 * from 2 only in the manifest's tables: the first releases named one `entry` per table, later ones (still
 * labelled /1) a list `entries`. All three are read (parseManifest turns a v1 table into the v2 shape, a
 * table without copyFormat is text), only version 3 is written.
 *
 * By hand: `age -d -i KEY <id>.tar.age | tar -x` gives manifest.json and the data;
 * `zcat data/tenants.bin.gz | psql -c '\copy tenants from stdin (format binary)'` loads a table.
 */
export const FORMAT = 'attendux-backup/3';
export const FORMAT_V2 = 'attendux-backup/2';
export const FORMAT_V1 = 'attendux-backup/1';
export type Format = typeof FORMAT | typeof FORMAT_V2 | typeof FORMAT_V1;
export const MANIFEST_ENTRY = 'manifest.json';
export const CHANGES_ENTRY = 'data/changes.copy.gz';
/**
 * Columns of data/changes.copy.gz, in order, with their types: change_log's columns. `row` is the new row as
 * jsonb (I/U). The one list: the incremental's COPY, the restore's staging table and apply-changes.sql are
 * built from it.
 */
export const CHANGE_COLUMNS = [
  ['id', 'bigint'],
  ['txid', 'xid8'],
  ['at', 'timestamptz'],
  ['table_name', 'text'],
  ['op', 'char(1)'],
  ['tenant_id', 'uuid'],
  ['pk', 'jsonb'],
  ['row', 'jsonb'],
] as const;

/** A column name as SQL (`row` is a keyword). */
const sqlName = (n: string) => (n === 'row' ? '"row"' : n);

/** The column list of a table holding data/changes.copy.gz: `id bigint, txid xid8, ...`. */
export function changeColumnsDdl(): string {
  return CHANGE_COLUMNS.map(([n, t]) => `${sqlName(n)} ${t}`).join(', ');
}

/** The select list exporting change_log (alias `l`) in the file's column order; `exprs` replaces columns. */
export function changeColumnsSelect(
  exprs: Partial<Record<(typeof CHANGE_COLUMNS)[number][0], string>>,
): string {
  return CHANGE_COLUMNS.map(([n]) => (exprs[n] ? `${exprs[n]} AS ${sqlName(n)}` : `l.${sqlName(n)}`)).join(
    ', ',
  );
}

export type BackupKind = 'full' | 'incremental' | 'config';
export const KINDS: readonly BackupKind[] = ['full', 'incremental', 'config'];

export const ID_PATTERN = /^(full|incremental|config)-\d{8}T\d{9}Z$/;

export function newBackupId(kind: BackupKind, at = new Date()): string {
  const s = at.toISOString(); // 2026-11-23T15:33:00.123Z
  return `${kind}-${s.slice(0, 10).replace(/-/g, '')}T${s.slice(11, 23).replace(/[:.]/g, '')}Z`;
}

export const dataFileName = (id: string) => `${id}.tar.age`;
export const sidecarFileName = (id: string) => `${id}.json`;

// ---------------------------------------------------------------------------------------------------------
// Schemas. Objects are loose: a field added later (additive, like `path` or `audit` were) passes through
// an older reader instead of failing it, and nothing of a signed file is silently dropped.

const kind = z.enum(['full', 'incremental', 'config']);
const nullableString = z.string().nullable();
const sha256 = z.string().regex(/^[0-9a-f]{64}$/);
// Not .int(): zod's int() stops at 2^53, and a size is a size (a test pretends a file of 10^16 bytes).
const count = z.number().nonnegative();
/** The audit section is written and read by src/core/audit; the archive only carries it. */
const audit = z.custom<BackupAudit>((v) => !!v && typeof v === 'object' && !Array.isArray(v));

const manifestEntry = z.looseObject({
  /** Path inside the tar. */
  name: z.string(),
  /** Bytes of the entry inside the tar (compressed data as stored). */
  bytes: count,
  sha256,
  /**
   * Config backups: the absolute path the file was read from (additive; absent in older backups).
   * `restore --config-only` writes a service file only back to this path, and only when it is on the
   * allow-list (src/core/restore/config.ts); the manifest is signed, so the path is what `backup config`
   * recorded.
   */
  path: z.string().optional(),
});

const tableV2 = z.looseObject({
  name: z.string(),
  /** Rows in the full backup's snapshot. */
  rows: count,
  /**
   * The table's tar entries, COPY data gzip each: one (data/<table>.bin.gz), or for a big table several
   * block ranges (data/<table>.<n>.bin.gz) that together hold every row once, loadable in any order or
   * in parallel.
   */
  entries: z.array(z.string()),
  /** Primary-key columns, in key order. */
  primaryKey: z.array(z.string()),
  /** COPY format of the entries (version 3: binary); absent = text (versions 1 and 2). */
  copyFormat: z.enum(['text', 'binary']).optional(),
});

/** Version 1: `entry` (one per table) in the first releases, `entries` later. */
const tableV1 = tableV2
  .omit({ entries: true })
  .extend({ entries: z.array(z.string()).optional(), entry: z.string().optional() })
  .transform(({ entry, entries, ...t }) => ({
    ...t,
    entries: entries?.length ? entries : entry ? [entry] : [],
  }));

const manifestBase = {
  id: z.string().regex(ID_PATTERN),
  kind,
  /** The backup this one applies on top of (incrementals); null for full and config backups. */
  parent: nullableString,
  /** The full backup at the root of this chain (itself for a full); null for config backups. */
  chainRoot: nullableString,
  createdAt: z.string(),
  attenduxVersion: z.string(),
  /** Newest applied migration; null for config backups. */
  schemaVersion: nullableString,
  postgresVersion: nullableString,
  /** pg_current_snapshot() of the backup's repeatable-read transaction, as text (xmin:xmax:xip,...). */
  snapshot: nullableString,
  /** The parent's snapshot (incrementals): the changes are exactly those not visible in it. */
  parentSnapshot: nullableString,
  /** backup_meta.database_id of the database backed up. */
  databaseId: nullableString,
  /** Incremental: number of change rows per table, and the change_log id range. */
  changes: z
    .looseObject({
      count,
      byTable: z.record(z.string(), count),
      firstId: z.number().nullable(),
      lastId: z.number().nullable(),
    })
    .nullable(),
  /** Config: SHA-256 over the config entries' names and checksums (what --if-changed compares). */
  contentHash: nullableString,
  /** Database backups: the audit log's verification and signed checkpoints at backup time (issue 13). */
  audit: audit.optional(),
  /** Every entry of the tar except manifest.json itself. */
  entries: z.array(manifestEntry),
};

/** Top-level objects are declared strict (for the types) and parsed `.loose()` (see above). */
export const ManifestSchema = z.object({
  format: z.enum([FORMAT, FORMAT_V2, FORMAT_V1]),
  ...manifestBase,
  /** Full: tables in foreign-key order (referenced tables first). */
  tables: z.array(tableV2),
});
const ManifestV1Schema = z.object({
  ...manifestBase,
  format: z.literal(FORMAT_V1),
  tables: z.array(tableV1),
});

export const SidecarSchema = z.object({
  format: z.enum([FORMAT, FORMAT_V2, FORMAT_V1]),
  id: z.string().regex(ID_PATTERN),
  kind,
  parent: nullableString,
  chainRoot: nullableString,
  createdAt: z.string(),
  finishedAt: z.string(),
  durationMs: z.number(),
  file: z.string(),
  /** Size and SHA-256 of the encrypted file. */
  bytes: count,
  sha256,
  /** Size of the tar inside (before encryption). */
  tarBytes: count,
  snapshot: nullableString,
  schemaVersion: nullableString,
  databaseId: nullableString,
  attenduxVersion: z.string(),
  /** Config backups only. */
  contentHash: nullableString,
  /** Total rows (full) or changes (incremental): numbers only, no personal data. */
  rows: count,
  recipients: count,
  outcome: z.literal('success'),
  /** Set when `backup repair` rebuilt this sidecar from the encrypted file (finishedAt is then its mtime). */
  repairedAt: z.string().optional(),
  /** Database backups: the audit log's verification and signed checkpoints at backup time (issue 13). */
  audit: audit.optional(),
});

export type ManifestEntry = z.infer<typeof manifestEntry>;
export type ManifestTable = z.infer<typeof tableV2>;
/** A manifest as read: a version-1 one comes back in the version-2 shape, with its own `format`. */
export type Manifest = z.infer<typeof ManifestSchema>;
export type Sidecar = z.infer<typeof SidecarSchema>;

/** The first problem zod found, in words: where and what. */
function firstIssue(err: z.ZodError): string {
  const i = err.issues[0];
  return i ? `${i.path.length ? i.path.join('.') : '(top)'}: ${i.message}` : 'invalid';
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new AttenduxError('BACKUP_CORRUPT', `${what} is not valid JSON`);
  }
}

export function parseSidecar(text: string, source: string): Sidecar {
  const r = SidecarSchema.loose().safeParse(parseJson(text, `${source}: sidecar`));
  if (!r.success)
    throw new AttenduxError(
      'BACKUP_CORRUPT',
      `${source}: not an attendux backup sidecar (${FORMAT}): ${firstIssue(r.error)}`,
    );
  return r.data;
}

export function parseManifest(text: string): Manifest {
  const v = parseJson(text, 'manifest.json');
  const format = (v as { format?: unknown } | null)?.format;
  const r =
    format === FORMAT_V1
      ? ManifestV1Schema.loose().safeParse(v)
      : ManifestSchema.extend({ format: z.enum([FORMAT, FORMAT_V2]) })
          .loose()
          .safeParse(v);
  if (!r.success)
    throw new AttenduxError(
      'BACKUP_CORRUPT',
      `manifest.json is not an ${FORMAT} (or ${FORMAT_V2}, ${FORMAT_V1}) manifest: ${firstIssue(r.error)}`,
    );
  return r.data;
}

/** The WITH clause that COPY ... FROM STDIN needs for a table's entries (README "Format"). */
export function copyOptions(t: Pick<ManifestTable, 'copyFormat'>): string {
  return t.copyFormat === 'binary' ? ' (FORMAT binary)' : '';
}
