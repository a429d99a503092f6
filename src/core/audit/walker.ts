import type { AuditMac } from './mac.js';
import { checkpointValid, type Checkpoint, type SourcedCheckpoint } from './checkpoints.js';

export type BreakKind = 'edited' | 'missing' | 'inserted' | 'reordered' | 'checkpoint' | 'legacy';

export interface ChainBreak {
  tenantId: string;
  seq: number;
  /** ISO time of the entry, when there is one */
  at: string | null;
  kind: BreakKind;
  detail: string;
}

export interface VerifyResult {
  ok: boolean;
  checked: number;
  chains: number;
  /** Signed checkpoints the chains were compared with. */
  checkpoints: number;
  breaks: ChainBreak[];
  /** Breaks beyond MAX_BREAKS are counted, not listed. */
  moreBreaks: number;
  warnings: string[];
  /** Head (seq, MAC hex) of every chain walked: what a checkpoint of this state would sign. */
  heads: { tenantId: string; seq: number; mac: string }[];
}

export const MAX_BREAKS = 10_000;

export interface WalkOptions {
  mac: AuditMac;
  publicKey: string;
  checkpoints: SourcedCheckpoint[];
  /** The first entry's link cannot be checked (a --since range starts mid-chain). */
  trustFirstLink?: boolean;
  /** Only these chains are walked: checkpoints of other chains are not "missing". */
  tenantId?: string;
}

/** The signed checkpoints a walk compares with, by company and seq, after their signatures were checked. */
export interface Anchors {
  byTenant: Map<string, Map<number, SourcedCheckpoint>>;
  count: number;
  breaks: ChainBreak[];
  warnings: string[];
}

/**
 * Check every checkpoint's signature once (Ed25519, the costly part) and index the good ones: a bad signature
 * and two checkpoints that disagree about one entry are breaks in their own right.
 */
export function validateAnchors(o: Pick<WalkOptions, 'checkpoints' | 'publicKey' | 'tenantId'>): Anchors {
  const a: Anchors = { byTenant: new Map(), count: 0, breaks: [], warnings: [] };
  for (const c of o.checkpoints) {
    if (o.tenantId && c.tenantId !== o.tenantId) continue;
    if (c.key !== o.publicKey) {
      a.warnings.push(`${c.source}: checkpoint signed by another key (${c.key}), ignored`);
      continue;
    }
    if (!checkpointValid(c, o.publicKey)) {
      a.breaks.push({
        tenantId: String(c.tenantId),
        seq: Number(c.seq),
        at: null,
        kind: 'checkpoint',
        detail: `${c.source}: a checkpoint with a bad signature (forged or damaged)`,
      });
      continue;
    }
    indexAnchor(a, c);
  }
  return a;
}

function indexAnchor(a: Anchors, c: SourcedCheckpoint) {
  let m = a.byTenant.get(c.tenantId);
  if (!m) a.byTenant.set(c.tenantId, (m = new Map<number, SourcedCheckpoint>()));
  const had = m.get(c.seq);
  if (had && had.mac !== c.mac) {
    a.breaks.push({
      tenantId: c.tenantId,
      seq: c.seq,
      at: null,
      kind: 'checkpoint',
      detail: `two signed checkpoints disagree about entry ${c.seq} (${had.source}, ${c.source})`,
    });
  }
  m.set(c.seq, c);
  a.count++;
}

/** Anchors already validated elsewhere (a verify worker gets them from the main thread): index only. */
export function trustedAnchors(cps: SourcedCheckpoint[]): Anchors {
  const a: Anchors = { byTenant: new Map(), count: 0, breaks: [], warnings: [] };
  for (const c of cps) indexAnchor(a, c);
  a.breaks.length = 0; // the main thread reported disagreements already
  return a;
}

interface Tenant {
  id: string;
  firstSeq: number;
  /** hex of the first entry's prev_hash */
  firstPrev: string;
  lastSeq: number;
  /** a copy of the last entry's MAC (the stream's buffers are reused) */
  lastMac: Buffer;
  /** signed purge checkpoints found in this chain's audit.purge entries */
  purges: Checkpoint[];
  reportedLegacy: boolean;
  cps: Map<number, SourcedCheckpoint> | undefined;
}

/** Where one entry's parts are in a buffer, and the fields the walk reads (see entryAt). */
export interface RowAt {
  seq: number;
  atUs: number;
  version: number;
  enc: number;
  prev: number;
  prevEnd: number;
  mac: number;
  end: number;
}

