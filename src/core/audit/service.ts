import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { readFile, rename } from 'node:fs/promises';
import { once } from 'node:events';
import pg from 'pg';
import type { Install } from '../install.js';
import type { LoadedConfig } from '../config/load.js';
import { appendAudit, auditWhere, SYSTEM_TENANT, type AuditFilter } from '../../db/queries/audit.js';
import { inTransaction, type Pool, type Queryable } from '../../db/pool.js';
import { requireTenant } from '../accounts/tenants.js';
import { AttenduxError } from '../../errors.js';
import { publicKeyOf, signBytes, verifyBytes } from '../../crypto/signing.js';
import { writeFileAtomic } from '../../lib/fs.js';
import { auditMacFor, AuditMac, encodeFields, type MacFields } from './mac.js';
import {
  appendCheckpoints,
  checkpointFile,
  checkpointHeads,
  readBackupCheckpoints,
  readCheckpointFile,
  signCheckpoint,
  type Checkpoint,
  type SourcedCheckpoint,
} from './checkpoints.js';
import { ChainWalker, verifyDatabase, type VerifyResult } from './verify.js';
import { backupAuditWarning } from './backup.js';
import { isUuid } from '../../lib/uuid.js';
import { warnSwallowed } from '../../lib/log.js';

/** `--tenant`: a company slug or id, or `system` for the install-wide chain. */
export async function resolveTenant(q: Queryable, ref: string | undefined): Promise<string | undefined> {
  if (!ref) return undefined;
  if (ref === 'system' || ref === SYSTEM_TENANT) return SYSTEM_TENANT;
  if (isUuid(ref)) return ref.toLowerCase();
  return (await requireTenant(q, ref)).id;
}

/** Every checkpoint attendux can find: the data dir's file, every backup sidecar, and the extra files given. */
export async function loadCheckpoints(
  loaded: LoadedConfig,
  extra: string[] = [],
): Promise<SourcedCheckpoint[]> {
  const out = [
    ...(await readCheckpointFile(checkpointFile(loaded.config.dataDir))),
    ...(await readBackupCheckpoints(loaded.backupDir)),
  ];
  for (const f of extra) {
    const text = await readFile(f, 'utf8').catch((err: Error) => {
      throw new AttenduxError('IO_ERROR', `cannot read checkpoints ${f}: ${err.message}`);
    });
    // A checkpoint file (JSON lines) or a backup sidecar / export manifest (JSON with audit.checkpoints).
    let doc: { audit?: { checkpoints?: Checkpoint[] }; checkpoints?: Checkpoint[] } | undefined;
    try {
      doc = JSON.parse(text) as typeof doc;
    } catch {
      doc = undefined; // JSON lines
    }
    if (doc && (doc.audit || doc.checkpoints)) {
      for (const c of doc.audit?.checkpoints ?? doc.checkpoints ?? []) out.push({ ...c, source: f });
      continue;
    }
    out.push(...(await readCheckpointFile(f)));
  }
  return out;
}

export interface VerifyOptions {
  tenant?: string;
  since?: Date;
  /** More checkpoint files (off-server copies). */
  checkpointFiles?: string[];
  /** Compare with exactly these checkpoints instead of the ones found on this install (a drill). */
  checkpoints?: SourcedCheckpoint[];
}

/** `audit verify`: every chain (or one), in one read-only snapshot, against every checkpoint found. */
export async function verifyAudit(install: Install, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const tenantId = await resolveTenant(install.admin, opts.tenant);
  const checkpoints = opts.checkpoints ?? (await loadCheckpoints(install.loaded, opts.checkpointFiles));
  return verifyWith(install.admin, {
    mac: auditMacFor(install.admin),
    publicKey: publicKeyOf(install.secrets.signingKey),
    checkpoints,
    tenantId,
    since: opts.since,
  });
}

export async function verifyWith(
  pool: Pool | pg.ClientBase,
  o: Parameters<typeof verifyDatabase>[1],
): Promise<VerifyResult> {
  const c = pool instanceof pg.Pool ? await pool.connect() : null;
  const client = (c ?? pool) as pg.ClientBase;
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      return await verifyDatabase(client, o);
    } finally {
      await client.query('COMMIT').catch(() => undefined);
    }
  } finally {
    c?.release();
  }
}

