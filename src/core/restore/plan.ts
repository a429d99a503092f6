import { AttenduxError } from '../../errors.js';
import type { ChainStatus } from '../archive/catalog.js';
import type { BackupKind } from '../archive/format.js';

/** What the planner needs of each backup: the sidecar facts and the catalog's judgement of the file. */
export interface PlanBackup {
  id: string;
  kind: BackupKind;
  parent: string | null;
  createdAt: string;
  file: string;
  bytes: number;
  rows: number;
  schemaVersion: string | null;
  attenduxVersion: string;
  databaseId: string | null;
  /** The file's own state ('ok', 'file-missing', 'size-mismatch'); parent problems are found here. */
  status: ChainStatus;
  problem?: string;
}

export type RestoreMode = 'into' | 'in-place' | 'tenant' | 'drill';

export interface PlanOptions {
  backupId?: string;
  /** Restore the newest state at or before this time. */
  at?: string | Date;
  /** Migration names this attendux ships, oldest first (a backup of an unknown one is refused). */
  knownMigrations: readonly string[];
  mode?: RestoreMode;
  /** Database written to (into / drill), or the live database (in-place / tenant). */
  database?: string;
  /** The live database of the install (named in the plan for in-place). */
  liveDatabase?: string;
  tenant?: string;
  /** The target database exists and holds data (into --force). */
  targetNotEmpty?: boolean;
  dropOld?: boolean;
  /** Name the live database will be kept under (in-place). */
  oldName?: string;
}

export interface PlanStep {
  id: string;
  kind: 'full' | 'incremental';
  createdAt: string;
  file: string;
  bytes: number;
  /** Rows (full) or changes (incremental). */
  rows: number;
  /** Only changes of transactions whose last change is at or before this time are applied (--at). */
  applyUntil: string | null;
}

export interface RestorePlan {
  /** Full first, then incrementals in the order they are applied. */
  steps: PlanStep[];
  /** The state the restore reproduces: --at, else the creation time of the last backup. */
  pointInTime: string;
  at: string | null;
  schemaVersion: string;
  /** Migrations that run after the data is loaded (the backup is older than this attendux). */
  newerMigrations: string[];
  databaseId: string | null;
  totalBytes: number;
  mode: RestoreMode;
  /** One line: what the restore replaces or creates. */
  effect: string;
  notes: string[];
}

const broken = (message: string, hint?: string) =>
  new AttenduxError('RESTORE_CHAIN_BROKEN', message, {
    hint:
      hint ??
      'restore an older intact point with --backup ID (see `attendux backup list`); nothing was restored',
  });

function parseAt(at: string | Date): Date {
  const d = at instanceof Date ? at : new Date(at);
  if (Number.isNaN(d.getTime()))
    throw new AttenduxError('USAGE', `--at "${String(at)}" is not a time`, {
      hint: 'an ISO 8601 time such as 2026-11-23T14:30:00Z',
    });
  return d;
}

/**
 * Work out which backup files a restore reads, in which order, and what it replaces. Pure: it looks only at
 * the catalog it is given. Any doubt about the chain is an error naming the link; it never falls back to a
 * shorter chain on its own (that would be a silent partial restore).
 */
export function planRestore(backups: readonly PlanBackup[], opts: PlanOptions): RestorePlan {
  if (opts.backupId && opts.at !== undefined)
    throw new AttenduxError('USAGE', 'give --backup ID or --at TIME, not both');
  const byId = new Map(backups.map((b) => [b.id, b]));
  const db = backups
    .filter((b) => b.kind !== 'config')
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  const notes: string[] = [];
  const { target, at } = pickTarget(db, byId, opts);
  const chain = walkChain(target, byId);
  const root = chain[0]!;
  const { version, idx } = checkSchema(chain, opts.knownMigrations);

  const steps: PlanStep[] = chain.map((b) => ({
    id: b.id,
    kind: b.kind === 'full' ? 'full' : 'incremental',
    createdAt: b.createdAt,
    file: b.file,
    bytes: b.bytes,
    rows: b.rows,
    applyUntil: null,
  }));
  if (at) addChangesUntil(db, target, at.toISOString(), steps, notes);
  const mode = opts.mode ?? 'into';
  const pointInTime = at ? at.toISOString() : target.createdAt;
  return {
    steps,
    pointInTime,
    at: at ? at.toISOString() : null,
    schemaVersion: version,
    newerMigrations: opts.knownMigrations.slice(idx + 1),
    databaseId: root.databaseId,
    totalBytes: steps.reduce((s, x) => s + x.bytes, 0),
    mode,
    effect: describeEffect(mode, opts, pointInTime),
    notes,
  };
}

