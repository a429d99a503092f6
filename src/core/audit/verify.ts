import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import pg from 'pg';
import type { Pool } from '../../db/pool.js';
import { AttenduxError } from '../../errors.js';
import type { SourcedCheckpoint } from './checkpoints.js';
import { walkCopy, walkWhere } from './copy-parser.js';
import {
  ChainWalker,
  goneChains,
  MAX_BREAKS,
  validateAnchors,
  type Anchors,
  type VerifyResult,
  type WalkOptions,
} from './walker.js';

export {
  ChainWalker,
  type BreakKind,
  type ChainBreak,
  type VerifyResult,
  type WalkOptions,
} from './walker.js';

export interface DatabaseWalkOptions extends WalkOptions {
  since?: Date;
  /**
   * Verify threads (each with its own connection in the same snapshot). Default: one per core but one, up
   * to 4, when the table holds PARALLEL_FROM entries or more and every chain is walked; 1 otherwise.
   */
  parallel?: number;
}

/** Below this many entries a walk is over before worker threads would have started. */
export const PARALLEL_FROM = 200_000;

/** Connection settings of a client, for a worker to open one like it (pg keeps them, its types do not say). */
interface ConnParams {
  user?: string;
  password?: string;
  host?: string;
  port?: number;
  database?: string;
  ssl?: unknown;
}

/** What a verify worker gets (verify-worker.ts). */
export interface WorkerInput {
  conn: ConnParams;
  snapshot: string;
  where: string[];
  /** Tenant id ranges [from, to) to take in turn; `next` is the shared index of the next one to take. */
  ranges: { from?: string; to?: string }[];
  next: SharedArrayBuffer;
  auditKey: Uint8Array;
  publicKey: string;
  trustFirstLink: boolean;
  anchors: SourcedCheckpoint[];
}

export type WorkerOutput = VerifyResult & { seen: string[] };

/** Sixteen ranges by the first hex digit of the tenant id (ids are random, so about even). */
const RANGES = Array.from({ length: 16 }, (_, i) => ({
  from: i ? `${i.toString(16)}0000000-0000-0000-0000-000000000000` : undefined,
  to: i < 15 ? `${(i + 1).toString(16)}0000000-0000-0000-0000-000000000000` : undefined,
}));

async function defaultParallel(c: pg.ClientBase, o: DatabaseWalkOptions): Promise<number> {
  if (o.tenantId) return 1; // one chain is one sequence: it cannot be split
  // One walk already keeps two cores busy (PostgreSQL producing rows, this thread checking them); more
  // threads pay off only with cores to spare (measured on 2 shared cores: slower, see README "Audit log").
  const threads = Math.min(4, availableParallelism() - 1);
  if (threads < 2) return 1;
  const { rows } = await c.query<{ n: number }>(
    "SELECT reltuples::float8 AS n FROM pg_class WHERE oid = 'audit_log'::regclass",
  );
  return (rows[0]?.n ?? 0) >= PARALLEL_FROM ? threads : 1;
}

/** Verify the chains in the database inside the caller's repeatable-read transaction on `c`. */
export async function verifyDatabase(c: pg.ClientBase, o: DatabaseWalkOptions): Promise<VerifyResult> {
  const opts = { ...o, trustFirstLink: o.trustFirstLink ?? !!o.since };
  const anchors = validateAnchors(opts);
  const where = walkWhere(opts);
  const n = o.parallel ?? (await defaultParallel(c, opts));
  if (n <= 1 || opts.tenantId) {
    const walker = new ChainWalker(opts, anchors);
    await walkCopy(c, walker, where);
    return walker.finish();
  }
  return verifyParallel(c, opts, anchors, where, n);
}

