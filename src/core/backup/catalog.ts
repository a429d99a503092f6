import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { ID_PATTERN, dataFileName, parseSidecar, type BackupKind, type Sidecar } from './format.js';

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

export interface Catalog {
  backupDir: string;
  /** Oldest first. */
  backups: CatalogEntry[];
  /** Sidecar files that could not be read (listed, never silently ignored). */
  invalid: { file: string; problem: string }[];
}

/** Read every sidecar in the backup dir and work out each backup's chain and whether it is intact. */
export async function readCatalog(backupDir: string): Promise<Catalog> {
  let names: string[];
  try {
    names = await readdir(backupDir);
  } catch {
    return { backupDir, backups: [], invalid: [] };
  }
  const sidecars: Sidecar[] = [];
  const invalid: Catalog['invalid'] = [];
  for (const n of names.sort()) {
    if (!n.endsWith('.json') || !ID_PATTERN.test(n.slice(0, -5))) continue;
    try {
      sidecars.push(parseSidecar(await readFile(join(backupDir, n), 'utf8'), n));
    } catch (err) {
      invalid.push({ file: n, problem: (err as Error).message });
    }
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
  return { backupDir, backups: computeChains(sidecars, sizes, backupDir), invalid };
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