/** What the older checks (restore drill, tests) asked: how many entries, and the first break per company. */
export async function verifyAuditChains(
  q: Pool | pg.ClientBase,
  publicKey?: string,
  checkpoints: SourcedCheckpoint[] = [],
): Promise<{ checked: number; broken: { tenantId: string; seq: number }[]; result: VerifyResult }> {
  const r = await verifyWith(q, { mac: auditMacFor(q), publicKey: publicKey ?? '', checkpoints });
  const first = new Map<string, number>();
  for (const b of r.breaks) if (!first.has(b.tenantId)) first.set(b.tenantId, b.seq);
  return { checked: r.checked, broken: [...first].map(([tenantId, seq]) => ({ tenantId, seq })), result: r };
}

/** Sign the head of every chain that has one and append the checkpoints to the data dir's file. */
export async function checkpointNow(install: Install, reason: Checkpoint['reason'] = 'manual') {
  const cps = await checkpointHeads(install.admin, install.secrets.signingKey, reason);
  await appendCheckpoints(install.loaded.config.dataDir, cps);
  return { file: checkpointFile(install.loaded.config.dataDir), checkpoints: cps };
}

export interface BackupAudit {
  verified: {
    ok: boolean;
    at: string;
    checked: number;
    chains: number;
    checkpoints: number;
    breakCount: number;
    /** The first few breaks (a backup sidecar is not the place for ten thousand). */
    breaks: VerifyResult['breaks'];
  };
  checkpoints: Checkpoint[];
}

/**
 * What every database backup records (the backup writer calls this before its snapshot is taken, so the
 * snapshot holds every entry the checkpoints name): the verification of every chain and a signed checkpoint
 * of every head, also appended to the data dir's file. Never throws: a backup of a broken chain is still
 * taken, and says so.
 */
export { backupAuditWarning };

export async function auditForBackup(install: Install): Promise<BackupAudit> {
  const at = new Date().toISOString();
  let verified: BackupAudit['verified'];
  try {
    const r = await verifyAudit(install);
    verified = {
      ok: r.ok,
      at,
      checked: r.checked,
      chains: r.chains,
      checkpoints: r.checkpoints,
      breakCount: r.breaks.length + r.moreBreaks,
      breaks: r.breaks.slice(0, 20),
    };
  } catch (err) {
    verified = {
      ok: false,
      at,
      checked: 0,
      chains: 0,
      checkpoints: 0,
      breakCount: 1,
      breaks: [
        {
          tenantId: '-',
          seq: 0,
          at: null,
          kind: 'edited',
          detail: `verification failed: ${(err as Error).message}`,
        },
      ],
    };
  }
  const cps = await checkpointHeads(install.admin, install.secrets.signingKey, 'backup').catch(
    (err: unknown) => {
      warnSwallowed('audit checkpoints not signed', err);
      return [];
    },
  );
  await appendCheckpoints(install.loaded.config.dataDir, cps).catch((err: unknown) =>
    warnSwallowed('audit checkpoints not recorded', err),
  );
  return { verified, checkpoints: cps };
}

export function parseDuration(text: string): number {
  const m = /^(\d+)\s*(d|h|w|y)?$/.exec(text.trim());
  if (!m) throw new AttenduxError('USAGE', `not a duration: "${text}" (use e.g. 365d, 12w, 1y)`);
  const n = Number(m[1]);
  const days = { d: n, w: n * 7, y: n * 365, h: n / 24 }[(m[2] ?? 'd') as 'd' | 'w' | 'y' | 'h'];
  return days;
}

export interface PurgeResult {
  dryRun: boolean;
  olderThanDays: number;
  cutoff: string;
  tenants: { tenantId: string; deleted: number; throughSeq: number | null }[];
  deleted: number;
}

/**
 * `audit purge`: per chain, delete the entries older than the retention through attendux_audit_purge (the
 * only deletion path the database allows) and append a signed purge record (the last deleted seq and MAC)
 * in the same transaction, so the remaining chain still verifies from its first entry.
 */
