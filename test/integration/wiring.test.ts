/**
 * The links between doctor, scheduling, off-site copies and the restore drill: each was built on its own,
 * these tests check that one reads what the other records (a real `dir` target, real backups, a real drill,
 * a notify command that writes its stdin to a file, and the real `schedule status` binary).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile, readdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/core/config/load.js';
import { backupFull } from '../../src/core/backup/full.js';
import { backupIncremental } from '../../src/core/backup/incremental.js';
import { backupStatus } from '../../src/core/backup/status.js';
import { trustedSigningKeys, verifyCompanion } from '../../src/core/backup/signature.js';
import { restoreDrill } from '../../src/core/restore/drill.js';
import { drillFileName, type DrillRecord } from '../../src/core/restore/drill-record.js';
import { installCrontab, uninstallCrontab } from '../../src/core/schedule/install.js';
import { readScheduleMarker, recordRun } from '../../src/core/schedule/runs.js';
import { scheduleStatus } from '../../src/core/schedule/status.js';
import { runChecks, type Check, type DoctorEnv } from '../../src/core/doctor/index.js';
import { backupDrill, backupOffsite } from '../../src/core/doctor/backups.js';
import { hostSchedules } from '../../src/core/doctor/host.js';
import { ageKeygen, makeInstall, patchConfig, type TestInstall } from '../helpers/backup.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { runCli } from '../helpers/cli.js';

let db: TestDatabase;
let inst: TestInstall;
let tmp: string;
let usb: string;
let notified: string;

async function check(c: Check, extra: Partial<DoctorEnv> = {}) {
  const env: DoctorEnv = {
    loaded: await loadConfig({ configPath: inst.configPath }),
    now: new Date(),
    ...extra,
  };
  return (await runChecks(env, [c]))[0]!;
}
const hasCommand = () => true;

beforeAll(async () => {
  db = await createTestDatabase('wiring');
  tmp = await mkdtemp(join(tmpdir(), 'attendux-wiring-'));
  usb = join(tmp, 'usb');
  notified = join(tmp, 'notified.jsonl');
  inst = await makeInstall(db, {
    backup: { targets: [{ name: 'usb', type: 'dir', path: usb, retries: 0 }] },
  });
  await patchConfig(inst, (c) => (c.notify = { command: `cat >> '${notified}'` }));
});
afterAll(async () => {
  await inst.cleanup();
  await rm(tmp, { recursive: true, force: true });
  await db.drop();
});

describe('doctor backup.offsite, schedule status and the notify hook', () => {
  it('passes when the target holds the newest backup', async () => {
    const r = await backupFull({ configPath: inst.configPath });
    expect(r.offsite).toMatchObject([{ target: 'usb', ok: true }]);
    expect(await readdir(usb)).toContain(`${r.sidecar.id}.json`);
    const c = await check(backupOffsite);
    expect(c.status, c.message).toBe('pass');
    expect(c.message).toMatch(/usb \(dir\) current/);
    expect((await scheduleStatus({ configPath: inst.configPath, hasCommand })).offsite?.ok).toBe(true);
    expect(existsSync(notified)).toBe(false);
  });

  it('fails when a copy failed; schedule status shows it (exit 1) and the notify hook gets the JSON', async () => {
    // A regular file where the target directory should be: nothing can be written there, even as root.
    await rename(usb, `${usb}.away`);
    await writeFile(usb, 'not a directory\n');
    try {
      const r = await backupIncremental({ configPath: inst.configPath });
      expect(r.offsite).toMatchObject([{ target: 'usb', ok: false }]);
      const c = await check(backupOffsite);
      expect(c.status).toBe('fail');
      expect(c.message).toMatch(/usb: last copy failed/);
      const st = await scheduleStatus({ configPath: inst.configPath, hasCommand });
      expect(st.ok).toBe(false);
      expect(st.offsite?.targets).toMatchObject([{ name: 'usb', ok: false }]);
      const lines = (await readFile(notified, 'utf8')).trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(JSON.parse(lines[0]!)).toMatchObject({
        event: 'offsite-failure',
        job: 'backup-incremental',
        host: expect.any(String),
        problem: expect.stringMatching(new RegExp(`backup ${r.sidecar.id} was not copied to usb`)),
        offsite: { backup: r.sidecar.id, failed: [{ target: 'usb', error: { code: expect.any(String) } }] },
      });
      const cli = await runCli(['--config', inst.configPath, 'schedule', 'status']);
      expect(cli.exitCode, cli.stderr).toBe(1);
      expect(cli.stdout).toMatch(/FAIL target usb \(dir\)/);
      expect(cli.stderr).toMatch(/off-site target usb failing/);
    } finally {
      await rm(usb);
      await rename(`${usb}.away`, usb);
    }
  });

  it('fails when a target lags behind the newest backup, passes again after backup sync', async () => {
    const sync = await runCli(['--config', inst.configPath, 'backup', 'sync']);
    expect(sync.exitCode, sync.stderr).toBe(0);
    expect((await check(backupOffsite)).status).toBe('pass');
    // A backup taken while the target was not configured never reached it; its recorded state is "success".
    const targets = (await loadConfig({ configPath: inst.configPath })).config.backup.targets;
    await patchConfig(inst, (c) => (c.backup.targets = []));
    await backupIncremental({ configPath: inst.configPath });
    await patchConfig(inst, (c) => (c.backup.targets = targets));
    const c = await check(backupOffsite);
    expect(c.status).toBe('fail');
    expect(c.message).toMatch(/usb: lags/);
    expect((await runCli(['--config', inst.configPath, 'backup', 'sync'])).exitCode).toBe(0);
    expect((await check(backupOffsite)).status).toBe('pass');
  });

  it('warns when no target is configured', async () => {
    const targets = (await loadConfig({ configPath: inst.configPath })).config.backup.targets;
    await patchConfig(inst, (c) => (c.backup.targets = []));
    try {
      const c = await check(backupOffsite);
      expect(c.status).toBe('warn');
      expect(c.message).toMatch(/no off-site target/);
    } finally {
      await patchConfig(inst, (c) => (c.backup.targets = targets));
    }
  });
});

describe('doctor host.schedules', () => {
  it('warns without an installed schedule, passes once installed, fails when overdue or failed', async () => {
    const none = await check(hostSchedules, { hasCommand });
    expect(none.status).toBe('warn');
    expect(none.message).toMatch(/no schedule is installed/);
    await installCrontab({
      configPath: inst.configPath,
      hasCommand,
      file: join(tmp, 'crontab'),
      isRoot: false,
    });
    const ok = await check(hostSchedules, { hasCommand });
    expect(ok.status, ok.message).toBe('pass');
    expect(ok.message).toMatch(/installed \(crontab\)/);
    // Three days later nothing has run: every daily job is overdue.
    const later = await check(hostSchedules, { hasCommand, now: new Date(Date.now() + 3 * 86_400_000) });
    expect(later.status).toBe('fail');
    expect(later.message).toMatch(/backup-full: overdue/);
    const at = new Date().toISOString();
    await recordRun(inst.dataDir, {
      job: 'backup-prune',
      outcome: 'failure',
      startedAt: at,
      finishedAt: at,
      durationMs: 5,
      exitCode: 1,
      bytes: null,
      error: { message: 'disk on fire' },
      pid: process.pid,
      trigger: 'test',
    });
    const failed = await check(hostSchedules, { hasCommand });
    expect(failed.status).toBe('fail');
    expect(failed.message).toMatch(/backup-prune: last run failed .*disk on fire/);
    // `schedule uninstall` removes the block: nothing runs the jobs any more.
    const crontab = { configPath: inst.configPath, hasCommand, file: join(tmp, 'crontab'), isRoot: false };
    await uninstallCrontab(crontab);
    const gone = await check(hostSchedules, { hasCommand });
    expect(gone.status).toBe('warn');
    expect(gone.message).toMatch(/\(crontab\) was uninstalled/);
    const marker = await readScheduleMarker(inst.dataDir);
    await installCrontab(crontab);
    // A re-install keeps the first `since`: missed runs before it are not forgiven.
    expect((await readScheduleMarker(inst.dataDir))?.since).toBe(marker?.since);
    expect((await check(hostSchedules, { hasCommand })).status).toBe('fail');
  });
});

describe('restore --drill records its result', () => {
  it('writes a signed <id>.drill.json that backup status and doctor read', async () => {
    const r = await restoreDrill({ configPath: inst.configPath, identityFile: inst.identityFile });
    expect(r.ok, JSON.stringify(r.checks)).toBe(true);
    const id = r.plan!.steps.at(-1)!.id;
    const file = join(inst.backupDir, drillFileName(id));
    const rec = JSON.parse(await readFile(file, 'utf8')) as DrillRecord;
    expect(rec).toMatchObject({ id, ok: true, failed: [], audit: { ok: true } });
    expect(rec.checks.map((c) => c.name)).toContain('audit-chains');
    const loaded = await loadConfig({ configPath: inst.configPath });
    expect(
      await verifyCompanion(inst.backupDir, drillFileName(id), await trustedSigningKeys({ loaded })),
    ).toBe(true);
    const c = await check(backupDrill);
    expect(c.status, c.message).toBe('pass');
    expect(c.message).toMatch(new RegExp(`backup ${id}.*signed record`));
    expect((await backupStatus({ configPath: inst.configPath })).drill).toMatchObject({
      id,
      ok: true,
      verified: true,
    });

    // An edited record no longer verifies, and doctor says so.
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.replace('"seconds": ', '"seconds": 1'));
    expect((await check(backupDrill)).status).toBe('fail');
    expect((await backupStatus({ configPath: inst.configPath })).drill?.verified).toBe(false);
    await writeFile(file, text);
  });

  it('records a failed drill (wrong identity) as ok=false, and the check fails', async () => {
    const wrong = join(tmp, 'wrong-identity.txt');
    ageKeygen(wrong);
    await mkdir(tmp, { recursive: true });
    const r = await restoreDrill({ configPath: inst.configPath, identityFile: wrong });
    expect(r.ok).toBe(false);
    const id = r.plan!.steps.at(-1)!.id;
    const rec = JSON.parse(await readFile(join(inst.backupDir, drillFileName(id)), 'utf8')) as DrillRecord;
    expect(rec).toMatchObject({ id, ok: false, failed: ['restore'], audit: null });
    const c = await check(backupDrill);
    expect(c.status).toBe('fail');
    expect(c.message).toMatch(/the last restore drill .* failed: restore/);
    expect((await backupStatus({ configPath: inst.configPath })).drill).toMatchObject({
      ok: false,
      verified: true,
    });
  });
});
