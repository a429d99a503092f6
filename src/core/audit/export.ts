import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename } from 'node:fs/promises';
import { once } from 'node:events';
import type { Install } from '../install.js';
import { appendAudit } from '../../db/queries/audit.js';
import { publicKeyOf, signBytes } from '../../crypto/signing.js';
import { writeFileAtomic } from '../../lib/fs.js';
import { auditMacFor, encodeFields, type MacFields } from './mac.js';
import { signCheckpoint, type Checkpoint, type SourcedCheckpoint } from './checkpoints.js';
import { ChainWalker, type VerifyResult } from './walker.js';
import { loadCheckpoints, resolveTenant } from './chains.js';
import { csvLine } from './log.js';

/**
 * One exported entry: everything its MAC covers (MacFields, with the MACs as hex), so the chain links can be
 * checked offline.
 */
export type ExportEntry = Omit<MacFields, 'prevMac'> & { at: string; prevMac: string; mac: string };

export interface ExportManifest {
  format: 'attendux-audit-export-v1';
  tenantId: string;
  since: string | null;
  until: string | null;
  file: string;
  fileFormat: 'jsonl' | 'csv';
  entries: number;
  firstSeq: number | null;
  lastSeq: number | null;
  sha256: string;
  exportedAt: string;
  /** The range's verification with the audit key at export time. */
  verified: { ok: boolean; breaks: VerifyResult['breaks'] };
  /** Signed checkpoints inside the range, plus one of the last exported entry. */
  checkpoints: Checkpoint[];
  publicKey: string;
  /** Ed25519 over the manifest's JSON without this field. */
  signature: string;
}

export function manifestBytes(m: Omit<ExportManifest, 'signature'>): string {
  return JSON.stringify(m);
}

/** The CSV export's columns: every field of ExportEntry, in the MAC's order. */
export const EXPORT_COLUMNS = [
  'tenantId',
  'seq',
  'atUs',
  'at',
  'actor',
  'action',
  'entityType',
  'entityId',
  'ipHash',
  'uaHash',
  'details',
  'prevMac',
  'mac',
] as const satisfies readonly (keyof ExportEntry)[];

interface Written {
  entries: number;
  first: number | null;
  last: ExportEntry | null;
  sha256: string;
}

/**
 * Write one company's entries of the range to `out` (via `.part`, renamed when complete), each through the
 * walker, in one read-only snapshot; the SHA-256 of what was written.
 */
async function writeExport(
  install: Install,
  walker: ChainWalker,
  opts: { tenantId: string; since?: Date; until?: Date; out: string; format: 'jsonl' | 'csv' },
): Promise<Written> {
  const part = `${opts.out}.part`;
  const ws = createWriteStream(part, { mode: 0o600 });
  const hash = createHash('sha256');
  const write = async (s: string) => {
    hash.update(s);
    if (!ws.write(s)) await once(ws, 'drain');
  };
  const w: Written = { entries: 0, first: null, last: null, sha256: '' };
  if (opts.format === 'csv') await write(csvLine([...EXPORT_COLUMNS]) + '\n');
  const c = await install.admin.connect();
  try {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    for (let after = 0, more = true; more;) {
      const { rows } = await c.query<ExportEntry & { prev: Buffer; h: Buffer; v: number }>(
        `SELECT tenant_id::text AS "tenantId", seq, (extract(epoch FROM at) * 1000000)::bigint AS "atUs",
                to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at, actor, action,
                entity_type AS "entityType", entity_id AS "entityId", ip_hash AS "ipHash", ua_hash AS "uaHash",
                details::text AS details, prev_hash AS prev, hash AS h, mac_version AS v
           FROM audit_log
          WHERE tenant_id = $1 AND seq > $2 AND ($3::timestamptz IS NULL OR at >= $3) AND ($4::timestamptz IS NULL OR at < $4)
          ORDER BY seq LIMIT 5000`,
        [opts.tenantId, after, opts.since ?? null, opts.until ?? null],
      );
      for (const r of rows) {
        const { prev, h, v, ...rest } = r;
        const e: ExportEntry = { ...rest, prevMac: prev.toString('hex'), mac: h.toString('hex') };
        walker.entry(e.seq, e.atUs, encodeFields({ ...e, prevMac: prev }), prev, h, v);
        await write(
          opts.format === 'csv' ? csvLine(EXPORT_COLUMNS.map((k) => e[k])) + '\n' : JSON.stringify(e) + '\n',
        );
        w.first ??= e.seq;
        w.last = e;
        w.entries++;
      }
      more = rows.length === 5000;
      if (more) after = rows[rows.length - 1]!.seq;
    }
    await c.query('COMMIT');
  } finally {
    c.release();
  }
  ws.end();
  await once(ws, 'finish');
  await rename(part, opts.out);
  w.sha256 = hash.digest('hex');
  return w;
}