export async function purgeAudit(
  install: Install,
  opts: { olderThanDays: number; dryRun?: boolean; actor: string },
): Promise<PurgeResult> {
  const cutoff = new Date(Date.now() - opts.olderThanDays * 86_400_000);
  const interval = `${Math.round(opts.olderThanDays * 86_400)} seconds`;
  const { rows: tenants } = await install.admin.query<{
    tenant_id: string;
    n: number;
    through: number | null;
  }>(
    // exactly what attendux_audit_purge deletes: the prefix before the first young entry, never the newest
    `WITH t AS (SELECT tenant_id, max(seq) AS head, min(seq) FILTER (WHERE at >= now() - $1::interval) AS young
                  FROM audit_log GROUP BY tenant_id)
     SELECT t.tenant_id, (least(coalesce(t.young, t.head + 1), t.head) - min(a.seq))::int AS n, NULL::bigint AS through
       FROM t JOIN audit_log a USING (tenant_id) GROUP BY t.tenant_id, t.head, t.young ORDER BY t.tenant_id`,
    [interval],
  );
  const out: PurgeResult['tenants'] = [];
  const cps: Checkpoint[] = [];
  for (const t of tenants) {
    if (t.n <= 0) continue;
    if (opts.dryRun) {
      out.push({ tenantId: t.tenant_id, deleted: t.n, throughSeq: null });
      continue;
    }
    await inTransaction(install.admin, async (c) => {
      const { rows } = await c.query<{
        deleted: number;
        through_seq: number | null;
        through_mac: Buffer | null;
      }>('SELECT deleted::int, through_seq, through_mac FROM attendux_audit_purge($1, $2::interval)', [
        t.tenant_id,
        interval,
      ]);
      const r = rows[0]!;
      if (!r.deleted || r.through_seq === null || !r.through_mac) return;
      const cp = signCheckpoint(install.secrets.signingKey, {
        tenantId: t.tenant_id,
        seq: r.through_seq,
        mac: r.through_mac.toString('hex'),
        at: new Date().toISOString(),
        reason: 'purge',
      });
      await appendAudit(c, {
        tenantId: t.tenant_id,
        actor: opts.actor,
        action: 'audit.purge',
        entityType: 'audit_log',
        details: {
          deleted: r.deleted,
          olderThanDays: opts.olderThanDays,
          cutoff: cutoff.toISOString(),
          checkpoint: cp,
        },
      });
      cps.push(cp);
      out.push({ tenantId: t.tenant_id, deleted: r.deleted, throughSeq: r.through_seq });
    });
  }
  if (!opts.dryRun) {
    await appendCheckpoints(install.loaded.config.dataDir, cps);
    // The purge itself is recorded install-wide too, whatever chains it touched.
    await appendAudit(install.admin, {
      tenantId: SYSTEM_TENANT,
      actor: opts.actor,
      action: 'audit.purge_run',
      entityType: 'audit_log',
      details: {
        olderThanDays: opts.olderThanDays,
        chains: out.length,
        deleted: out.reduce((a, x) => a + x.deleted, 0),
      },
    });
  }
  return {
    dryRun: !!opts.dryRun,
    olderThanDays: opts.olderThanDays,
    cutoff: cutoff.toISOString(),
    tenants: out,
    deleted: out.reduce((a, x) => a + x.deleted, 0),
  };
}

export interface RechainResult {
  legacy: number;
  rechained: number;
  /** Breaks of the old unkeyed chain found before re-keying (re-chained anyway only with force). */
  legacyBreaks: { tenantId: string; seq: number }[];
}

/**
 * Re-key entries still under the old unkeyed SHA-256 (mac_version 1): verify the old chain first (so an old
 * edit is not laundered into a valid MAC), then recompute every MAC of those chains under the audit key, in
 * seq order, in one transaction. Runs after `migrate up` and as `audit rechain`.
 */