/** The backup the restore ends at: --backup, the newest at or before --at, or the newest. */
function pickTarget(
  db: PlanBackup[],
  byId: Map<string, PlanBackup>,
  opts: PlanOptions,
): { target: PlanBackup; at: Date | null } {
  let target: PlanBackup | undefined;
  let at: Date | null = null;
  if (opts.backupId) {
    target = byId.get(opts.backupId);
    if (!target)
      throw new AttenduxError('RESTORE_NO_BACKUP', `no backup "${opts.backupId}" in the backup directory`, {
        hint: 'run `attendux backup list` to see the backups',
      });
    if (target.kind === 'config')
      throw new AttenduxError('USAGE', `${target.id} is a config backup`, {
        hint: 'restore it with --config-only',
      });
  } else if (opts.at !== undefined) {
    at = parseAt(opts.at);
    const t = at.toISOString();
    const before = db.filter((b) => b.createdAt <= t);
    target = before[before.length - 1];
    if (!target)
      throw new AttenduxError(
        'RESTORE_NO_BACKUP',
        db.length
          ? `no backup was taken at or before ${t} (the oldest is ${db[0]!.id} of ${db[0]!.createdAt})`
          : 'there are no database backups',
        { hint: 'pick a later --at, or see `attendux backup list`' },
      );
  } else {
    target = db[db.length - 1];
    if (!target)
      throw new AttenduxError('RESTORE_NO_BACKUP', 'there are no database backups to restore', {
        hint: 'run `attendux backup full` first, or check backup.dir',
      });
  }
  return { target, at };
}

/** The chain from its full to `target`, every link present and undamaged. */
function walkChain(target: PlanBackup, byId: Map<string, PlanBackup>): PlanBackup[] {
  // Walk from the target back to its full, checking every link.
  const chain: PlanBackup[] = [];
  const seen = new Set<string>();
  for (let b: PlanBackup | undefined = target; b;) {
    if (seen.has(b.id)) throw broken(`the chain of ${target.id} loops at ${b.id}`);
    seen.add(b.id);
    chain.unshift(b);
    if (b.kind === 'full') break;
    if (!b.parent) throw broken(`incremental ${b.id} names no parent backup`);
    const parent = byId.get(b.parent);
    if (!parent)
      throw broken(
        `gap in the chain of ${target.id}: incremental ${b.id} needs ${b.parent}, which is missing from the backup directory`,
      );
    if (parent.kind === 'config')
      throw broken(`incremental ${b.id} names config backup ${parent.id} as parent`);
    b = parent;
  }
  const n = chain.length;
  chain.forEach((b, i) => {
    if (b.status !== 'ok' && b.status !== 'parent-broken' && b.status !== 'parent-missing') {
      const where =
        n === 1 ? '' : i === 0 ? ` (the full at the root of the chain)` : ` (link ${i + 1} of ${n})`;
      throw broken(`backup ${b.id}${where} is damaged: ${b.problem ?? b.status}`);
    }
  });
  return chain;
}

