import { readFile, readdir, realpath } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { readScheduleMarker } from '../schedule/runs.js';
import { statusOf } from '../schedule/status.js';
import { fail, pass, skip, warn, type Check, type DoctorEnv } from './types.js';

/** The mount holding `path` (longest mount point prefix in mountinfo) and its device major:minor. */
async function mountOf(env: DoctorEnv, path: string) {
  const text = await readFile(join(env.procRoot ?? '/proc', 'self/mountinfo'), 'utf8');
  let best: { point: string; dev: string; source: string } | undefined;
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 10) continue;
    const point = f[4]!.replace(/\\040/g, ' ');
    const sep = f.indexOf('-');
    const source = f[sep + 2] ?? '';
    if (
      (path === point || path.startsWith(point.endsWith('/') ? point : `${point}/`)) &&
      (!best || point.length > best.point.length)
    )
      best = { point, dev: f[2]!, source };
  }
  return best;
}

/** dm-crypt (LUKS) anywhere below the device: itself, or a slave of it (LVM on LUKS). */
async function isCrypt(env: DoctorEnv, dev: string, depth = 0): Promise<boolean> {
  const base = join(env.sysRoot ?? '/sys', 'dev/block', dev);
  // no dm/uuid: not a device-mapper device
  const uuid = await readFile(join(base, 'dm/uuid'), 'utf8').catch(() => '');
  if (uuid.startsWith('CRYPT-')) return true;
  if (depth > 4) return false;
  // no slaves dir: a plain device
  const slaves = await readdir(join(base, 'slaves')).catch(() => [] as string[]);
  for (const s of slaves) {
    // a slave without a dev file is skipped
    const dev = await readFile(join(env.sysRoot ?? '/sys', 'class/block', s, 'dev'), 'utf8').catch(() => '');
    const d = dev.trim();
    if (d && (await isCrypt(env, d, depth + 1))) return true;
  }
  return false;
}

export const hostEncrypted: Check = {
  id: 'host.encrypted',
  async run(env) {
    if (!env.loaded) return skip('no valid config');
    // an unresolvable path is looked up as given
    const dir = await realpath(env.loaded.config.dataDir).catch(() => env.loaded!.config.dataDir);
    // an unknown mount is reported as a warning below
    const m = await mountOf(env, dir).catch(() => undefined);
    if (!m)
      return warn(`cannot tell which device holds ${dir}`, 'put the data dir on a LUKS (dm-crypt) volume');
    if (await isCrypt(env, m.dev)) return pass(`${dir} is on ${m.source} (dm-crypt)`);
    return warn(
      `${dir} is on ${m.source} (${m.point}), not an encrypted block device: the promise is "encrypted on disk"`,
      'move the data dir (and the backups) to a LUKS volume (cryptsetup luksFormat)',
    );
  },
};

const exec = promisify(execFile);

export const hostClock: Check = {
  id: 'host.clock',
  async run(env) {
    const run =
      env.run ?? (async (cmd: string, args: string[]) => (await exec(cmd, args, { timeout: 3000 })).stdout);
    // no timedatectl (containers): a warning below
    const out = await run('timedatectl', ['show', '--property=NTPSynchronized', '--value']).catch(() => null);
    if (out?.trim() === 'yes') return pass('the clock is synchronised (NTP)');
    if (out?.trim() === 'no')
      return warn(
        'the clock is NOT synchronised: audit time stamps are evidence',
        'timedatectl set-ntp true (or install chrony)',
      );
    return warn(
      'cannot tell whether the clock is synchronised (no timedatectl)',
      'run an NTP client (chrony, systemd-timesyncd)',
    );
  },
};

export const hostSchedules: Check = {
  id: 'host.schedules',
  async run(env) {
    if (!env.loaded) return skip('no valid config (see config.valid)');
    const dataDir = env.loaded.config.dataDir;
    // Written by `schedule install` (systemd or crontab) and `schedule run`: without it nothing runs the jobs.
    const marker = await readScheduleMarker(dataDir);
    if (!marker)
      return warn(
        'no schedule is installed: backups, prune and drills run only when someone types them',
        'attendux schedule install --systemd --enable (or --crontab; in a container: attendux schedule run)',
      );
    if (marker.uninstalledAt)
      return warn(
        `the schedule (${marker.via}) was uninstalled at ${marker.uninstalledAt}: nothing runs the jobs`,
        'attendux schedule install --systemd --enable (or --crontab; in a container: attendux schedule run)',
      );
    // Without the CLI's command tree every job counts as available (the CLI passes its own).
    const st = await statusOf(env.loaded, env.hasCommand ?? (() => true), env.now);
    const bad = st.jobs.filter((j) => !j.ok);
    if (bad.length)
      return fail(
        bad.map((j) => `${j.id}: ${j.problem ?? 'failing'}`).join('; '),
        'see `attendux schedule status`; fix the job and run it with `attendux schedule exec JOB`',
      );
    const active = st.jobs.filter((j) => j.enabled && j.available);
    return pass(
      `installed (${marker.via}) since ${marker.since}; ${active.length} job(s) on time, none failing`,
    );
  },
};

export const hostChecks = [hostEncrypted, hostClock, hostSchedules];
