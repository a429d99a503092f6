import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import type pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { AttenduxError } from '../../errors.js';
import { PG_EPOCH_US } from './mac.js';
import type { ChainWalker, RowAt } from './walker.js';

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const PURGE = Buffer.from('audit.purge');
const NFIELDS = 13;

/** A binary int8 as a number (every seq and time stamp fits in 2^53). */
function int8At(b: Buffer, at: number): number {
  return b.readInt32BE(at) * 4294967296 + b.readUInt32BE(at + 4);
}

function uuidText(b: Buffer): string {
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * Parses PostgreSQL's binary COPY of VERIFY_SELECT row by row, handing each entry to the walker with its MAC
 * input as a slice of the stream (no decoding, no copies for whole rows inside one chunk).
 */
class CopyParser extends Writable {
  private buf: Buffer = Buffer.alloc(0);
  private headerDone = false;
  private tenant: Buffer = Buffer.alloc(0);
  private readonly ends = new Int32Array(NFIELDS);
  private readonly starts = new Int32Array(NFIELDS);
  /** Reused for every row: the walker reads it before the next one. */
  private readonly r: RowAt = { seq: 0, atUs: 0, version: 0, enc: 0, prev: 0, prevEnd: 0, mac: 0, end: 0 };

  private readonly w: ChainWalker;

  constructor(w: ChainWalker) {
    super();
    this.w = w;
  }

  override _write(chunk: Buffer, _enc: string, cb: (err?: Error) => void) {
    try {
      this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
      this.parse();
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  /** Where the row at `off` ends (its field bounds in starts/ends), or -1 when it is not complete yet. */
  private row(b: Buffer, off: number): number {
    const { starts, ends } = this;
    let p = off + 2;
    for (let i = 0; i < NFIELDS; i++) {
      if (p + 4 > b.length) return -1;
      const len = b.readInt32BE(p);
      starts[i] = p + 4;
      p += 4 + (len < 0 ? 0 : len);
      ends[i] = len < 0 ? -1 : p;
    }
    return p > b.length ? -1 : p;
  }

  private parse() {
    const b = this.buf;
    let off = 0;
    if (!this.headerDone) {
      if (b.length < 19) return;
      if (!b.subarray(0, 11).equals(SIGNATURE))
        throw new AttenduxError('DB_ERROR', 'not a binary COPY stream');
      off = 19 + b.readInt32BE(15);
      this.headerDone = true;
    }
    const { starts, ends } = this;
    while (off + 2 <= b.length) {
      if (b.readInt16BE(off) === -1) {
        off += 2;
        break;
      }
      const p = this.row(b, off);
      if (p < 0) break;
      // compare in place: a new chain starts rarely, a row of the same chain allocates nothing here
      if (b.compare(this.tenant, 0, this.tenant.length, starts[0], ends[0]) !== 0) {
        this.tenant = Buffer.from(b.subarray(starts[0], ends[0]));
        this.w.startTenant(uuidText(this.tenant));
      }
      // details is jsonb in binary: a version byte, then the text
      const purge =
        ends[4]! - starts[4]! === PURGE.length && b.compare(PURGE, 0, PURGE.length, starts[4], ends[4]) === 0
          ? b.toString('utf8', starts[9]! + 1, ends[9])
          : undefined;
      const r = this.r;
      r.seq = int8At(b, starts[1]!);
      r.atUs = int8At(b, starts[2]!) + PG_EPOCH_US;
      r.version = b.readInt16BE(starts[12]);
      // the MAC input: fields 0..10 with their length words, from the first length word to prev_hash's end
      // (prev_hash and hash are NOT NULL: both have their bytes)
      r.enc = off + 2;
      r.prev = starts[10]!;
      r.prevEnd = ends[10]!;
      r.mac = starts[11]!;
      r.end = ends[11]!;
      this.w.entryAt(b, r, purge);
      off = p;
    }
    // Keep the unparsed tail (a row split across chunks); copy it so the old chunk can be released.
    this.buf = off >= b.length ? Buffer.alloc(0) : Buffer.from(b.subarray(off));
  }
}

/** Field order = the MAC's field order (mac.ts), then hash and mac_version; raw columns, no casts. */
export const VERIFY_SELECT = `SELECT tenant_id, seq, at, actor, action, entity_type, entity_id, ip_hash, ua_hash, details,
       prev_hash, hash, mac_version
  FROM audit_log`;

const lit = (v: string) => `'${v.replace(/'/g, "''")}'`;

/**
 * The WHERE conditions of a walk. COPY takes no parameters: every value is validated (uuid, ISO time) and
 * quoted as a literal.
 */
export function walkWhere(o: { tenantId?: string; since?: Date; from?: string; to?: string }): string[] {
  const uuid = (v: string) => {
    if (!/^[0-9a-f-]{36}$/i.test(v)) throw new AttenduxError('USAGE', 'bad tenant id');
    return `${lit(v)}::uuid`;
  };
  const where: string[] = [];
  if (o.tenantId) where.push(`tenant_id = ${uuid(o.tenantId)}`);
  if (o.from) where.push(`tenant_id >= ${uuid(o.from)}`);
  if (o.to) where.push(`tenant_id < ${uuid(o.to)}`);
  if (o.since) where.push(`at >= ${lit(o.since.toISOString())}::timestamptz`);
  return where;
}

/** Stream the entries `where` selects, ordered by chain, through the walker (inside the caller's transaction). */
export async function walkCopy(c: pg.ClientBase, walker: ChainWalker, where: string[]): Promise<void> {
  const sql = `COPY (${VERIFY_SELECT} ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
                ORDER BY audit_log.tenant_id, audit_log.seq) TO STDOUT (FORMAT binary)`;
  // Walk the primary key's index instead of sorting: the heap is in append order, so this reads it nearly
  // sequentially and streams from the first row (measured: a sort costs 1.6x the whole walk).
  await c.query('SET LOCAL enable_sort = off');
  await pipeline(c.query(copyStreams.to(sql)), new CopyParser(walker));
}