/** One schema and one database along the chain, a schema this attendux knows; its index in the migrations. */
function checkSchema(
  chain: PlanBackup[],
  knownMigrations: readonly string[],
): { version: string; idx: number } {
  const root = chain[0]!;
  for (const b of chain) {
    if (b.schemaVersion !== root.schemaVersion)
      throw broken(
        `${b.id} has schema version ${b.schemaVersion ?? 'none'}, its full ${root.id} has ${root.schemaVersion ?? 'none'}`,
      );
    if (b.databaseId !== root.databaseId)
      throw broken(`${b.id} was taken from another database than its full ${root.id}`);
  }
  const version = root.schemaVersion;
  if (!version) throw broken(`${root.id} records no schema version`);
  const idx = knownMigrations.indexOf(version);
  if (idx < 0)
    throw new AttenduxError(
      'RESTORE_NEWER_SCHEMA',
      `backup ${root.id} was made with schema version ${version}, which this attendux does not know (newest known: ${knownMigrations[knownMigrations.length - 1] ?? 'none'})`,
      { hint: `install attendux ${root.attenduxVersion} or newer to restore it` },
    );
  return { version, idx };
}

/** --at: add the incremental after the target (if any) and apply every incremental's changes up to `t`. */
function addChangesUntil(
  db: PlanBackup[],
  target: PlanBackup,
  t: string,
  steps: PlanStep[],
  notes: string[],
): void {
  // The incremental after the target holds the changes between it and --at; transactions open across the
  // boundary can land in it too.
  const child = db.find((b) => b.kind === 'incremental' && b.parent === target.id);
  if (child) {
    if (child.status !== 'ok' && child.status !== 'parent-broken' && child.status !== 'parent-missing')
      throw broken(
        `backup ${child.id}, which holds the changes up to ${t}, is damaged: ${child.problem ?? child.status}`,
      );
    steps.push({
      id: child.id,
      kind: 'incremental',
      createdAt: child.createdAt,
      file: child.file,
      bytes: child.bytes,
      rows: child.rows,
      applyUntil: t,
    });
  } else {
    notes.push(
      `no backup was taken after ${target.id}: the newest state at or before ${t} is the state of ${target.id}`,
    );
  }
  for (const s of steps) if (s.kind === 'incremental') s.applyUntil = t;
}

function describeEffect(mode: RestoreMode, o: PlanOptions, point: string): string {
  const db = o.database ?? '(a new database)';
  switch (mode) {
    case 'into':
      return o.targetNotEmpty
        ? `REPLACES every table of the existing database ${db} (--force) with the state of ${point}`
        : `creates database ${db} holding the state of ${point}; the live database is not touched`;
    case 'in-place':
      return `REPLACES the live database ${o.liveDatabase ?? ''} with the state of ${point}; the current one is ${
        o.dropOld ? 'DROPPED after the swap (--drop-old)' : `kept as ${o.oldName ?? '<name>_old_<time>'}`
      }; the server is in maintenance mode meanwhile`;
    case 'tenant':
      return `REPLACES every row of company ${o.tenant ?? '?'} in the live database ${o.liveDatabase ?? ''} with its state of ${point} (its audit log is kept); other companies are not touched`;
    case 'drill':
      return `restores into the throwaway database ${db}, checks it and drops it; nothing else is touched`;
  }
}

/** Human lines for --dry-run. */
export function describePlan(plan: RestorePlan): string[] {
  const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MB`;
  const lines = [`restore to ${plan.pointInTime} (schema ${plan.schemaVersion}): ${plan.effect}`];
  plan.steps.forEach((s, i) =>
    lines.push(
      `  ${i + 1}. ${s.kind.padEnd(11)} ${s.id}  ${s.createdAt}  ${mb(s.bytes)}  ${s.rows} ${s.kind === 'full' ? 'rows' : 'changes'}${
        s.applyUntil ? `  (changes up to ${s.applyUntil} only)` : ''
      }`,
    ),
  );
  if (plan.newerMigrations.length)
    lines.push(
      `  then migrations ${plan.newerMigrations.join(', ')} (the backup is older than this attendux)`,
    );
  for (const n of plan.notes) lines.push(`  note: ${n}`);
  return lines;
}