/** The worker thread; under tsx or vitest this module is TypeScript, and so is the worker, loaded by tsx. */
function startWorker(input: WorkerInput): Worker {
  const url = new URL(`./verify-worker.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url);
  if (url.pathname.endsWith('.js')) return new Worker(url, { workerData: input });
  const boot = `import('tsx/esm/api').then((t) => t.tsImport(${JSON.stringify(url.href)}, ${JSON.stringify(url.href)}))`;
  return new Worker(boot, { eval: true, workerData: input });
}

function runWorker(input: WorkerInput): { done: Promise<WorkerOutput>; stop: () => void } {
  const w = startWorker(input);
  const done = new Promise<WorkerOutput>((resolve, reject) => {
    w.once('message', (m: WorkerOutput | { error: string }) =>
      'error' in m ? reject(new AttenduxError('DB_ERROR', m.error)) : resolve(m),
    );
    w.once('error', reject);
    w.once('exit', (code) => reject(new AttenduxError('INTERNAL', `audit verify worker exited (${code})`)));
  });
  return { done, stop: () => void w.terminate() };
}

/**
 * Chains are independent, so `n` threads walk them side by side, each on its own connection, all in the
 * snapshot this transaction exports (so together they read exactly what one walk would), taking tenant id
 * ranges in turn. The main thread keeps the checkpoint checks that span chains: signatures (once), and
 * chains that are gone.
 */
async function verifyParallel(
  c: pg.ClientBase,
  o: DatabaseWalkOptions,
  anchors: Anchors,
  where: string[],
  n: number,
): Promise<VerifyResult> {
  const { rows } = await c.query<{ s: string }>('SELECT pg_export_snapshot() AS s');
  const p = (c as unknown as { connectionParameters: ConnParams }).connectionParameters;
  const input: WorkerInput = {
    conn: {
      user: p.user,
      password: p.password,
      host: p.host,
      port: p.port,
      database: p.database,
      ssl: p.ssl,
    },
    snapshot: rows[0]!.s,
    where,
    ranges: RANGES,
    next: new SharedArrayBuffer(4),
    auditKey: o.mac.key,
    publicKey: o.publicKey,
    trustFirstLink: !!o.trustFirstLink,
    anchors: [...anchors.byTenant.values()].flatMap((m) => [...m.values()]),
  };
  const workers = Array.from({ length: n }, () => runWorker(input));
  let parts: WorkerOutput[];
  try {
    parts = await Promise.all(workers.map((w) => w.done));
  } finally {
    for (const w of workers) w.stop();
  }
  return mergeParts(parts, anchors, o.tenantId);
}

function mergeParts(parts: WorkerOutput[], anchors: Anchors, tenantId?: string): VerifyResult {
  const seen = new Set(parts.flatMap((x) => x.seen));
  const byTenant = (a: { tenantId: string }, b: { tenantId: string }) =>
    a.tenantId < b.tenantId ? -1 : a.tenantId > b.tenantId ? 1 : 0;
  // Array.sort is stable: within a chain the breaks stay in walk order.
  const walked = parts.flatMap((x) => x.breaks).sort(byTenant);
  const all = [...anchors.breaks, ...walked, ...goneChains(anchors, seen, tenantId)];
  const moreBreaks = parts.reduce((a, x) => a + x.moreBreaks, 0) + Math.max(0, all.length - MAX_BREAKS);
  return {
    ok: all.length === 0 && moreBreaks === 0,
    checked: parts.reduce((a, x) => a + x.checked, 0),
    chains: parts.reduce((a, x) => a + x.chains, 0),
    checkpoints: anchors.count,
    breaks: all.slice(0, MAX_BREAKS),
    moreBreaks,
    warnings: anchors.warnings,
    heads: parts.flatMap((x) => x.heads).sort(byTenant),
  };
}

/** `audit verify`'s read: one read-only repeatable-read snapshot (a pool lends a client for it). */
export async function verifyWith(pool: Pool | pg.ClientBase, o: DatabaseWalkOptions): Promise<VerifyResult> {
  const c = pool instanceof pg.Pool ? await pool.connect() : null;
  const client = (c ?? pool) as pg.ClientBase;
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      return await verifyDatabase(client, o);
    } finally {
      await client.query('COMMIT').catch(() => undefined); // ending a read-only transaction: nothing to lose
    }
  } finally {
    c?.release();
  }
}
