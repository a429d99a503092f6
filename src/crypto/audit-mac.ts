import { createHash, hash as hashOnce, timingSafeEqual } from 'node:crypto';
import pg from 'pg';
import { AttenduxError } from '../errors.js';

/**
 * The MAC of an audit entry: HMAC-SHA256 under the install's audit key (secrets `auditKey`, never in the
 * database) over a domain tag and the entry's fields in PostgreSQL's binary wire format, each as a 4-byte
 * big-endian length (0xFFFFFFFF for NULL) and its bytes: tenant_id (uuid, 16 bytes), seq (int8), at
 * (timestamptz: int8 microseconds since 2000-01-01 UTC), actor, action, entity_type, entity_id, ip_hash,
 * ua_hash (UTF-8 text), details (jsonb: version byte 1 and the normalised jsonb text), prev_hash (the previous
 * entry's MAC, raw). That is byte for byte how binary COPY sends those columns, so a verifier MACs the bytes
 * it streams without decoding or casting anything (src/core/audit/verify.ts). It sits in src/crypto so that
 * src/db/queries/audit.ts can MAC an entry without importing src/core. Lengths make the encoding
 * unambiguous (the old `\x1f`-joined text was not).
 */
export const MAC_TAG = Buffer.from('attendux-audit-mac-v2\n');

export interface MacFields {
  tenantId: string;
  seq: number;
  /** Microseconds since the epoch, as PostgreSQL computes them from the stored time stamp. */
  atUs: number;
  actor: string;
  action: string;
  entityType: string | null;
  entityId: string | null;
  ipHash: string | null;
  uaHash: string | null;
  /** The details as PostgreSQL prints the stored jsonb (`details::text`). */
  details: string;
  prevMac: Buffer;
}

/**
 * HMAC-SHA256 (RFC 2104) with the padded key kept in reusable buffers and crypto.hash's one-shot digests:
 * H(K^opad || H(K^ipad || tag || m)). Measured 4-5x faster per entry than hash.copy() or createHmac, which
 * allocate two hash objects per MAC (the verify benchmark's hot loop; the result is the same HMAC).
 */
export class AuditMac {
  private inner: Buffer;
  private readonly outer: Buffer;
  private readonly head: number;
  /** The key itself, for a verify worker thread to build its own (it never leaves the process). */
  readonly key: Buffer;

  constructor(key: Buffer) {
    if (key.length < 32) throw new AttenduxError('SECRETS_INVALID', 'the audit key must be 32 bytes or more');
    this.key = key;
    const k = key.length > 64 ? createHash('sha256').update(key).digest() : key;
    const ipad = Buffer.alloc(64, 0x36);
    const opad = Buffer.alloc(64, 0x5c);
    for (let i = 0; i < k.length; i++) {
      ipad[i]! ^= k[i]!;
      opad[i]! ^= k[i]!;
    }
    this.head = 64 + MAC_TAG.length;
    this.inner = Buffer.alloc(this.head + 4096);
    ipad.copy(this.inner, 0);
    MAC_TAG.copy(this.inner, 64);
    this.outer = Buffer.alloc(96);
    opad.copy(this.outer, 0);
  }

  /**
   * Is `mac` the MAC of these encoded fields? The bulk check of `audit verify`: the same HMAC as ofEncoded,
   * compared in place with Buffer.compare, so no slice is made. Both hashes stay in node:crypto: a hand-written
   * SHA-256 block for the outer hash measured ~0.4 µs per entry faster, but crypto code we would have to keep
   * correct ourselves is not worth 14 % of a verify (README, Audit log performance). Not constant-time, which a
   * verifier need not be: it answers no one who could learn the MAC from its timing.
   */
  verifyEncoded(encoded: Buffer, mac: Buffer): boolean {
    return this.verifyAt(encoded, 0, encoded.length, 0, 0, mac);
  }

  /** verifyEncoded of b[start, end) against the MAC b[macStart, macEnd) (or `mac`), without slicing b. */
  verifyAt(b: Buffer, start: number, end: number, macStart: number, macEnd: number, mac = b): boolean {
    if (mac !== b) {
      macStart = 0;
      macEnd = mac.length;
    }
    if (macEnd - macStart !== 32) return false;
    this.innerDigest(b, start, end).copy(this.outer, 64);
    return hashOnce('sha256', this.outer, 'buffer').compare(mac, macStart, macEnd) === 0;
  }

  private innerDigest(encoded: Buffer, start = 0, end = encoded.length): Buffer {
    const need = this.head + end - start;
    if (need > this.inner.length) {
      const bigger = Buffer.alloc(need * 2);
      this.inner.copy(bigger, 0, 0, this.head);
      this.inner = bigger;
    }
    encoded.copy(this.inner, this.head, start, end);
    return hashOnce('sha256', this.inner.subarray(0, need), 'buffer');
  }

  /** MAC of already encoded fields (a slice of a binary COPY row). */
  ofEncoded(encoded: Buffer): Buffer {
    this.innerDigest(encoded).copy(this.outer, 64);
    return hashOnce('sha256', this.outer, 'buffer');
  }

  of(f: MacFields): Buffer {
    return this.ofEncoded(encodeFields(f));
  }
}

/** Microseconds between the Unix epoch and PostgreSQL's (2000-01-01). */
export const PG_EPOCH_US = 946_684_800_000_000;

function int8(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt(n));
  return b;
}

export function encodeFields(f: MacFields): Buffer {
  const parts: (Buffer | string | null)[] = [
    Buffer.from(f.tenantId.replace(/-/g, ''), 'hex'),
    int8(f.seq),
    int8(f.atUs - PG_EPOCH_US),
    f.actor,
    f.action,
    f.entityType,
    f.entityId,
    f.ipHash,
    f.uaHash,
    Buffer.concat([Buffer.from([1]), Buffer.from(f.details, 'utf8')]),
    f.prevMac,
  ];
  const bufs: Buffer[] = [];
  for (const p of parts) {
    const len = Buffer.alloc(4);
    if (p === null) {
      len.writeInt32BE(-1);
      bufs.push(len);
      continue;
    }
    const b = typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
    len.writeInt32BE(b.length);
    bufs.push(len, b);
  }
  return Buffer.concat(bufs);
}

export function macEquals(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Which audit key a connection writes with. Core functions take a pool or client, not the install, so the
 * key travels with the connection: openInstall and the server register their pools (and every client those
 * pools create); a connection nobody registered falls back to the one key registered in this process, and
 * with none or several different ones appending fails loudly rather than MAC under a wrong key.
 */
const keys = new WeakMap<object, AuditMac>();
const distinct = new Map<string, AuditMac>();

export function registerAuditKey(target: object, keyBase64: string): AuditMac {
  let mac = distinct.get(keyBase64);
  if (!mac) distinct.set(keyBase64, (mac = new AuditMac(Buffer.from(keyBase64, 'base64'))));
  keys.set(target, mac);
  if (target instanceof pg.Pool) {
    const m = mac;
    target.on('connect', (client) => keys.set(client, m));
  }
  return mac;
}

export function auditMacFor(q: object): AuditMac {
  const mac = keys.get(q) ?? (distinct.size === 1 ? [...distinct.values()][0] : undefined);
  if (!mac) {
    throw new AttenduxError(
      'INTERNAL',
      distinct.size
        ? 'several audit keys are loaded and this connection has none registered'
        : 'no audit key is loaded: the install was not opened',
    );
  }
  return mac;
}