export async function rechainAudit(admin: Pool, opts: { force?: boolean } = {}): Promise<RechainResult> {
  const mac = auditMacFor(admin);
  return inTransaction(admin, async (c) => {
    const { rows: cnt } = await c.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM audit_log WHERE mac_version = 1',
    );
    const legacy = cnt[0]!.n;
    if (!legacy) return { legacy: 0, rechained: 0, legacyBreaks: [] };
    // Stop writers for the duration: the chains are rewritten from their first entry to their head.
    await c.query('LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE');
    const { rows: bad } = await c.query<{ tenant_id: string; seq: number }>(
      `WITH chain AS (
         SELECT tenant_id, seq, hash, prev_hash, mac_version,
                attendux_audit_digest(prev_hash, tenant_id, seq, at, actor, action, entity_type, entity_id,
                                      ip_hash, ua_hash, details) AS recomputed,
                lag(hash) OVER (PARTITION BY tenant_id ORDER BY seq) AS prev_actual,
                lag(seq) OVER (PARTITION BY tenant_id ORDER BY seq) AS prev_seq
           FROM audit_log)
       SELECT tenant_id, min(seq) AS seq FROM chain
        WHERE mac_version = 1 AND (hash <> recomputed
           OR (prev_actual IS NOT NULL AND (prev_hash <> prev_actual OR seq <> prev_seq + 1)))
        GROUP BY tenant_id`,
    );
    const legacyBreaks = bad.map((b) => ({ tenantId: b.tenant_id, seq: b.seq }));
    if (legacyBreaks.length && !opts.force) {
      throw new AttenduxError(
        'AUDIT_BROKEN',
        `the old audit chain is already broken (${legacyBreaks.map((b) => `${b.tenantId}#${b.seq}`).join(', ')}); not re-keying it`,
        {
          hint: 'investigate, then `attendux audit rechain --force` to re-key it as it is (the break is then recorded in the audit log)',
        },
      );
    }
    await c.query(
      'CREATE TEMPORARY TABLE audit_rechain (tenant_id uuid, seq bigint, prev_hash bytea, hash bytea) ON COMMIT DROP',
    );
    const { rows } = await c.query<{
      tenant_id: string;
      seq: number;
      at_us: number;
      actor: string;
      action: string;
      entity_type: string | null;
      entity_id: string | null;
      ip_hash: string | null;
      ua_hash: string | null;
      details: string;
    }>(
      `SELECT tenant_id::text, seq, (extract(epoch FROM at) * 1000000)::bigint AS at_us, actor, action, entity_type,
              entity_id, ip_hash, ua_hash, details::text AS details
         FROM audit_log WHERE tenant_id IN (SELECT DISTINCT tenant_id FROM audit_log WHERE mac_version = 1)
        ORDER BY tenant_id, seq`,
    );
    let tenant = '';
    let prev: Buffer = Buffer.alloc(0);
    const batch: unknown[][] = [];
    const flush = async () => {
      if (!batch.length) return;
      await c.query(
        `INSERT INTO audit_rechain SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bytea[], $4::bytea[])`,
        [batch.map((b) => b[0]), batch.map((b) => b[1]), batch.map((b) => b[2]), batch.map((b) => b[3])],
      );
      batch.length = 0;
    };
    for (const r of rows) {
      if (r.tenant_id !== tenant) {
        tenant = r.tenant_id;
        prev = Buffer.alloc(0);
      }
      const m = mac.of({
        tenantId: r.tenant_id,
        seq: r.seq,
        atUs: r.at_us,
        actor: r.actor,
        action: r.action,
        entityType: r.entity_type,
        entityId: r.entity_id,
        ipHash: r.ip_hash,
        uaHash: r.ua_hash,
        details: r.details,
        prevMac: prev,
      });
      batch.push([r.tenant_id, r.seq, prev, m]);
      prev = m;
      if (batch.length >= 5000) await flush();
    }
    await flush();
    const { rows: done } = await c.query<{ n: number }>('SELECT attendux_audit_rechain_apply()::int AS n');
    await appendAudit(c, {
      tenantId: SYSTEM_TENANT,
      actor: 'attendux',
      action: 'audit.rechain',
      entityType: 'audit_log',
      details: { legacy, rechained: done[0]!.n, legacyBreaks },
    });
    return { legacy, rechained: done[0]!.n, legacyBreaks };
  });
}

// ---------------------------------------------------------------------------------------------- log, export

export interface LogRow {
  tenantId: string;
  seq: number;
  at: string;
  actor: string;
  action: string;
  entityType: string | null;
  entityId: string | null;
  ipHash: string | null;
  details: Record<string, unknown>;
}