const iso = (atUs: number) => new Date(atUs / 1000).toISOString();

/**
 * Walks chains entry by entry (ordered by company, then seq) and collects every break, not only the first:
 * a MAC that does not match the entry (edited, or forged without the key), a seq gap (entries deleted), a
 * link to a predecessor that is not the one before it (inserted or reordered), a signed checkpoint the chain
 * is out of step with (rewritten, or its newest entries deleted).
 */
export class ChainWalker {
  readonly breaks: ChainBreak[] = [];
  moreBreaks = 0;
  checked = 0;
  chains = 0;
  readonly warnings: string[];
  readonly heads: VerifyResult['heads'] = [];
  /** Every chain walked (a chain with a checkpoint that was not walked is gone). */
  readonly seen = new Set<string>();
  private cur: Tenant | undefined;
  private readonly anchors: Anchors;
  private readonly o: WalkOptions;

  constructor(o: WalkOptions, anchors?: Anchors) {
    this.o = o;
    this.anchors = anchors ?? validateAnchors(o);
    this.warnings = [...this.anchors.warnings];
    for (const b of this.anchors.breaks) this.add(b);
  }

  private add(b: ChainBreak) {
    if (this.breaks.length < MAX_BREAKS) this.breaks.push(b);
    else this.moreBreaks++;
  }

  startTenant(id: string) {
    this.finishTenant();
    this.chains++;
    this.seen.add(id);
    this.cur = {
      id,
      firstSeq: -1,
      firstPrev: '',
      lastSeq: -1,
      lastMac: Buffer.alloc(32),
      purges: [],
      reportedLegacy: false,
      cps: this.anchors.byTenant.get(id),
    };
  }

  /** One entry; `encoded` is its MAC input (fields through prev_hash), `purge` its details when audit.purge. */
  entry(
    seq: number,
    atUs: number,
    encoded: Buffer,
    prev: Buffer,
    hash: Buffer,
    version: number,
    purge?: string,
  ) {
    const b = Buffer.concat([encoded, hash]);
    const e = encoded.length;
    const r = { seq, atUs, version, enc: 0, prev: e - prev.length, prevEnd: e, mac: e, end: b.length };
    this.entryAt(b, r, purge);
  }

  /**
   * One entry as places in `b` (the COPY stream's buffer): its MAC input is b[enc, prevEnd), ending with
   * its prev_hash b[prev, prevEnd), and its MAC is b[mac, end). The hot path of `audit verify` (once per entry): no
   * Buffer, no closure, no string unless something is wrong.
   */
  entryAt(b: Buffer, r: RowAt, purge?: string) {
    const t = this.cur!;
    const { seq, atUs } = r;
    this.checked++;
    let linkOk = true;
    if (t.lastSeq < 0) {
      t.firstSeq = seq;
      t.firstPrev = b.toString('hex', r.prev, r.prevEnd);
      if (seq === 1 && r.prevEnd !== r.prev) linkOk = false;
    } else if (seq !== t.lastSeq + 1) {
      this.add({
        tenantId: t.id,
        seq,
        at: iso(atUs),
        kind: 'missing',
        detail:
          seq - t.lastSeq === 2
            ? `entry ${t.lastSeq + 1} is missing (deleted)`
            : `entries ${t.lastSeq + 1}..${seq - 1} are missing (deleted)`,
      });
      // the gap is the finding; the link across it cannot match
    } else {
      const n = t.lastMac.length;
      linkOk = r.prevEnd - r.prev === n && b.compare(t.lastMac, 0, n, r.prev, r.prevEnd) === 0;
    }
    if (r.version !== 2) this.legacy(t, seq, atUs);
    else if (!this.o.mac.verifyAt(b, r.enc, r.prevEnd, r.mac, r.end)) this.badMac(t, seq, atUs, linkOk);
    else if (!linkOk) {
      this.add({
        tenantId: t.id,
        seq,
        at: iso(atUs),
        kind: 'reordered',
        detail:
          'an authentic entry that does not follow the entry before it (moved, or its predecessor replaced)',
      });
    } else if (purge !== undefined) this.purgeRecord(t, purge);
    if (t.cps !== undefined) this.againstCheckpoint(t, seq, atUs, b, r);
    t.lastSeq = seq;
    if (t.lastMac.length !== r.end - r.mac) t.lastMac = Buffer.alloc(r.end - r.mac);
    b.copy(t.lastMac, 0, r.mac, r.end);
  }

