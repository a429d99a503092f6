import { createHash, timingSafeEqual, type Hash } from 'node:crypto';
import pg from 'pg';
import { AttenduxError } from '../../errors.js';

/**
 * The MAC of an audit entry: HMAC-SHA256 under the install's audit key (secrets `auditKey`, never in the
 * database) over a domain tag and the entry's fields, each as a 4-byte big-endian length (0xFFFFFFFF for NULL)
 * followed by its UTF-8 bytes, the previous entry's MAC last. That is exactly how PostgreSQL's binary COPY
 * encodes a row's fields, so a verifier can MAC the bytes it streams without decoding them (src/core/audit/
 * verify.ts). Lengths make the encoding unambiguous (the old `\x1f`-joined text was not).
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
 * HMAC with the key's inner and outer pad states computed once: each MAC then costs two hash copies instead
 * of re-deriving them (the verify benchmark's hot loop).
 */
export class AuditMac {
  private readonly inner: Hash;
  private readonly outer: Hash;

  constructor(key: Buffer) {
    if (key.length < 32) throw new AttenduxError('SECRETS_INVALID', 'the audit key must be 32 bytes or more');
    const k = key.length > 64 ? createHash('sha256').update(key).digest() : key;
    const ipad = Buffer.alloc(64, 0x36);
    const opad = Buffer.alloc(64, 0x5c);
    for (let i = 0; i < k.length; i++) {
      ipad[i]! ^= k[i]!;
      opad[i]! ^= k[i]!;
    }
    this.inner = createHash('sha256').update(ipad).update(MAC_TAG);
    this.outer = createHash('sha256').update(opad);
  }

  /** MAC of already encoded fields (a slice of a binary COPY row). */
  ofEncoded(encoded: Buffer): Buffer {
    const ih = this.inner.copy().update(encoded).digest();
    return this.outer.copy().update(ih).digest();
  }

  of(f: MacFields): Buffer {
    return this.ofEncoded(encodeFields(f));
  }
}

export function encodeFields(f: MacFields): Buffer {
  const parts: (Buffer | string | null)[] = [
    f.tenantId,
    String(f.seq),
    String(f.atUs),
    f.actor,
    f.action,
    f.entityType,
    f.entityId,
    f.ipHash,
    f.uaHash,
    f.details,
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