/** `audit log`: newest first, in pages of 1000 (keyset, so a large range streams in constant memory). */
export async function streamAuditLog(
  q: Queryable,
  filter: AuditFilter & { limit?: number },
  onRow: (r: LogRow) => void | Promise<void>,
): Promise<number> {
  const w = auditWhere({ ...filter, limit: undefined });
  let n = 0;
  let cursor: [string, string, number] | null = null;
  const limit = filter.limit ?? Infinity;
  for (;;) {
    const page = Math.min(1000, limit - n);
    if (page <= 0) break;
    const k = w.values.length;
    const { rows }: { rows: (LogRow & { atText: string })[] } = await q.query<LogRow & { atText: string }>(
      `SELECT tenant_id::text AS "tenantId", seq, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at,
              at::text AS "atText", actor, action, entity_type AS "entityType", entity_id AS "entityId",
              ip_hash AS "ipHash", details
         FROM audit_log
        WHERE ${w.sql} AND ($${k + 1}::timestamptz IS NULL OR (at, tenant_id, seq) < ($${k + 1}::timestamptz, $${k + 2}::uuid, $${k + 3}::bigint))
        ORDER BY at DESC, tenant_id DESC, seq DESC LIMIT $${k + 4}`,
      [...w.values, cursor?.[0] ?? null, cursor?.[1] ?? null, cursor?.[2] ?? null, page],
    );
    for (const r of rows) {
      const { atText, ...row } = r;
      void atText;
      await onRow(row);
      n++;
    }
    if (rows.length < page) break;
    const last: LogRow & { atText: string } = rows[rows.length - 1]!;
    cursor = [last.atText, last.tenantId, last.seq];
  }
  return n;
}

export const CSV_COLUMNS = [
  'tenantId',
  'seq',
  'at',
  'actor',
  'action',
  'entityType',
  'entityId',
  'ipHash',
  'details',
];

export function csvLine(values: unknown[]): string {
  return values
    .map((v) => {
      const s = v === null || v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v);
      // Formula injection: a cell starting with = + - @ is prefixed so that a spreadsheet shows it as text.
      const safe = /^[=+\-@\t\r]/.test(s) ? `'${s}` : s;
      return /[",\n\r]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
    })
    .join(',');
}

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

function manifestBytes(m: Omit<ExportManifest, 'signature'>): string {
  return JSON.stringify(m);
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
  const mac = auditMacFor(install.admin);
  const publicKey = publicKeyOf(install.secrets.signingKey);
  const all = await loadCheckpoints(install.loaded);
  const part = `${opts.out}.part`;
  const ws = createWriteStream(part, { mode: 0o600 });
  const hash = createHash('sha256');
  const write = async (s: string) => {
    hash.update(s);
    if (!ws.write(s)) await once(ws, 'drain');
  };
  if (format === 'csv')
    await write(
      csvLine([
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
      ]) + '\n',
    );
  const walker = new ChainWalker({
    mac,
    publicKey,
    checkpoints: all,
    tenantId,
    trustFirstLink: !!opts.since,
  });
  walker.startTenant(tenantId);
  let first: number | null = null;
  let last: ExportEntry | null = null;
  let n = 0;
  const c = await install.admin.connect();
  try {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    let after = 0;
    for (;;) {
      const { rows } = await c.query<ExportEntry & { prev: Buffer; h: Buffer; v: number }>(
        `SELECT tenant_id::text AS "tenantId", seq, (extract(epoch FROM at) * 1000000)::bigint AS "atUs",
                to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at, actor, action,
                entity_type AS "entityType", entity_id AS "entityId", ip_hash AS "ipHash", ua_hash AS "uaHash",
                details::text AS details, prev_hash AS prev, hash AS h, mac_version AS v
           FROM audit_log
          WHERE tenant_id = $1 AND seq > $2 AND ($3::timestamptz IS NULL OR at >= $3) AND ($4::timestamptz IS NULL OR at < $4)
          ORDER BY seq LIMIT 5000`,
        [tenantId, after, opts.since ?? null, opts.until ?? null],
      );
      for (const r of rows) {
        const { prev, h, v, ...rest } = r;
        const e: ExportEntry = { ...rest, prevMac: prev.toString('hex'), mac: h.toString('hex') };
        walker.entry(e.seq, e.atUs, encodeFields({ ...e, prevMac: prev }), prev, h, v);
        await write(
          format === 'csv'
            ? csvLine([
                e.tenantId,
                e.seq,
                e.atUs,
                e.at,
                e.actor,
                e.action,
                e.entityType,
                e.entityId,
                e.ipHash,
                e.uaHash,
                e.details,
                e.prevMac,
                e.mac,
              ]) + '\n'
            : JSON.stringify(e) + '\n',
        );
        first ??= e.seq;
        last = e;
        n++;
      }
      if (rows.length < 5000) break;
      after = rows[rows.length - 1]!.seq;
    }
    await c.query('COMMIT');
  } finally {
    c.release();
  }
  ws.end();
  await once(ws, 'finish');
  await rename(part, opts.out);
  const v = walker.finish();
  // Only breaks inside the range matter here (a checkpoint past `until` is not "missing").
  const inRange = v.breaks.filter(
    (b) =>
      first !== null &&
      last !== null &&
      b.seq >= first &&
      b.seq <= last.seq &&
      !/the chain ends at/.test(b.detail),
  );
  const cps = all.filter(
    (cp) =>
      cp.tenantId === tenantId && first !== null && last !== null && cp.seq >= first && cp.seq <= last.seq,
  );
  const seen = new Set<string>();
  const covering: Checkpoint[] = [];
  for (const { source, ...cp } of cps) {
    void source;
    if (seen.has(cp.sig)) continue;
    seen.add(cp.sig);
    covering.push(cp);
  }
  if (last)
    covering.push(
      signCheckpoint(install.secrets.signingKey, {
        tenantId,
        seq: last.seq,
        mac: last.mac,
        at: new Date().toISOString(),
        reason: 'export',
      }),
    );
  const base: Omit<ExportManifest, 'signature'> = {
    format: 'attendux-audit-export-v1',
    tenantId,
    since: opts.since?.toISOString() ?? null,
    until: opts.until?.toISOString() ?? null,
    file: opts.out.split('/').pop()!,
    fileFormat: format,
    entries: n,
    firstSeq: first,
    lastSeq: last?.seq ?? null,
    sha256: hash.digest('hex'),
    exportedAt: new Date().toISOString(),
    verified: { ok: inRange.length === 0, breaks: inRange.slice(0, 100) },
    checkpoints: covering,
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
    details: { entries: n, firstSeq: first, lastSeq: last?.seq ?? null, sha256: manifest.sha256 },
  });
  return manifest;
}

