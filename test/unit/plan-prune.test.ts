import { describe, expect, it } from 'vitest';
import { planPrune, type PruneCandidate } from '../../src/core/backup/prune.js';

const now = new Date('2026-11-23T12:00:00Z');
const daysAgo = (d: number) => new Date(now.getTime() - d * 86_400_000).toISOString();
const retention = { fullDays: 30, incrementalDays: 7, configDays: 90 };

function b(
  id: string,
  kind: PruneCandidate['kind'],
  age: number,
  parent: string | null = null,
): PruneCandidate {
  return { id, kind, createdAt: daysAgo(age), parent };
}

const ids = (xs: { id: string }[]) => xs.map((x) => x.id).sort();

describe('planPrune', () => {
  it('deletes backups past their kind’s retention and keeps the rest', () => {
    const plan = planPrune(
      [b('f-old', 'full', 40), b('f-new', 'full', 1), b('c-old', 'config', 100), b('c-new', 'config', 2)],
      retention,
      now,
    );
    expect(ids(plan.delete)).toEqual(['c-old', 'f-old']);
    expect(ids(plan.keep)).toEqual(['c-new', 'f-new']);
  });

  it('never deletes the newest full backup, however old', () => {
    const plan = planPrune([b('f1', 'full', 90), b('f2', 'full', 60)], retention, now);
    expect(ids(plan.delete)).toEqual(['f1']);
    expect(plan.keep).toEqual([expect.objectContaining({ id: 'f2', protected: true })]);
  });

  it('never deletes the newest config backup, however old', () => {
    const plan = planPrune([b('c1', 'config', 200), b('c2', 'config', 100)], retention, now);
    expect(ids(plan.delete)).toEqual(['c1']);
    expect(ids(plan.keep)).toEqual(['c2']);
  });

  it('refuses to prune the full backup a kept incremental depends on', () => {
    const plan = planPrune(
      [b('f1', 'full', 31), b('i1', 'incremental', 6, 'f1'), b('f2', 'full', 1)],
      retention,
      now,
    );
    expect(plan.delete).toEqual([]);
    expect(plan.keep.find((k) => k.id === 'f1')).toMatchObject({
      protected: true,
      reason: 'needed by kept incremental i1',
    });
  });

  it('keeps every expired incremental between a kept incremental and its full', () => {
    const plan = planPrune(
      [
        b('f1', 'full', 35),
        b('i1', 'incremental', 9, 'f1'),
        b('i2', 'incremental', 8, 'i1'),
        b('i3', 'incremental', 2, 'i2'),
        b('f2', 'full', 1),
      ],
      retention,
      now,
    );
    expect(plan.delete).toEqual([]);
    expect(ids(plan.keep)).toEqual(['f1', 'f2', 'i1', 'i2', 'i3']);
  });

  it('deletes a whole expired chain once no kept incremental needs it, newest first', () => {
    const plan = planPrune(
      [
        b('f1', 'full', 40),
        b('i1', 'incremental', 39, 'f1'),
        b('i2', 'incremental', 38, 'i1'),
        b('f2', 'full', 3),
      ],
      retention,
      now,
    );
    expect(plan.delete.map((d) => d.id)).toEqual(['i2', 'i1', 'f1']);
    expect(plan.delete[0]!.reason).toMatch(/incremental backup 38 days old, retention 7 days/);
  });

  it('keeps an incremental within retention even when its parent is missing', () => {
    const plan = planPrune([b('i9', 'incremental', 1, 'gone'), b('f2', 'full', 1)], retention, now);
    expect(ids(plan.keep)).toEqual(['f2', 'i9']);
  });

  it('does not protect anything of another chain', () => {
    const plan = planPrune(
      [
        b('f1', 'full', 50),
        b('i1', 'incremental', 45, 'f1'),
        b('f2', 'full', 20),
        b('i2', 'incremental', 1, 'f2'),
      ],
      retention,
      now,
    );
    expect(ids(plan.delete)).toEqual(['f1', 'i1']);
  });
});
