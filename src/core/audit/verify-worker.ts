/**
 * One thread of a parallel `audit verify` (verify.ts): opens its own connection, joins the main walk's
 * snapshot, and walks the tenant id ranges it takes in turn, then posts what it found.
 */
import { parentPort, workerData } from 'node:worker_threads';
import pg from 'pg';
import { AuditMac } from './mac.js';
import { walkCopy, walkWhere } from './copy-parser.js';
import { ChainWalker, trustedAnchors } from './walker.js';
import type { WorkerInput, WorkerOutput } from './verify.js';

const input = workerData as WorkerInput;

async function run(): Promise<WorkerOutput> {
  const c = new pg.Client({ ...input.conn, application_name: 'attendux-audit-verify' } as pg.ClientConfig);
  c.on('error', () => undefined);
  await c.connect();
  try {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    // A literal: SET TRANSACTION SNAPSHOT takes no parameters; the id is what pg_export_snapshot returned.
    if (!/^[0-9A-F-]+$/i.test(input.snapshot)) throw new Error('bad snapshot id');
    await c.query(`SET TRANSACTION SNAPSHOT '${input.snapshot}'`);
    const walker = new ChainWalker(
      {
        mac: new AuditMac(Buffer.from(input.auditKey)),
        publicKey: input.publicKey,
        checkpoints: [],
        trustFirstLink: input.trustFirstLink,
      },
      trustedAnchors(input.anchors),
    );
    const next = new Int32Array(input.next);
    for (let i = Atomics.add(next, 0, 1); i < input.ranges.length; i = Atomics.add(next, 0, 1)) {
      await walkCopy(c, walker, [...input.where, ...walkWhere(input.ranges[i]!)]);
    }
    await c.query('COMMIT');
    return { ...walker.finishPart(), seen: [...walker.seen] };
  } finally {
    await c.end().catch(() => undefined); // closing the client: the walk's outcome is decided
  }
}

run().then(
  (r) => parentPort!.postMessage(r),
  (err: Error) => parentPort!.postMessage({ error: err.message }),
);