function parseCsvLine(line: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i <= line.length) {
    if (line[i] === '"') {
      let s = '';
      i++;
      for (;;) {
        const j = line.indexOf('"', i);
        if (j < 0) throw new Error('unterminated quote');
        s += line.slice(i, j);
        if (line[j + 1] === '"') {
          s += '"';
          i = j + 2;
        } else {
          i = j + 1;
          break;
        }
      }
      out.push(s);
      i++; // comma
    } else {
      const j = line.indexOf(',', i);
      const end = j < 0 ? line.length : j;
      out.push(line.slice(i, end));
      i = end + 1;
    }
  }
  return out.map((s) => (/^'[=+\-@\t\r]/.test(s) ? s.slice(1) : s));
}

/** CSV records: a quoted cell may span lines. */
function* csvRecords(text: string): Generator<string> {
  let cur = '';
  for (const line of text.split('\n')) {
    cur = cur ? `${cur}\n${line}` : line;
    if ((cur.match(/"/g)?.length ?? 0) % 2 === 0) {
      if (cur) yield cur;
      cur = '';
    }
  }
}

export interface FileVerifyResult {
  ok: boolean;
  file: string;
  entries: number;
  publicKey: string;
  /** true when the MACs were recomputed too (the audit key was at hand). */
  macsChecked: boolean;
  problems: { seq: number | null; kind: string; detail: string }[];
}

/**
 * `audit verify --file`: an export checked offline. Without the audit key (an auditor) it checks what needs
 * no secret: the manifest's signature and the file's SHA-256, that every entry links to the one before it,
 * and that the signed checkpoints agree with the entries. With the key (on the install) the MACs too.
 */
export async function verifyExportFile(
  path: string,
  opts: { publicKey?: string; auditKey?: string } = {},
): Promise<FileVerifyResult> {
  const manifestPath = path.endsWith('.manifest.json') ? path : `${path}.manifest.json`;
  const dataPath = path.endsWith('.manifest.json') ? path.slice(0, -'.manifest.json'.length) : path;
  const problems: FileVerifyResult['problems'] = [];
  let m: ExportManifest;
  try {
    m = JSON.parse(await readFile(manifestPath, 'utf8')) as ExportManifest;
  } catch (err) {
    throw new AttenduxError(
      'IO_ERROR',
      `cannot read the export manifest ${manifestPath}: ${(err as Error).message}`,
    );
  }
  const publicKey = opts.publicKey ?? m.publicKey;
  const { signature, ...base } = m;
  if (m.publicKey !== publicKey)
    problems.push({
      seq: null,
      kind: 'signature',
      detail: `the export is signed by ${m.publicKey}, not by ${publicKey}`,
    });
  else if (!verifyBytes(publicKey, manifestBytes(base), signature))
    problems.push({
      seq: null,
      kind: 'signature',
      detail: 'the manifest signature does not verify (manifest changed)',
    });
  const hash = createHash('sha256');
  let text = '';
  for await (const chunk of createReadStream(dataPath)) {
    hash.update(chunk as Buffer);
    text += (chunk as Buffer).toString('utf8');
  }
  if (hash.digest('hex') !== m.sha256)
    problems.push({
      seq: null,
      kind: 'checksum',
      detail: `${dataPath} does not match the manifest's SHA-256`,
    });
  const entries: ExportEntry[] = [];
  if (m.fileFormat === 'csv') {
    let header = true;
    for (const rec of csvRecords(text)) {
      if (header) {
        header = false;
        continue;
      }
      const f = parseCsvLine(rec);
      const nul = (s: string | undefined) => (s === '' || s === undefined ? null : s);
      entries.push({
        tenantId: f[0]!,
        seq: Number(f[1]),
        atUs: Number(f[2]),
        at: f[3]!,
        actor: f[4]!,
        action: f[5]!,
        entityType: nul(f[6]),
        entityId: nul(f[7]),
        ipHash: nul(f[8]),
        uaHash: nul(f[9]),
        details: f[10]!,
        prevMac: f[11]!,
        mac: f[12]!,
      });
    }
  } else {
    for (const line of text.split('\n')) if (line.trim()) entries.push(JSON.parse(line) as ExportEntry);
  }
  if (entries.length !== m.entries)
    problems.push({
      seq: null,
      kind: 'missing',
      detail: `${entries.length} entries in the file, the manifest says ${m.entries}`,
    });
  const mac = opts.auditKey ? new AuditMac(Buffer.from(opts.auditKey, 'base64')) : undefined;
  let prev: ExportEntry | undefined;
  for (const e of entries) {
    if (prev) {
      if (e.seq !== prev.seq + 1)
        problems.push({
          seq: e.seq,
          kind: 'missing',
          detail: `entries ${prev.seq + 1}..${e.seq - 1} are missing`,
        });
      else if (e.prevMac !== prev.mac)
        problems.push({ seq: e.seq, kind: 'inserted', detail: 'does not link to the entry before it' });
    }
    if (mac) {
      const got = mac.of({ ...e, prevMac: Buffer.from(e.prevMac, 'hex') }).toString('hex');
      if (got !== e.mac)
        problems.push({ seq: e.seq, kind: 'edited', detail: 'the MAC does not match the entry' });
    }
    prev = e;
  }
  const bySeq = new Map(entries.map((e) => [e.seq, e]));
  for (const cp of m.checkpoints) {
    if (
      cp.key !== publicKey ||
      !verifyBytes(
        publicKey,
        ['attendux-audit-checkpoint-v1', cp.tenantId, String(cp.seq), cp.mac, cp.at, cp.reason].join('\n'),
        cp.sig,
      )
    ) {
      problems.push({ seq: cp.seq, kind: 'checkpoint', detail: 'a checkpoint with a bad signature' });
      continue;
    }
    const e = bySeq.get(cp.seq);
    if (!e)
      problems.push({
        seq: cp.seq,
        kind: 'missing',
        detail: `the signed checkpoint's entry ${cp.seq} is not in the file`,
      });
    else if (e.mac !== cp.mac)
      problems.push({
        seq: cp.seq,
        kind: 'checkpoint',
        detail: `entry ${cp.seq} differs from its signed checkpoint of ${cp.at}`,
      });
  }
  if (!m.verified.ok)
    problems.push({
      seq: null,
      kind: 'edited',
      detail: `the chain did not verify when exported (${m.verified.breaks.length} break(s))`,
    });
  return {
    ok: problems.length === 0,
    file: dataPath,
    entries: entries.length,
    publicKey,
    macsChecked: !!mac,
    problems,
  };
}
