import { constants } from 'node:fs';
import { mkdir, open, readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type pg from 'pg';
import { connectClient, type Queryable } from '../../db/pool.js';
import { warnSwallowed } from '../../lib/log.js';
import { reapplyDataLedger } from '../tenant-data/ledger.js';
import { reapplyErasures } from '../dsar/reapply.js';

/**
 * The security ledger: changes a restore must never undo (migrations/0006_security.sql). Triggers on `users`
 * and `api_keys` write an entry in the same transaction as the change; this module mirrors the entries to an
 * append-only file in the data dir (every config backup carries it) and re-applies them to a restored
 * database before it is handed back.
 *
 * Kinds and how a restore re-applies them:
 * - `api_key.revoked` and `user.session_epoch` are monotonic (a revocation is final, epochs only grow):
 *   every entry ever recorded is applied, whatever the restored point.
 * - `user.disabled`, `user.password`, `user.role_downgrade` are re-applied when they were recorded after the
 *   restored point (less a margin for clock skew and transactions still open at the snapshot): what the
 *   backup holds from before that point already includes them and anything done since (a re-enable, a
 *   later promotion), which a replay must not overturn.
 * Later kinds (erasures, company deletions: the DSAR work) are added to KINDS with their own statement. An
 * entry of a kind this version does not know is kept and counted, never silently dropped.
 */
export const LEDGER_FILE = 'security-ledger.jsonl';
/** Entries this long before the restored point are re-applied too: the backup may not hold them yet. */
export const LEDGER_MARGIN_MS = 5 * 60_000;

export const LEDGER_KINDS = [
  'api_key.revoked',
  'user.session_epoch',
  'user.disabled',
  'user.password',
  'user.role_downgrade',
  // Final, like revocations: every entry is re-applied whatever the point (src/core/tenant-data/ledger.ts).
  'attendance.retention',
  'tenant.deleted',
  'dsar.erasure',
] as const;

export interface LedgerEntry {
  id: string;
  at: string;
  tenantId: string;
  kind: string;
  entityId: string;
  data: Record<string, unknown>;
}

const ENTRY_COLUMNS = `id::text, to_json(at)#>>'{}' AS at, tenant_id::text AS "tenantId", kind,
  entity_id::text AS "entityId", data`;

export const ledgerPath = (dataDir: string) => join(dataDir, LEDGER_FILE);

/** Every entry of the database's ledger (of one company with tenantId), oldest first. */
export async function readLedgerFromDb(q: Queryable, tenantId?: string): Promise<LedgerEntry[]> {
  const { rows } = await q.query<LedgerEntry>(
    `SELECT ${ENTRY_COLUMNS} FROM security_ledger WHERE ($1::uuid IS NULL OR tenant_id = $1) ORDER BY at, id`,
    [tenantId ?? null],
  );
  return rows;
}

/** The entries written by the current transaction (the server mirrors them after its commit). */
export async function readTransactionLedger(q: Queryable, tenantId: string): Promise<LedgerEntry[]> {
  const { rows } = await q.query<LedgerEntry>(
    `SELECT ${ENTRY_COLUMNS} FROM security_ledger
      WHERE tenant_id = $1 AND txid = pg_current_xact_id_if_assigned() ORDER BY at, id`,
    [tenantId],
  );
  return rows;
}

function isEntry(v: unknown): v is LedgerEntry {
  const e = v as LedgerEntry;
  return (
    !!e &&
    typeof e.id === 'string' &&
    typeof e.at === 'string' &&
    typeof e.tenantId === 'string' &&
    typeof e.kind === 'string' &&
    typeof e.entityId === 'string' &&
    typeof e.data === 'object'
  );
}

/** Parse the mirror's text: one entry per line; a torn last line (a crash mid-append) is skipped. */
export function parseLedger(text: string): LedgerEntry[] {
  const out: LedgerEntry[] = [];
  const seen = new Set<string>();
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      // a torn line (a crash mid-append) is skipped, as documented above
      continue;
    }
    if (isEntry(v) && !seen.has(v.id)) {
      seen.add(v.id);
      out.push(v);
    }
  }
  return out;
}

export async function readLedgerFile(path: string): Promise<LedgerEntry[]> {
  const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw err;
  });
  return parseLedger(text);
}