  private legacy(t: Tenant, seq: number, atUs: number) {
    if (t.reportedLegacy) return;
    t.reportedLegacy = true;
    this.add({
      tenantId: t.id,
      seq,
      at: iso(atUs),
      kind: 'legacy',
      detail: 'entries still under the old unkeyed hash: run `attendux audit rechain`',
    });
  }

  private badMac(t: Tenant, seq: number, atUs: number, linkOk: boolean) {
    this.add({
      tenantId: t.id,
      seq,
      at: iso(atUs),
      kind: linkOk ? 'edited' : 'inserted',
      detail: linkOk
        ? 'the MAC does not match the entry (changed, or written without the audit key)'
        : 'neither the MAC nor the link to the previous entry match (an entry that was never in this chain)',
    });
  }

  private purgeRecord(t: Tenant, purge: string) {
    try {
      const cp = (JSON.parse(purge) as { checkpoint?: Checkpoint }).checkpoint;
      if (cp && checkpointValid(cp, this.o.publicKey) && cp.tenantId === t.id) t.purges.push(cp);
    } catch {
      // an unparseable purge record anchors nothing; the chain start check reports it
    }
  }

  private againstCheckpoint(t: Tenant, seq: number, atUs: number, b: Buffer, r: RowAt) {
    const cp = t.cps!.get(seq);
    if (cp && cp.mac !== b.toString('hex', r.mac, r.end)) {
      this.add({
        tenantId: t.id,
        seq,
        at: iso(atUs),
        kind: 'checkpoint',
        detail: `differs from the signed checkpoint of ${cp.at} in ${cp.source} (rewritten)`,
      });
    }
  }

  private finishTenant() {
    const t = this.cur;
    if (!t) return;
    this.cur = undefined;
    if (t.lastSeq < 0) return;
    this.heads.push({ tenantId: t.id, seq: t.lastSeq, mac: t.lastMac.toString('hex') });
    const cps = t.cps;
    if (t.firstSeq > 1 && !this.o.trustFirstLink) {
      const prevHex = t.firstPrev;
      const anchored =
        t.purges.some((p) => p.seq === t.firstSeq - 1 && p.mac === prevHex) ||
        [...(cps?.values() ?? [])].some(
          (c) => c.reason === 'purge' && c.seq === t.firstSeq - 1 && c.mac === prevHex,
        );
      if (!anchored) {
        this.add({
          tenantId: t.id,
          seq: t.firstSeq,
          at: null,
          kind: 'missing',
          detail: `entries 1..${t.firstSeq - 1} are missing and no signed purge record covers them`,
        });
      }
    }
    let newest: SourcedCheckpoint | undefined;
    for (const c of cps?.values() ?? []) if (c.seq > t.lastSeq && (!newest || c.seq > newest.seq)) newest = c;
    if (newest) {
      this.add({
        tenantId: t.id,
        seq: t.lastSeq + 1,
        at: null,
        kind: 'missing',
        detail: `the chain ends at ${t.lastSeq} but ${newest.source} has a signed checkpoint at ${newest.seq} (${newest.at}): the newest entries were deleted`,
      });
    }
  }

  /** The chains walked so far, without the check for chains that are gone (a worker walks only some). */
  finishPart(): VerifyResult {
    this.finishTenant();
    return this.result();
  }

  finish(): VerifyResult {
    this.finishTenant();
    for (const b of goneChains(this.anchors, this.seen, this.o.tenantId)) this.add(b);
    return this.result();
  }

  private result(): VerifyResult {
    return {
      ok: this.breaks.length === 0 && this.moreBreaks === 0,
      checked: this.checked,
      chains: this.chains,
      checkpoints: this.anchors.count,
      breaks: this.breaks,
      moreBreaks: this.moreBreaks,
      warnings: this.warnings,
      heads: this.heads,
    };
  }
}

/** A chain a signed checkpoint records that the walk never met: deleted as a whole. */
export function goneChains(anchors: Anchors, seen: Set<string>, tenantId?: string): ChainBreak[] {
  const out: ChainBreak[] = [];
  for (const [id, m] of anchors.byTenant) {
    if (seen.has(id) || (tenantId && id !== tenantId)) continue;
    out.push({
      tenantId: id,
      seq: 1,
      at: null,
      kind: 'missing',
      detail: `the whole chain is gone, though a signed checkpoint records it up to entry ${Math.max(...m.keys())}`,
    });
  }
  return out;
}
