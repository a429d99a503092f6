import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { AttenduxError } from '../../errors.js';
import { verifyBytes } from '../../crypto/signing.js';
import { AuditMac } from './mac.js';
import { checkpointValid, type Checkpoint } from './checkpoints.js';
import { manifestBytes, type ExportEntry, type ExportManifest } from './export.js';

/*
 * `audit verify --file`: an export checked offline. The CSV reader stays small and local: it reads only what
 * csvLine (csv-stringify) wrote, and undoes its formula escaping.
 */

function parseCsvLine(line: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i <= line.length) {
    if (line[i] === '"') {
      let s = '';
      i++;
      for (;;) {
        const j = line.indexOf('"', i);
        if (j < 0) throw new AttenduxError('AUDIT_BROKEN', 'unterminated quote');
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
  return out.map((s) => (/^'[=+\-@\t\r\uFF1D\uFF0B\uFF0D\uFF20]/.test(s) ? s.slice(1) : s));
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
  const entries = parseEntries(text, m.fileFormat);
  if (entries.length !== m.entries)
    problems.push({
      seq: null,
      kind: 'missing',
      detail: `${entries.length} entries in the file, the manifest says ${m.entries}`,
    });
  const mac = opts.auditKey ? new AuditMac(Buffer.from(opts.auditKey, 'base64')) : undefined;
  checkLinks(entries, mac, problems);
  checkAnchors(entries, m.checkpoints, publicKey, problems);
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

type Problems = FileVerifyResult['problems'];

/** The exported entries, from JSON lines or the CSV of EXPORT_COLUMNS. */
function parseEntries(text: string, format: ExportManifest['fileFormat']): ExportEntry[] {
  const entries: ExportEntry[] = [];
  if (format === 'csv') {
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
  return entries;
}

/** Every entry follows the one before it (and, with the audit key, its MAC matches). */
function checkLinks(entries: ExportEntry[], mac: AuditMac | undefined, problems: Problems) {
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
}

/** The manifest's signed checkpoints agree with the entries they name. */
function checkAnchors(entries: ExportEntry[], cps: Checkpoint[], publicKey: string, problems: Problems) {
  const bySeq = new Map(entries.map((e) => [e.seq, e]));
  for (const cp of cps) {
    if (!checkpointValid(cp, publicKey)) {
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
}