/**
 * Append entries to the mirror (created 0600). O_APPEND: writers in several processes (the server, the
 * CLI) never overwrite each other; an entry written twice is harmless (entries are merged by id).
 */
export async function appendLedgerFile(path: string, entries: readonly LedgerEntry[]): Promise<void> {
  if (!entries.length) return;
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const fh = await open(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o600);
  try {
    await fh.writeFile(entries.map((e) => JSON.stringify(e) + '\n').join(''));
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Bring the mirror up to date with the database: append every entry it lacks. Returns how many. */
export async function syncLedgerFile(q: Queryable, dataDir: string): Promise<number> {
  const path = ledgerPath(dataDir);
  const known = new Set((await readLedgerFile(path)).map((e) => e.id));
  const missing = (await readLedgerFromDb(q)).filter((e) => !known.has(e.id));
  await appendLedgerFile(path, missing);
  return missing.length;
}

/** Merge entry lists by id, oldest first. */
export function mergeLedgers(...lists: readonly LedgerEntry[][]): LedgerEntry[] {
  const byId = new Map<string, LedgerEntry>();
  for (const l of lists) for (const e of l) if (!byId.has(e.id)) byId.set(e.id, e);
  return [...byId.values()].sort((a, b) =>
    a.at === b.at ? a.id.localeCompare(b.id) : Date.parse(a.at) - Date.parse(b.at),
  );
}

export interface ApplyLedgerResult {
  /** Entries known to the ledger after the merge. */
  entries: number;
  /** Rows changed by re-applying them, per kind. */
  applied: Record<string, number>;
  /** Entries of kinds this version does not know (kept in the ledger, not applied). */
  unknownKinds: number;
  /** Users whose sessions the restore ended (every user of the restored scope). */
  sessionsEnded: number;
}

/** Merge `entries` into the database's security_ledger; entries it already holds are kept as they are. */
async function mergeLedgerEntries(c: Queryable, entries: readonly LedgerEntry[]): Promise<void> {
  if (!entries.length) return;
  await c.query(
    `INSERT INTO security_ledger (id, at, tenant_id, kind, entity_id, data)
     SELECT id, at, "tenantId", kind, "entityId", data
       FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, at timestamptz, "tenantId" uuid, kind text,
                                               "entityId" uuid, data jsonb)
     ON CONFLICT (id) DO NOTHING`,
    [JSON.stringify(entries)],
  );
}

/**
 * Re-apply the ledger inside the caller's transaction on `c` (the restored database, or the live one for a
 * company restore): merge `entries` into its security_ledger, re-apply them as described above, then end
 * every session that existed at backup time (every user's epoch + 1, which is itself recorded).
 * `tenantId` limits everything to one company.
 */
export async function applyLedger(
  c: Queryable,
  entries: readonly LedgerEntry[],
  opts: { pointInTime: string; tenantId?: string },
): Promise<ApplyLedgerResult> {
  const scoped = opts.tenantId ? entries.filter((e) => e.tenantId === opts.tenantId) : entries;
  const since = new Date(Date.parse(opts.pointInTime) - LEDGER_MARGIN_MS).toISOString();
  const t = opts.tenantId ?? null;
  await c.query("SELECT set_config('attendux.ledger_replay', 'on', true)");
  await mergeLedgerEntries(c, scoped);
  const applied: Record<string, number> = {};
  const run = async (kind: string, sql: string, values: unknown[]) => {
    const r = await c.query(sql, values);
    applied[kind] = r.rowCount ?? 0;
  };
  const scope = '($1::uuid IS NULL OR l.tenant_id = $1)';
  await run(
    'api_key.revoked',
    `UPDATE api_keys k SET revoked_at = l.revoked_at
       FROM (SELECT tenant_id, entity_id, min((data->>'revokedAt')::timestamptz) AS revoked_at
               FROM security_ledger l WHERE kind = 'api_key.revoked' AND ${scope} GROUP BY 1, 2) l
      WHERE k.tenant_id = l.tenant_id AND k.id = l.entity_id AND k.revoked_at IS NULL`,
    [t],
  );
  await run(
    'user.session_epoch',
    `UPDATE users u SET session_epoch = l.epoch
       FROM (SELECT tenant_id, entity_id, max((data->>'epoch')::int) AS epoch
               FROM security_ledger l WHERE kind = 'user.session_epoch' AND ${scope} GROUP BY 1, 2) l
      WHERE u.tenant_id = l.tenant_id AND u.id = l.entity_id AND u.session_epoch < l.epoch`,
    [t],
  );
  const latest = (kind: string) =>
    `(SELECT DISTINCT ON (tenant_id, entity_id) tenant_id, entity_id, data FROM security_ledger l
       WHERE kind = '${kind}' AND ${scope} AND at >= $2 ORDER BY tenant_id, entity_id, at DESC, id DESC) l`;
  await run(
    'user.disabled',
    `UPDATE users u SET disabled_at = (l.data->>'disabledAt')::timestamptz FROM ${latest('user.disabled')}
      WHERE u.tenant_id = l.tenant_id AND u.id = l.entity_id AND u.disabled_at IS NULL`,
    [t, since],
  );
  await run(
    'user.password',
    `UPDATE users u SET password_hash = l.data->>'passwordHash' FROM ${latest('user.password')}
      WHERE u.tenant_id = l.tenant_id AND u.id = l.entity_id
        AND u.password_hash IS DISTINCT FROM l.data->>'passwordHash'`,
    [t, since],
  );
  // Never raises a role: only moves it down (or sideways) to what the downgrade left.
  await run(
    'user.role_downgrade',
    `UPDATE users u SET role = l.data->>'role' FROM ${latest('user.role_downgrade')}
      WHERE u.tenant_id = l.tenant_id AND u.id = l.entity_id AND u.role <> l.data->>'role'
        AND attendux_role_rank(u.role) >= attendux_role_rank(l.data->>'role')`,
    [t, since],
  );
  // DSAR erasures: every one ever recorded, whatever the restored point (src/core/dsar/reapply.ts).
  applied['dsar.erasure'] = await reapplyErasures(c, t);
  Object.assign(applied, await reapplyDataLedger(c, t));
  await c.query("SELECT set_config('attendux.ledger_replay', 'off', true)");
  // Recorded (replay off): a later restore from an older backup must end sessions issued after this one too.
  const ended = await c.query(
    'UPDATE users SET session_epoch = session_epoch + 1 WHERE $1::uuid IS NULL OR tenant_id = $1',
    [t],
  );
  const { rows } = await c.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM security_ledger l WHERE ' + scope,
    [t],
  );
  return {
    entries: rows[0]!.n,
    applied,
    unknownKinds: scoped.filter((e) => !(LEDGER_KINDS as readonly string[]).includes(e.kind)).length,
    sessionsEnded: ended.rowCount ?? 0,
  };
}

/** The live database's ledger, or nothing when it is gone or predates the ledger (a new server). */
export async function readLiveLedger(adminUrl: string): Promise<LedgerEntry[]> {
  let c: pg.Client;
  try {
    c = await connectClient(adminUrl, 'attendux-restore');
  } catch {
    // the live database is gone (a new server): nothing to merge
    return [];
  }
  try {
    return await readLedgerFromDb(c);
  } catch (err) {
    // A live database that predates the ledger has no table (42P01): nothing to merge. Anything else would
    // silently drop entries the restore must re-apply.
    if ((err as { code?: string }).code !== '42P01')
      warnSwallowed('the live database ledger not read; the mirror file alone is re-applied', err);
    return [];
  } finally {
    await c.end().catch(() => undefined); // closing the client after the read
  }
}

/** The ledger a restore re-applies: the live database's (when reachable) merged with the data dir's mirror. */
export async function collectLedger(opts: {
  liveAdminUrl?: string;
  dataDir: string;
}): Promise<LedgerEntry[]> {
  const live = opts.liveAdminUrl ? await readLiveLedger(opts.liveAdminUrl) : [];
  const file = await readLedgerFile(ledgerPath(opts.dataDir)).catch((err: unknown) => {
    // readLedgerFile already answers [] for a missing mirror: this is an unreadable one.
    warnSwallowed('ledger mirror not read; its entries are not re-applied', err);
    return [] as LedgerEntry[];
  });
  return mergeLedgers(live, file);
}

/**
 * What every restore that builds a database calls before handing it back: collect the ledger from the live
 * database (when it is reachable and is not the target) and from the mirror file in the data dir (on a new
 * server, the one `restore --config-only` brought back from the newest config backup), apply it to the
 * target in one transaction, and bring the mirror up to date.
 */
export async function reapplyLedger(opts: {
  targetUrl: string;
  liveAdminUrl?: string;
  dataDir: string;
  pointInTime: string;
}): Promise<ApplyLedgerResult> {
  const entries = await collectLedger(opts);
  const c = await connectClient(opts.targetUrl, 'attendux-restore');
  try {
    await c.query('BEGIN');
    const r = await applyLedger(c, entries, { pointInTime: opts.pointInTime });
    await c.query('COMMIT');
    return r;
  } catch (err) {
    // ROLLBACK of a failed transaction: its error is rethrown
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    await c.end().catch(() => undefined); // closing the client: the outcome is decided
  }
}

/** Company restore: the same, inside the caller's transaction on the live database. */
export async function reapplyTenantLedger(
  c: Queryable,
  opts: { tenantId: string; dataDir: string; pointInTime: string },
): Promise<ApplyLedgerResult> {
  const file = await readLedgerFile(ledgerPath(opts.dataDir)).catch((err: unknown) => {
    // readLedgerFile already answers [] for a missing mirror: this is an unreadable one.
    warnSwallowed('ledger mirror not read; its entries are not re-applied', err);
    return [] as LedgerEntry[];
  });
  const entries = mergeLedgers(await readLedgerFromDb(c, opts.tenantId), file);
  return applyLedger(c, entries, { pointInTime: opts.pointInTime, tenantId: opts.tenantId });
}

/** The mirror as a config backup entry: brought up to date first when the database is reachable. */
export async function ledgerBackupEntry(
  dataDir: string,
  q?: Queryable,
): Promise<{ name: string; content: Buffer } | undefined> {
  if (q)
    await syncLedgerFile(q, dataDir).catch((err: unknown) => warnSwallowed('ledger mirror not synced', err));
  const content = await readFile(ledgerPath(dataDir)).catch((err: NodeJS.ErrnoException) => {
    // No mirror yet: nothing to back up. An unreadable one would leave the ledger out of the backup.
    if (err.code !== 'ENOENT') warnSwallowed('ledger mirror not in the config backup', err);
    return undefined;
  });
  return content ? { name: `ledger/${LEDGER_FILE}`, content } : undefined;
}

/**
 * `restore --config-only`: merge the ledger of the config backup into the data dir's mirror (append what
 * it lacks; never removes anything), so that the database restore that follows on a new server re-applies
 * it. Returns the number of entries added.
 */
export async function restoreLedgerMirror(fromFile: string, dataDir: string): Promise<number> {
  const path = ledgerPath(dataDir);
  const known = new Set((await readLedgerFile(path)).map((e) => e.id));
  const add = (await readLedgerFile(fromFile)).filter((e) => !known.has(e.id));
  await appendLedgerFile(path, add);
  return add.length;
}

/** Where a config file's data dir is (its `dataDir`, relative to the config file's directory). */
export function dataDirOf(configText: string, configDir: string): string {
  let d: unknown;
  try {
    d = (JSON.parse(configText) as { dataDir?: unknown }).dataDir;
  } catch {
    // an unparseable config: the default data dir
    d = undefined;
  }
  const dir = typeof d === 'string' && d ? d : '/var/lib/attendux';
  return isAbsolute(dir) ? dir : resolve(configDir, dir);
}

/**
 * Run a CLI operation that may write ledger entries, then bring the mirror up to date (best effort: the
 * database holds the entries, and every config backup syncs the mirror again).
 */
export async function withLedgerSync<T>(
  install: { admin: Queryable; loaded: { config: { dataDir: string } } },
  op: Promise<T>,
): Promise<T> {
  const r = await op;
  await syncLedgerFile(install.admin, install.loaded.config.dataDir).catch((err: unknown) =>
    warnSwallowed('ledger mirror not synced (the next config backup syncs it)', err),
  );
  return r;
}
