import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cleanupLeftovers } from '../../src/core/archive/writer.js';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'attendux-cleanup-'));
  const files = [
    'full-20261101T020000000Z.tar.age',
    'full-20261101T020000000Z.json',
    'full-20261102T020000000Z.tar.age.part',
    '.full-20261102T020000000Z.json.1a2b3c4d.part',
    'incremental-20261102T080000000Z.tar.age',
    'config-20261102T090000000Z.tar.age.part',
    'config-20261101T090000000Z.tar.age',
    'config-20261101T090000000Z.json',
    'last-run-full.json',
    'notes.txt',
  ];
  for (const f of files) await writeFile(join(dir, f), 'x');
  await mkdir(join(dir, '.staging-full-20261102T020000000Z'));
  await writeFile(join(dir, '.staging-full-20261102T020000000Z', 'tenants.0.gz'), 'x');
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe('cleanupLeftovers', () => {
  it('removes part files and staging dirs, quarantines data files without a sidecar, keeps complete backups', async () => {
    const removed = await cleanupLeftovers(dir, 'database');
    expect(removed.sort()).toEqual([
      '.full-20261102T020000000Z.json.1a2b3c4d.part',
      '.staging-full-20261102T020000000Z',
      'full-20261102T020000000Z.tar.age.part',
      'quarantine/incremental-20261102T080000000Z.tar.age',
    ]);
    // Never deleted: it may be an intact backup whose sidecar was lost (`backup repair` rebuilds it).
    expect(await readdir(join(dir, 'quarantine'))).toEqual(['incremental-20261102T080000000Z.tar.age']);
    expect((await readdir(dir)).sort()).toEqual([
      'config-20261101T090000000Z.json',
      'config-20261101T090000000Z.tar.age',
      'config-20261102T090000000Z.tar.age.part',
      'full-20261101T020000000Z.json',
      'full-20261101T020000000Z.tar.age',
      'last-run-full.json',
      'notes.txt',
      'quarantine',
    ]);
  });

  it('leaves a running config backup alone when cleaning after a database backup, and vice versa', async () => {
    expect(await cleanupLeftovers(dir, 'config')).toEqual(['config-20261102T090000000Z.tar.age.part']);
    expect(await readdir(dir)).toContain('full-20261102T020000000Z.tar.age.part');
  });
});
