import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  enterMaintenance,
  leaveMaintenance,
  maintenancePath,
  maintenanceWatcher,
  readMaintenance,
} from '../../src/core/maintenance.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'attendux-maint-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('maintenance mode file', () => {
  it('is off when no file exists', async () => {
    expect(await readMaintenance(dir)).toBeUndefined();
  });

  it('is on after enter, with reason and retry-after, and leaves no temporary file', async () => {
    await enterMaintenance(dir, { reason: 'restore', retryAfterSeconds: 30 });
    expect(await readMaintenance(dir)).toMatchObject({
      reason: 'restore',
      retryAfterSeconds: 30,
      pid: process.pid,
    });
    expect(await readdir(dir)).toEqual(['maintenance.json']);
  });

  it('is off after leave, and leave reports whether it was on', async () => {
    await enterMaintenance(dir, { reason: 'restore' });
    expect(await leaveMaintenance(dir)).toBe(true);
    expect(await readMaintenance(dir)).toBeUndefined();
    expect(await leaveMaintenance(dir)).toBe(false);
  });

  it('is off when the process that switched it on is gone (a killed restore)', async () => {
    const { spawnSync } = await import('node:child_process');
    const gone = spawnSync(process.execPath, ['-e', '']).pid;
    const state = { reason: 'restore --in-place', retryAfterSeconds: 60, since: new Date().toISOString() };
    await writeFile(maintenancePath(dir), JSON.stringify({ ...state, pid: gone }));
    expect(await readMaintenance(dir)).toBeUndefined();
    await writeFile(maintenancePath(dir), JSON.stringify({ ...state, pid: process.pid }));
    expect(await readMaintenance(dir)).toMatchObject({ reason: 'restore --in-place' });
  });

  it('counts a garbled file as on', async () => {
    await writeFile(maintenancePath(dir), '{not json');
    expect(await readMaintenance(dir)).toMatchObject({ reason: 'maintenance', retryAfterSeconds: 60 });
  });

  it('re-reads the file only after the cache time', async () => {
    const check = maintenanceWatcher(dir, 60_000);
    expect(await check()).toBeUndefined();
    await enterMaintenance(dir, { reason: 'restore' });
    expect(await check()).toBeUndefined();
    const fresh = maintenanceWatcher(dir, 0);
    expect(await fresh()).toMatchObject({ reason: 'restore' });
  });
});
