import { describe, expect, it } from 'vitest';
import { AttenduxError } from '../../src/errors.js';
import { describePlan, planRestore, type PlanBackup } from '../../src/core/restore/plan.js';

const MIGRATIONS = ['0001_initial-schema', '0002_server', '0003_backup-change-log'];

function b(
  id: string,
  kind: PlanBackup['kind'],
  createdAt: string,
  parent: string | null = null,
  extra: Partial<PlanBackup> = {},
): PlanBackup {
  return {
    id,
    kind,
    parent,
    createdAt,
    file: `${id}.tar.age`,
    bytes: 1000,
    rows: 10,
    schemaVersion: kind === 'config' ? null : '0003_backup-change-log',
    attenduxVersion: '0.1.0',
    databaseId: kind === 'config' ? null : 'db-1',
    status: 'ok',
    ...extra,
  };
}

const chain = [
  b('full-1', 'full', '2026-11-20T02:00:00.000Z'),
  b('inc-1a', 'incremental', '2026-11-20T08:00:00.000Z', 'full-1'),
  b('inc-1b', 'incremental', '2026-11-20T14:00:00.000Z', 'inc-1a'),
  b('config-1', 'config', '2026-11-20T15:00:00.000Z'),
  b('full-2', 'full', '2026-11-21T02:00:00.000Z'),
  b('inc-2a', 'incremental', '2026-11-21T08:00:00.000Z', 'full-2'),
];

function errorOf(fn: () => unknown): AttenduxError {
  try {
    fn();
  } catch (err) {
    if (err instanceof AttenduxError) return err;
    throw err;
  }
  throw new Error('expected an error');
}

const ids = (p: { steps: { id: string }[] }) => p.steps.map((s) => s.id);

