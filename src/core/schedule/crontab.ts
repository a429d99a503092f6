import { readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { AttenduxError } from '../../errors.js';
import { loadConfig, type LoadedConfig } from '../config/load.js';
import { pathExists, writeFileAtomic } from '../../lib/fs.js';
import { ATTENDUX_BIN } from './exec.js';
import { scheduleTimeZone, type PlannedJob } from './plan.js';
import { markScheduled, markUnscheduled } from './runs.js';
import {
  CRON_BEGIN,
  CRON_END,
  commonValues,
  scheduledJobs,
  userNotes,
  type InstallOptions,
  type InstallResult,
  type WrittenFile,
} from './install.js';

/*
 * `schedule install --crontab`: a marked block in the user's crontab (or /etc/cron.d/attendux as root), the
 * counterpart of the systemd units in install.ts.
 */

export interface CrontabOptions extends InstallOptions {
  /** Directory of the cron.d file when root (default /etc/cron.d). */
  dir?: string;
  /** Edit this file as a user crontab instead of running crontab(1). */
  file?: string;
  /** crontab(1) to run (default `crontab` on PATH). */
  crontabCommand?: string;
  isRoot?: boolean;
}

/** Remove every attendux block; returns the text without them and where the first one was (line index). */
export function stripBlock(text: string): { rest: string[]; at: number } {
  const lines = text.split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  const rest: string[] = [];
  let at = -1;
  let inBlock = false;
  for (const l of lines) {
    if (l === CRON_BEGIN) {
      if (inBlock)
        throw new AttenduxError(
          'IO_ERROR',
          'crontab: an attendux block begins twice without an end; fix it by hand',
        );
      inBlock = true;
      if (at < 0) at = rest.length;
      continue;
    }
    if (l === CRON_END && inBlock) {
      inBlock = false;
      continue;
    }
    if (!inBlock) rest.push(l);
  }
  if (inBlock)
    throw new AttenduxError(
      'IO_ERROR',
      `crontab: "${CRON_BEGIN.slice(0, 24)}..." has no end line; fix it by hand`,
    );
  return { rest, at };
}

export function replaceBlock(text: string, block: string[] | null): string {
  const { rest, at } = stripBlock(text);
  const lines = [...rest];
  if (block) lines.splice(at < 0 ? lines.length : at, 0, ...block);
  return lines.length ? lines.join('\n') + '\n' : '';
}

export function cronLines(
  loaded: LoadedConfig,
  opts: InstallOptions,
  user: string | null,
): { jobs: PlannedJob[]; block: string[] } {
  const jobs = scheduledJobs(loaded, opts.hasCommand, 'cron');
  const v = commonValues(loaded, opts, user ?? 'root');
  const block = [
    CRON_BEGIN,
    ...(user ? ['# minute hour day month weekday user command'] : []),
    `# Times are in the cron daemon's time zone; attendux locks each job itself (no flock needed).`,
  ];
  for (const j of jobs) {
    const who = user ? `${v.user} ` : '';
    block.push(
      `${j.cron} ${who}${v.node} ${v.bin} --config ${v.config} --quiet schedule exec --trigger cron ${j.id}`,
    );
  }
  block.push(CRON_END);
  return { jobs, block };
}

function timeZoneNote(loaded: LoadedConfig): string[] {
  const tz = scheduleTimeZone(loaded.config);
  const system = process.env.TZ || Intl.DateTimeFormat().resolvedOptions().timeZone;
  return tz === system || (tz === 'UTC' && /^(Etc\/)?(UTC|UCT|GMT)$/.test(system))
    ? []
    : [
        `cron runs these lines in the system time zone (${system}), not schedule.timeZone (${tz}): set one to the other`,
      ];
}

type CronTarget =
  | { kind: 'cron.d'; path: string; user: string }
  | { kind: 'file'; path: string; user: null }
  | { kind: 'crontab'; command: string; user: string | null };

function cronTarget(opts: CrontabOptions): CronTarget {
  const root = opts.isRoot ?? process.getuid?.() === 0;
  if (opts.file) return { kind: 'file', path: opts.file, user: null };
  if (root)
    return {
      kind: 'cron.d',
      path: join(opts.dir ?? '/etc/cron.d', 'attendux'),
      user: opts.user ?? 'attendux',
    };
  return { kind: 'crontab', command: opts.crontabCommand ?? 'crontab', user: opts.user ?? null };
}

async function readCrontab(t: CronTarget): Promise<string> {
  // No /etc/cron.d/attendux yet is an empty block; a write error surfaces when the file is written.
  if (t.kind !== 'crontab') return readFile(t.path, 'utf8').catch(() => '');
  const r = await execa(t.command, [...(t.user ? ['-u', t.user] : []), '-l'], {
    reject: false,
    stdin: 'ignore',
  });
  if (r.exitCode === 0) return String(r.stdout) + '\n';
  if (/no crontab/i.test(String(r.stderr))) return '';
  throw new AttenduxError(
    'IO_ERROR',
    `crontab -l failed: ${String(r.stderr || r.shortMessage)
      .trim()
      .split('\n')
      .pop()}`,
    {
      hint: 'is cron installed (apt-get install cron)? As root, attendux writes /etc/cron.d/attendux instead',
    },
  );
}

async function writeCrontab(t: CronTarget, text: string): Promise<void> {
  if (t.kind === 'cron.d') {
    // cron ignores a cron.d file that is group- or world-writable; an empty one is removed.
    if (text.trim()) await writeFileAtomic(t.path, text, 0o644);
    else if (await pathExists(t.path)) await unlink(t.path);
    return;
  }
  if (t.kind === 'file') return writeFileAtomic(t.path, text, 0o600);
  const r = await execa(t.command, [...(t.user ? ['-u', t.user] : []), '-'], { reject: false, input: text });
  if (r.failed)
    throw new AttenduxError(
      'IO_ERROR',
      `crontab - failed: ${String(r.stderr || r.shortMessage)
        .trim()
        .split('\n')
        .pop()}`,
    );
}

const targetName = (t: CronTarget) =>
  t.kind === 'crontab' ? `crontab of ${t.user ?? 'the current user'}` : t.path;

export async function installCrontab(opts: CrontabOptions): Promise<InstallResult> {
  const loaded = await loadConfig(opts);
  const t = cronTarget(opts);
  const { jobs, block } = cronLines(loaded, opts, t.kind === 'cron.d' ? t.user : null);
  const old = await readCrontab(t);
  const next = replaceBlock(old, block);
  const action: WrittenFile['action'] = old === next ? 'unchanged' : old.trim() ? 'replaced' : 'created';
  if (!opts.dryRun && action !== 'unchanged') await writeCrontab(t, next);
  if (!opts.dryRun) await markScheduled(loaded.config.dataDir, 'crontab');
  const user = t.kind === 'cron.d' ? t.user : (t.user ?? process.env.USER ?? '');
  return {
    kind: 'crontab',
    dryRun: opts.dryRun === true,
    target: targetName(t),
    user,
    jobs: jobs.map((j) => j.id),
    files: [{ path: targetName(t), content: next, action }],
    commands: [],
    ran: false,
    notes: [
      ...timeZoneNote(loaded),
      ...(t.kind === 'cron.d'
        ? await userNotes(user, loaded, opts.node ?? process.execPath, opts.bin ?? ATTENDUX_BIN, false)
        : []),
    ],
  };
}

export async function uninstallCrontab(opts: CrontabOptions): Promise<InstallResult> {
  const loaded = await loadConfig(opts);
  const t = cronTarget(opts);
  const old = await readCrontab(t);
  const next = replaceBlock(old, null);
  const action: WrittenFile['action'] = old === next ? 'unchanged' : 'removed';
  if (!opts.dryRun && action !== 'unchanged') await writeCrontab(t, next);
  if (!opts.dryRun) await markUnscheduled(loaded.config.dataDir, 'crontab');
  return {
    kind: 'crontab',
    dryRun: opts.dryRun === true,
    target: targetName(t),
    user: t.user ?? '',
    jobs: [],
    files: [{ path: targetName(t), content: next, action }],
    commands: [],
    ran: false,
    notes: [],
  };
}
