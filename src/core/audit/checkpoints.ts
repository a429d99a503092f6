import { open, readFile, readdir, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Queryable } from '../../db/pool.js';
import { publicKeyOf, signBytes, verifyBytes } from '../../crypto/signing.js';

/**
 * A signed checkpoint: a company's chain head (seq, MAC) at a time, signed by the install signing key. Kept
 * outside the database (an append-only file in the data dir, every backup's sidecar and manifest, every
 * export), so that a rewrite of the chain inside the database, even one with the audit key, is out of step
 * with the anchors it cannot reach.
 */
export interface Checkpoint {
  v: 1;
  tenantId: string;
  seq: number;
  /** hex */
  mac: string;
  at: string;
  reason: 'interval' | 'backup' | 'purge' | 'manual' | 'export';
  /** ed25519:… of the signer */
  key: string;
  /** base64 Ed25519 signature over checkpointBytes() */
  sig: string;
}

export type CheckpointBody = Omit<Checkpoint, 'v' | 'key' | 'sig'>;

export function checkpointBytes(c: CheckpointBody): string {
  return ['attendux-audit-checkpoint-v1', c.tenantId, String(c.seq), c.mac, c.at, c.reason].join('\n');
}

export function signCheckpoint(signingKey: string, body: CheckpointBody): Checkpoint {
  return {
    v: 1,
    ...body,
    key: publicKeyOf(signingKey),
    sig: signBytes(signingKey, checkpointBytes(body)),
  };
}

/** Valid and signed by `publicKey` (the install's key: a checkpoint signed by another key proves nothing). */
export function checkpointValid(c: Checkpoint, publicKey: string): boolean {
  return (
    c.v === 1 &&
    c.key === publicKey &&
    typeof c.tenantId === 'string' &&
    Number.isSafeInteger(c.seq) &&
    /^[0-9a-f]{64}$/.test(c.mac) &&
    verifyBytes(publicKey, checkpointBytes(c), c.sig)
  );
}

export const checkpointFile = (dataDir: string) => join(dataDir, 'audit', 'checkpoints.jsonl');

/**
 * Append checkpoints to the file: opened O_APPEND (never rewritten, never truncated by attendux), one JSON
 * line each, fsynced before returning.
 */
export async function appendCheckpoints(dataDir: string, cps: Checkpoint[]): Promise<void> {
  if (!cps.length) return;
  const path = checkpointFile(dataDir);
  await mkdir(join(dataDir, 'audit'), { recursive: true, mode: 0o700 });
  const fh = await open(path, 'a', 0o600);
  try {
    await fh.write(cps.map((c) => JSON.stringify(c)).join('\n') + '\n');
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export interface SourcedCheckpoint extends Checkpoint {
  source: string;
}

function parseLines(text: string, source: string): SourcedCheckpoint[] {
  const out: SourcedCheckpoint[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const c = JSON.parse(line) as Checkpoint;
      if (c && typeof c === 'object') out.push({ ...c, source });
    } catch {
      // A torn last line (crash while appending) is skipped, never fatal.
    }
  }
  return out;
}

export async function readCheckpointFile(path: string): Promise<SourcedCheckpoint[]> {
  const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw err;
  });
  return parseLines(text, path);
}

/** Checkpoints recorded in backup sidecars (`audit.checkpoints`, written by auditForBackup). */
export async function readBackupCheckpoints(backupDir: string): Promise<SourcedCheckpoint[]> {
  // no backup dir: no checkpoints from backups
  const names = await readdir(backupDir).catch(() => [] as string[]);
  const out: SourcedCheckpoint[] = [];
  for (const n of names.filter((x) => x.endsWith('.json') && !x.startsWith('last-run'))) {
    try {
      const s = JSON.parse(await readFile(join(backupDir, n), 'utf8')) as {
        audit?: { checkpoints?: Checkpoint[] };
      };
      for (const c of s.audit?.checkpoints ?? []) out.push({ ...c, source: join(backupDir, n) });
    } catch {
      // Not a sidecar, or damaged: backup verify reports those.
    }
  }
  return out;
}

export interface Head {
  tenantId: string;
  seq: number;
  mac: Buffer;
}

export async function chainHeads(q: Queryable): Promise<Head[]> {
  const { rows } = await q.query<{ tenant_id: string; seq: number; hash: Buffer }>(
    'SELECT tenant_id, seq, hash FROM attendux_audit_heads() ORDER BY tenant_id',
  );
  return rows.map((r) => ({ tenantId: r.tenant_id, seq: r.seq, mac: r.hash }));
}

/** Sign the current head of every chain (optionally only those that moved since `last`). */
export async function checkpointHeads(
  q: Queryable,
  signingKey: string,
  reason: Checkpoint['reason'],
  last?: Map<string, number>,
  now = new Date(),
): Promise<Checkpoint[]> {
  const heads = await chainHeads(q);
  const out: Checkpoint[] = [];
  for (const h of heads) {
    if (last && last.get(h.tenantId) === h.seq) continue;
    out.push(
      signCheckpoint(signingKey, {
        tenantId: h.tenantId,
        seq: h.seq,
        mac: h.mac.toString('hex'),
        at: now.toISOString(),
        reason,
      }),
    );
    last?.set(h.tenantId, h.seq);
  }
  return out;
}

/**
 * The server's checkpointer: every `everyMinutes`, or as soon as `everyEntries` entries were appended, sign
 * the heads that moved and append them to the file. Failures are reported, never thrown into a request.
 */
export function startCheckpointer(opts: {
  q: Queryable;
  dataDir: string;
  signingKey: string;
  everyMinutes: number;
  everyEntries: number;
  onError: (err: unknown) => void;
}) {
  const last = new Map<string, number>();
  let appended = 0;
  let running: Promise<void> | undefined;
  const run = () => {
    if (running) return running;
    appended = 0;
    running = checkpointHeads(opts.q, opts.signingKey, 'interval', last)
      .then((cps) => appendCheckpoints(opts.dataDir, cps))
      .catch(opts.onError)
      .finally(() => (running = undefined));
    return running;
  };
  const timer = setInterval(() => void run(), opts.everyMinutes * 60_000);
  timer.unref();
  return {
    noteAppend(n = 1) {
      appended += n;
      if (appended >= opts.everyEntries) void run();
    },
    run,
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
export type Checkpointer = ReturnType<typeof startCheckpointer>;