describe('planRestore', () => {
  it('restores the newest backup with its whole chain by default', () => {
    const p = planRestore(chain, { knownMigrations: MIGRATIONS });
    expect(ids(p)).toEqual(['full-2', 'inc-2a']);
    expect(p.pointInTime).toBe('2026-11-21T08:00:00.000Z');
    expect(p.totalBytes).toBe(2000);
    expect(p.steps.every((s) => s.applyUntil === null)).toBe(true);
  });

  it('restores a named backup with the full and incrementals before it, in order', () => {
    expect(ids(planRestore(chain, { backupId: 'inc-1b', knownMigrations: MIGRATIONS }))).toEqual([
      'full-1',
      'inc-1a',
      'inc-1b',
    ]);
  });

  it('for a time between two incrementals applies the next incremental only up to that time', () => {
    const p = planRestore(chain, { at: '2026-11-20T10:00:00Z', knownMigrations: MIGRATIONS });
    expect(ids(p)).toEqual(['full-1', 'inc-1a', 'inc-1b']);
    expect(p.steps.map((s) => s.applyUntil)).toEqual([
      null,
      '2026-11-20T10:00:00.000Z',
      '2026-11-20T10:00:00.000Z',
    ]);
    expect(p.pointInTime).toBe('2026-11-20T10:00:00.000Z');
  });

  it('for a time after the newest backup of a chain restores that backup and says so', () => {
    const p = planRestore(chain, { at: '2026-11-20T23:00:00Z', knownMigrations: MIGRATIONS });
    expect(ids(p)).toEqual(['full-1', 'inc-1a', 'inc-1b']);
    expect(p.notes.join(' ')).toMatch(/no backup was taken after inc-1b/);
  });

  it('refuses a time before the first backup, naming the oldest one', () => {
    const e = errorOf(() => planRestore(chain, { at: '2026-11-01T00:00:00Z', knownMigrations: MIGRATIONS }));
    expect(e.code).toBe('RESTORE_NO_BACKUP');
    expect(e.message).toMatch(/oldest is full-1/);
  });

  it('refuses a time that is not a time as a usage error', () => {
    expect(errorOf(() => planRestore(chain, { at: 'yesterday-ish', knownMigrations: MIGRATIONS })).code).toBe(
      'USAGE',
    );
  });

  it('refuses --backup and --at together', () => {
    expect(
      errorOf(() =>
        planRestore(chain, { backupId: 'full-1', at: '2026-11-21T00:00:00Z', knownMigrations: MIGRATIONS }),
      ).code,
    ).toBe('USAGE');
  });

  it('refuses an unknown backup id', () => {
    expect(errorOf(() => planRestore(chain, { backupId: 'full-9', knownMigrations: MIGRATIONS })).code).toBe(
      'RESTORE_NO_BACKUP',
    );
  });

  it('refuses a config backup as a database restore target and points at --config-only', () => {
    const e = errorOf(() => planRestore(chain, { backupId: 'config-1', knownMigrations: MIGRATIONS }));
    expect(e.code).toBe('USAGE');
    expect(e.hint).toMatch(/--config-only/);
  });

  it('refuses an empty catalog', () => {
    expect(errorOf(() => planRestore([], { knownMigrations: MIGRATIONS })).code).toBe('RESTORE_NO_BACKUP');
  });

  it('names the gap when an incremental in the middle of the chain is missing', () => {
    const gap = chain.filter((x) => x.id !== 'inc-1a');
    const e = errorOf(() => planRestore(gap, { backupId: 'inc-1b', knownMigrations: MIGRATIONS }));
    expect(e.code).toBe('RESTORE_CHAIN_BROKEN');
    expect(e.message).toBe(
      'gap in the chain of inc-1b: incremental inc-1b needs inc-1a, which is missing from the backup directory',
    );
  });

  it('names the missing full at the root of a chain', () => {
    const e = errorOf(() =>
      planRestore(
        chain.filter((x) => x.id !== 'full-2'),
        { knownMigrations: MIGRATIONS },
      ),
    );
    expect(e.code).toBe('RESTORE_CHAIN_BROKEN');
    expect(e.message).toMatch(/inc-2a needs full-2, which is missing/);
  });

  it('names a corrupt middle link with its position in the chain', () => {
    const bad = chain.map((x) =>
      x.id === 'inc-1a'
        ? {
            ...x,
            status: 'size-mismatch' as const,
            problem: 'inc-1a.tar.age has 10 bytes, the sidecar says 1000',
          }
        : x,
    );
    const e = errorOf(() => planRestore(bad, { backupId: 'inc-1b', knownMigrations: MIGRATIONS }));
    expect(e.code).toBe('RESTORE_CHAIN_BROKEN');
    expect(e.message).toBe(
      'backup inc-1a (link 2 of 3) is damaged: inc-1a.tar.age has 10 bytes, the sidecar says 1000',
    );
  });

  it('never falls back to an older intact chain when the newest is broken', () => {
    const bad = chain.map((x) =>
      x.id === 'full-2' ? { ...x, status: 'file-missing' as const, problem: 'full-2.tar.age is missing' } : x,
    );
    const e = errorOf(() => planRestore(bad, { knownMigrations: MIGRATIONS }));
    expect(e.code).toBe('RESTORE_CHAIN_BROKEN');
    expect(e.message).toMatch(/full-2 \(the full at the root of the chain\) is damaged/);
  });

  it('refuses --at when the incremental holding the changes up to that time is damaged', () => {
    const bad = chain.map((x) =>
      x.id === 'inc-1b' ? { ...x, status: 'file-missing' as const, problem: 'missing' } : x,
    );
    const e = errorOf(() => planRestore(bad, { at: '2026-11-20T10:00:00Z', knownMigrations: MIGRATIONS }));
    expect(e.code).toBe('RESTORE_CHAIN_BROKEN');
    expect(e.message).toMatch(/inc-1b, which holds the changes up to 2026-11-20T10:00:00.000Z, is damaged/);
  });

  it('refuses a chain whose links come from different databases', () => {
    const bad = chain.map((x) => (x.id === 'inc-1a' ? { ...x, databaseId: 'db-2' } : x));
    expect(
      errorOf(() => planRestore(bad, { backupId: 'inc-1b', knownMigrations: MIGRATIONS })).message,
    ).toMatch(/inc-1a was taken from another database/);
  });

  it('refuses a backup made by a newer schema, naming the version and the attendux it needs', () => {
    const newer = [
      b('full-9', 'full', '2026-11-22T02:00:00.000Z', null, {
        schemaVersion: '0009_future',
        attenduxVersion: '2.0.0',
      }),
    ];
    const e = errorOf(() => planRestore(newer, { knownMigrations: MIGRATIONS }));
    expect(e.code).toBe('RESTORE_NEWER_SCHEMA');
    expect(e.message).toMatch(
      /schema version 0009_future, which this attendux does not know \(newest known: 0003_backup-change-log\)/,
    );
    expect(e.hint).toMatch(/attendux 2.0.0 or newer/);
  });

  it('lists the migrations that run after loading an older backup', () => {
    const old = [
      b('full-0', 'full', '2026-11-22T02:00:00.000Z', null, { schemaVersion: '0001_initial-schema' }),
    ];
    expect(planRestore(old, { knownMigrations: MIGRATIONS }).newerMigrations).toEqual([
      '0002_server',
      '0003_backup-change-log',
    ]);
  });

  it('describes what an in-place restore replaces and where the old database goes', () => {
    const p = planRestore(chain, {
      knownMigrations: MIGRATIONS,
      mode: 'in-place',
      liveDatabase: 'attendux',
      oldName: 'attendux_old_20261123',
    });
    expect(p.effect).toMatch(/REPLACES the live database attendux .* kept as attendux_old_20261123/);
    expect(describePlan(p)[1]).toMatch(/1\. full\s+full-2/);
  });
});
