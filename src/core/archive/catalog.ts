import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { AttenduxError } from '../../errors.js';
import {
  ID_PATTERN,
  dataFileName,
  parseSidecar,
  sidecarFileName,
  type BackupKind,
  type Sidecar,
} from './format.js';

/** How usable a backup is for a restore, judged from sidecars and file sizes alone (no key needed). */
export type ChainStatus =
  'ok' | 'file-missing' | 'size-mismatch' | 'parent-missing' | 'parent-broken' | 'sidecar-invalid';

export interface CatalogEntry extends Sidecar {
  path: string;
  status: ChainStatus;
  /** Human explanation when status is not ok. */
  problem?: string;
  /** Ids from the chain's full to this backup, in restore order (full first). */
  chain: string[];
}

export interface CatalogProblem {
  /** The backup id the file names. */
  id: string;
  /** Path relative to the backup dir. */
  file: string;
  kind: 'sidecar-invalid' | 'sidecar-missing' | 'quarantined';
  problem: string;
}

export interface Catalog {
  backupDir: string;
  /** Oldest first. */
  backups: CatalogEntry[];
  /** Sidecar files that could not be read (listed, never silently ignored). */
  invalid: { file: string; problem: string }[];
  /**
   * Backups that cannot be listed as usable: an unreadable sidecar, a data file without its sidecar, a data
   * file set aside in quarantine/. Every command reports them as errors; `attendux backup repair` rebuilds
   * the sidecar from the encrypted file.
   */
  problems: CatalogProblem[];
}

export const QUARANTINE_DIR = 'quarantine';

const REPAIR_HINT = 'run `attendux backup repair -i IDENTITY` to rebuild it from the encrypted file';

/** Problems named in one line each, for error messages. */
export function describeProblems(problems: readonly CatalogProblem[]): string {
  return problems.map((p) => `${p.file}: ${p.problem}`).join('; ');
}

/** Refuse to go on when any backup is in doubt: a silently shorter catalog gives a silently older restore. */
export function assertNoProblems(catalog: Catalog, what: string): void {
  if (!catalog.problems.length) return;
  throw new AttenduxError(
    'BACKUP_CORRUPT',
    `${what}: ${catalog.problems.length} backup(s) in ${catalog.backupDir} cannot be read: ${describeProblems(catalog.problems)}`,
    { hint: REPAIR_HINT },
  );
}

/** Read every sidecar in the backup dir and work out each backup's chain and whether it is intact. */
export async function readCatalog(backupDir: string): Promise<Catalog> {
  let names: string[];
  try {
    names = await readdir(backupDir);
  } catch {
    // no backup dir yet: an empty catalog
    return { backupDir, backups: [], invalid: [], problems: [] };
  }
  const sidecars: Sidecar[] = [];
  const invalid: Catalog['invalid'] = [];
  const problems: CatalogProblem[] = [];
  const set = new Set(names);
  for (const n of names.sort()) {
    if (
      n.endsWith('.tar.age') &&
      ID_PATTERN.test(n.slice(0, -8)) &&
      !set.has(sidecarFileName(n.slice(0, -8)))
    )
      problems.push({
        id: n.slice(0, -8),
        file: n,
        kind: 'sidecar-missing',
        problem: `the sidecar ${sidecarFileName(n.slice(0, -8))} is missing`,
      });
    if (!n.endsWith('.json') || !ID_PATTERN.test(n.slice(0, -5))) continue;
    try {
      const s = parseSidecar(await readFile(join(backupDir, n), 'utf8'), n);
      // An internal signal: caught just below and recorded as this file's problem.
      if (s.id !== n.slice(0, -5)) throw new Error(`${n}: the sidecar names backup ${s.id}`);
      sidecars.push(s);
    } catch (err) {
      invalid.push({ file: n, problem: (err as Error).message });
      problems.push({
        id: n.slice(0, -5),
        file: n,
        kind: 'sidecar-invalid',
        problem: `unreadable sidecar (${(err as Error).message})`,
      });
    }
  }
  // no quarantine dir: nothing quarantined
  for (const n of (await readdir(join(backupDir, QUARANTINE_DIR)).catch(() => [] as string[])).sort()) {
    if (!n.endsWith('.tar.age') || !ID_PATTERN.test(n.slice(0, -8))) continue;
    problems.push({
      id: n.slice(0, -8),
      file: `${QUARANTINE_DIR}/${n}`,
      kind: 'quarantined',
      problem: 'a data file without a usable sidecar, set aside (never deleted)',
    });
  }
  sidecars.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  const sizes = new Map<string, number | null>();
  for (const s of sidecars) {
    sizes.set(
      s.id,
      await stat(join(backupDir, dataFileName(s.id))).then(
        (st) => st.size,
        () => null,
      ),
    );
  }
  return { backupDir, backups: computeChains(sidecars, sizes, backupDir), invalid, problems };
}

/** Pure: chain status of every backup, given the sidecars and the sizes of their data files (null: missing). */
export function computeChains(
  sidecars: Sidecar[],
  sizes: Map<string, number | null>,
  backupDir = '',
): CatalogEntry[] {
  const byId = new Map(sidecars.map((s) => [s.id, s]));
  const own = (s: Sidecar): { status: ChainStatus; problem?: string } => {
    const size = sizes.get(s.id);
    if (size === null || size === undefined)
      return { status: 'file-missing', problem: `${s.file} is missing` };
    if (size !== s.bytes)
      return { status: 'size-mismatch', problem: `${s.file} has ${size} bytes, the sidecar says ${s.bytes}` };
    return { status: 'ok' };
  };
  const memo = new Map<string, { status: ChainStatus; problem?: string; chain: string[] }>();
  const judge = (s: Sidecar, depth = 0): { status: ChainStatus; problem?: string; chain: string[] } => {
    const hit = memo.get(s.id);
    if (hit) return hit;
    let r: { status: ChainStatus; problem?: string; chain: string[] };
    const mine = own(s);
    if (mine.status !== 'ok') r = { ...mine, chain: [s.id] };
    else if (s.kind !== 'incremental') r = { status: 'ok', chain: [s.id] };
    else if (!s.parent || !byId.has(s.parent) || depth > 10_000)
      r = { status: 'parent-missing', problem: `parent ${s.parent ?? '(none)'} is missing`, chain: [s.id] };
    else {
      const p = judge(byId.get(s.parent)!, depth + 1);
      r =
        p.status === 'ok'
          ? { status: 'ok', chain: [...p.chain, s.id] }
          : {
              status: 'parent-broken',
              problem: `parent ${s.parent}: ${p.problem ?? p.status}`,
              chain: [...p.chain, s.id],
            };
    }
    memo.set(s.id, r);
    return r;
  };
  return sidecars.map((s) => ({ ...s, path: join(backupDir, s.file), ...judge(s) }));
}

export function newestOf(catalog: Catalog, kind: BackupKind, okOnly = true): CatalogEntry | undefined {
  const list = catalog.backups.filter((b) => b.kind === kind && (!okOnly || b.status === 'ok'));
  return list[list.length - 1];
}

/** The backup a new incremental builds on: the newest full or incremental, if its chain is intact. */
export function chainHead(catalog: Catalog): CatalogEntry | undefined {
  const db = catalog.backups.filter((b) => b.kind !== 'config');
  return db[db.length - 1];
}