/** The signed checkpoints inside the written range (each once), plus a new one of its last entry. */
function coveringCheckpoints(
  signingKey: string,
  all: SourcedCheckpoint[],
  tenantId: string,
  w: Written,
): Checkpoint[] {
  const seen = new Set<string>();
  const covering: Checkpoint[] = [];
  if (w.first === null || !w.last) return covering;
  for (const { source, ...cp } of all) {
    void source;
    if (cp.tenantId !== tenantId || cp.seq < w.first || cp.seq > w.last.seq || seen.has(cp.sig)) continue;
    seen.add(cp.sig);
    covering.push(cp);
  }
  covering.push(
    signCheckpoint(signingKey, {
      tenantId,
      seq: w.last.seq,
      mac: w.last.mac,
      at: new Date().toISOString(),
      reason: 'export',
    }),
  );
  return covering;
}

/** Only breaks inside the range matter to an export (a checkpoint past `until` is not "missing"). */
function breaksInRange(v: VerifyResult, w: Written): VerifyResult['breaks'] {
  if (w.first === null || !w.last) return [];
  const lastSeq = w.last.seq;
  return v.breaks.filter((b) => b.seq >= w.first! && b.seq <= lastSeq && !/the chain ends at/.test(b.detail));
}

/**
 * `audit export`: one company's entries in [since, until) as JSON lines or CSV, and `<out>.manifest.json`
 * with the file's SHA-256, the range's verification, the signed checkpoints that cover it, all signed by the
 * install key: `audit verify --file` checks it offline (links, checksums, signatures) with no database.
 */
export async function exportAudit(
  install: Install,
  opts: { tenant: string; since?: Date; until?: Date; out: string; format?: 'jsonl' | 'csv'; actor: string },
): Promise<ExportManifest> {
  const tenantId = (await resolveTenant(install.admin, opts.tenant))!;
  const format = opts.format ?? (opts.out.endsWith('.csv') ? 'csv' : 'jsonl');
  const publicKey = publicKeyOf(install.secrets.signingKey);
  const all = await loadCheckpoints(install.loaded);
  const walker = new ChainWalker({
    mac: auditMacFor(install.admin),
    publicKey,
    checkpoints: all,
    tenantId,
    trustFirstLink: !!opts.since,
  });
  walker.startTenant(tenantId);
  const w = await writeExport(install, walker, { ...opts, tenantId, format });
  const inRange = breaksInRange(walker.finish(), w);
  const base: Omit<ExportManifest, 'signature'> = {
    format: 'attendux-audit-export-v1',
    tenantId,
    since: opts.since?.toISOString() ?? null,
    until: opts.until?.toISOString() ?? null,
    file: opts.out.split('/').pop()!,
    fileFormat: format,
    entries: w.entries,
    firstSeq: w.first,
    lastSeq: w.last?.seq ?? null,
    sha256: w.sha256,
    exportedAt: new Date().toISOString(),
    verified: { ok: inRange.length === 0, breaks: inRange.slice(0, 100) },
    checkpoints: coveringCheckpoints(install.secrets.signingKey, all, tenantId, w),
    publicKey,
  };
  const manifest: ExportManifest = {
    ...base,
    signature: signBytes(install.secrets.signingKey, manifestBytes(base)),
  };
  await writeFileAtomic(`${opts.out}.manifest.json`, JSON.stringify(manifest, null, 2) + '\n', 0o600);
  await appendAudit(install.admin, {
    tenantId,
    actor: opts.actor,
    action: 'audit.export',
    entityType: 'audit_log',
    details: { entries: w.entries, firstSeq: w.first, lastSeq: w.last?.seq ?? null, sha256: manifest.sha256 },
  });
  return manifest;
}
