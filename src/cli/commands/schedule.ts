import { Option, type Command } from 'commander';
import { contextOf, intOption, table, type CliContext } from '../context.js';
import { AttenduxError } from '../../errors.js';
import { statusColor } from '../color.js';
import type { HasCommand } from '../../core/schedule/plan.js';
import type { InstallResult } from '../../core/schedule/install.js';
import type { SchedulerEvent } from '../../core/schedule/scheduler.js';
import { onGracefulStop } from '../lifecycle.js';

/**
 * Whether this binary has a command line: each word a subcommand, each `--flag` an option of the command
 * reached so far (or a global one). This is how jobs of commands other changes add light up once they
 * exist, and stay off while a flag they pass is missing.
 */
export function hasCommandOf(cmd: Command): HasCommand {
  let root = cmd;
  while (root.parent) root = root.parent;
  const hasOption = (c: Command | null, flag: string): boolean => {
    for (let x = c; x; x = x.parent)
      if (x.options.some((o) => o.long === flag || o.short === flag)) return true;
    return false;
  };
  return (words) => {
    let c: Command = root;
    for (const w of words) {
      if (w.startsWith('-')) {
        if (!hasOption(c, w)) return false;
        continue;
      }
      const next = c.commands.find((x) => x.name() === w || x.aliases().includes(w));
      if (!next) return false;
      c = next;
    }
    return true;
  };
}

const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MB`;
const secs = (ms: number | null) => (ms === null ? '-' : `${(ms / 1000).toFixed(1)} s`);

function printInstall(ctx: CliContext, r: InstallResult): void {
  for (const n of r.notes) ctx.important(`note: ${n}`);
  ctx.result(r, () => {
    const lines: string[] = [];
    for (const f of r.files) {
      lines.push(`${r.dryRun ? `would be ${f.action}` : f.action}: ${f.path}`);
      if (r.dryRun && f.action !== 'removed' && f.action !== 'unchanged')
        lines.push(
          ...f.content
            .trimEnd()
            .split('\n')
            .map((l) => `    ${l}`),
        );
    }
    if (r.jobs.length) lines.push(`jobs: ${r.jobs.join(', ')} (as ${r.user || 'the current user'})`);
    if (r.commands.length)
      lines.push(
        r.ran ? 'ran:' : r.dryRun ? 'then run:' : 'now run (or pass --enable):',
        ...r.commands.map((c) => `  ${c.join(' ')}`),
      );
    return lines;
  });
}

function kindOf(flags: { systemd?: boolean; crontab?: boolean }): 'systemd' | 'crontab' {
  if (flags.systemd === flags.crontab)
    throw new AttenduxError('USAGE', 'pass exactly one of --systemd and --crontab');
  return flags.systemd ? 'systemd' : 'crontab';
}

interface InstallFlags {
  systemd?: boolean;
  crontab?: boolean;
  dir?: string;
  user?: string;
  enable?: boolean;
  disable?: boolean;
  dryRun?: boolean;
  force?: boolean;
  crontabFile?: string;
}

function logEvent(ctx: CliContext, e: SchedulerEvent): void {
  if (ctx.json) {
    ctx.stdout.write(JSON.stringify(e) + '\n');
    return;
  }
  const quietOk = e.type === 'run' || e.type === 'done' || e.type === 'started';
  if (ctx.opts.quiet && quietOk) return;
  const line = (() => {
    switch (e.type) {
      case 'started':
        return `scheduler started: ${e.jobs.map((j) => `${j.id} (next ${j.next})`).join(', ') || 'no job is scheduled'}`;
      case 'run':
        return `${e.job}: started`;
      case 'done':
        return `${e.job}: ok in ${secs(e.result.run.durationMs)}${e.result.run.bytes !== null ? `, ${mb(e.result.run.bytes)}` : ''}`;
      case 'skipped':
        return `${e.job}: skipped: ${e.reason}`;
      case 'failed':
        return `${e.job}: FAILED: ${e.message}`;
      case 'warning':
        return `${e.job ? `${e.job}: ` : ''}warning: ${e.message}`;
      case 'stopping':
        return `stopping${e.waitingFor ? `: waiting for ${e.waitingFor} to finish` : ''}`;
      case 'stopped':
        return 'scheduler stopped';
    }
  })();
  (e.type === 'failed' || e.type === 'warning' ? ctx.stderr : ctx.stdout).write(`${e.at} ${line}\n`);
}

export function registerSchedule(program: Command): void {
  const schedule = program
    .command('schedule')
    .description('the jobs that keep an install safe: show, install (systemd or cron), run, status');

  scheduleShow(schedule);
  scheduleInstall(schedule);
  scheduleUninstall(schedule);
  scheduleExec(schedule);
  scheduleRun(schedule);
  scheduleStatus(schedule);
}

function scheduleShow(schedule: Command): void {
  schedule
    .command('show')
    .description('every job with its cron expression and next runs in the configured time zone')
    .option('--count <n>', 'how many next runs', intOption('--count', 1, 100), 3)
    .action(async (flags: { count: number }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { scheduleShow } = await import('../../core/schedule/status.js');
      const r = await scheduleShow({ ...ctx.location, hasCommand: hasCommandOf(cmd), count: flags.count });
      ctx.result(r, () => {
        const lines = [`time zone: ${r.timeZone}`];
        for (const j of r.jobs) {
          const state = !j.available ? `not available: ${j.unavailableReason}` : !j.enabled ? 'disabled' : '';
          lines.push(`${j.id.padEnd(19)} ${j.cron.padEnd(14)} ${j.command}${state ? `  [${state}]` : ''}`);
          for (const n of j.next) lines.push(`    ${n.local}${n.note ? `  (${n.note})` : ''}`);
        }
        return lines;
      });
    });
}

function scheduleInstall(schedule: Command): void {
  schedule
    .command('install')
    .description('write systemd units and timers (--systemd) or a crontab block (--crontab) for every job')
    .option('--systemd', 'attendux.service plus one .service/.timer pair per job')
    .option('--crontab', "a marked block in the user's crontab, or /etc/cron.d/attendux as root")
    .option('--dir <dir>', 'write here instead of /etc/systemd/system (or /etc/cron.d)')
    .option('--user <user>', 'OS user the jobs run as (default attendux; a user crontab: the current user)')
    .option('--enable', 'run the systemctl commands (daemon-reload, enable --now) instead of printing them')
    .option('--crontab-file <file>', 'edit this file as a user crontab instead of running crontab(1)')
    .option('--force', 'replace unit files that attendux did not write')
    .option('--dry-run', 'print what would be written, write nothing')
    .action(async (flags: InstallFlags, cmd: Command) => {
      const ctx = contextOf(cmd);
      const kind = kindOf(flags);
      const m = await import('../../core/schedule/install.js');
      const common = {
        ...ctx.location,
        hasCommand: hasCommandOf(cmd),
        user: flags.user,
        dryRun: flags.dryRun,
        force: flags.force,
      };
      if (kind === 'systemd') {
        if (flags.crontabFile) throw new AttenduxError('USAGE', '--crontab-file goes with --crontab');
        printInstall(ctx, await m.installSystemd({ ...common, dir: flags.dir, enable: flags.enable }));
      } else {
        if (flags.enable) throw new AttenduxError('USAGE', '--enable goes with --systemd');
        printInstall(ctx, await m.installCrontab({ ...common, dir: flags.dir, file: flags.crontabFile }));
      }
    });
}

function scheduleUninstall(schedule: Command): void {
  schedule
    .command('uninstall')
    .description(
      'remove exactly what `schedule install` wrote (units with its header line, the crontab block)',
    )
    .option('--systemd', 'the units and timers')
    .option('--crontab', 'the crontab block (or /etc/cron.d/attendux as root)')
    .option('--dir <dir>', 'where install wrote them')
    .option('--user <user>', 'whose crontab (root only)')
    .option('--crontab-file <file>', 'the file install --crontab-file edited')
    .option('--disable', 'run systemctl disable --now and daemon-reload instead of printing them')
    .option('--dry-run', 'print what would be removed, remove nothing')
    .action(async (flags: InstallFlags, cmd: Command) => {
      const ctx = contextOf(cmd);
      const kind = kindOf(flags);
      const m = await import('../../core/schedule/install.js');
      const common = {
        ...ctx.location,
        hasCommand: hasCommandOf(cmd),
        user: flags.user,
        dryRun: flags.dryRun,
      };
      printInstall(
        ctx,
        kind === 'systemd'
          ? await m.uninstallSystemd({ ...common, dir: flags.dir, enable: flags.disable })
          : await m.uninstallCrontab({ ...common, dir: flags.dir, file: flags.crontabFile }),
      );
    });
}

function scheduleExec(schedule: Command): void {
  schedule
    .command('exec <job>')
    .description(
      'run one job now as cron and systemd do: locked (exit 75 if running), recorded, hook on failure',
    )
    .addOption(new Option('--trigger <who>', 'recorded with the run (cron, systemd)').hideHelp())
    .action(async (job: string, flags: { trigger?: string }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { execJob } = await import('../../core/schedule/exec.js');
      const stop = new AbortController();
      // The first signal stops the job and lets the run be recorded (lifecycle.ts then does not exit: main()
      // decides the code); lifecycle's listeners also keep execa's exit handler from re-raising the signal.
      const offSignal = onGracefulStop(() => stop.abort());
      try {
        const r = await execJob({
          ...ctx.location,
          job,
          hasCommand: hasCommandOf(cmd),
          trigger: flags.trigger,
          signal: stop.signal,
        });
        for (const w of r.warnings) ctx.important(`warning: ${w}`);
        if (r.run.outcome === 'failure')
          throw new AttenduxError('JOB_FAILED', `job ${job} failed: ${r.run.error?.message ?? 'failed'}`, {
            details: { run: r.run },
          });
        if (r.run.outcome === 'skipped')
          throw new AttenduxError('JOB_LOCKED', `job ${job} skipped: ${r.run.error?.message ?? 'locked'}`, {
            details: { run: r.run },
          });
        if (ctx.json) return ctx.result(r, () => undefined);
        if (ctx.opts.quiet || !process.stdout.isTTY) return;
        ctx.result(
          r,
          () =>
            `${job}: ok in ${secs(r.run.durationMs)}${r.run.bytes !== null ? `, ${mb(r.run.bytes)}` : ''}`,
        );
      } finally {
        offSignal();
      }
    });
}

function scheduleRun(schedule: Command): void {
  schedule
    .command('run')
    .description(
      'foreground scheduler (containers, hosts without cron): the same jobs at the same times, one at a time',
    )
    .action(async (_f: unknown, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { runScheduler } = await import('../../core/schedule/scheduler.js');
      const stop = new AbortController();
      const offSignal = onGracefulStop(() => stop.abort());
      try {
        await runScheduler({
          ...ctx.location,
          hasCommand: hasCommandOf(cmd),
          stop: stop.signal,
          onEvent: (e) => logEvent(ctx, e),
        });
      } finally {
        offSignal();
      }
    });
}

function scheduleStatus(schedule: Command): void {
  schedule
    .command('status')
    .description(
      'last run, result and next run of every job; exit 1 when one is overdue or its last run failed',
    )
    .option('--prometheus <file>', 'also write node_exporter textfile metrics to this file')
    .action(async (flags: { prometheus?: string }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { scheduleStatus, writeScheduleMetrics } = await import('../../core/schedule/status.js');
      const st = await scheduleStatus({ ...ctx.location, hasCommand: hasCommandOf(cmd) });
      if (flags.prometheus) await writeScheduleMetrics(flags.prometheus, st);
      ctx.result(st, () =>
        table(
          st.jobs.map((j) => ({
            job: j.id,
            state: !j.available
              ? 'n/a'
              : !j.enabled
                ? 'disabled'
                : j.ok
                  ? 'ok'
                  : j.overdue
                    ? 'OVERDUE'
                    : 'FAILED',
            last: j.last ? `${j.last.startedAt} ${j.last.outcome}` : 'never',
            took: j.last ? secs(j.last.durationMs) : '-',
            size: j.last?.bytes != null ? mb(j.last.bytes) : '-',
            next: j.nextRun ?? '-',
          })),
          ['job', 'state', 'last', 'took', 'size', 'next'],
        )
          .concat(st.jobs.filter((j) => j.problem).map((j) => `${j.id}: ${j.problem}`))
          .concat(
            (st.offsite?.targets ?? []).map(
              (t) =>
                `${t.ok ? statusColor(ctx.paint, 'pass', 'ok  ') : statusColor(ctx.paint, 'fail', 'FAIL')} target ${t.name} (${t.type})${t.state?.lastSuccessAt ? `: last copy ${t.state.lastSuccessAt}` : ''}${t.problem ? `: ${t.problem}` : ''}`,
            ),
          ),
      );
      if (!st.ok) {
        throw new AttenduxError(
          'SCHEDULE_UNHEALTHY',
          `jobs need attention: ${[
            ...st.jobs.filter((j) => !j.ok).map((j) => `${j.id} ${j.overdue ? 'overdue' : 'failed'}`),
            ...(st.offsite?.targets ?? [])
              .filter((t) => !t.ok)
              .map((t) => `off-site target ${t.name} failing`),
          ].join(', ')}`,
          {
            hint: 'see `attendux schedule status`; run the job with `attendux schedule exec JOB`',
            resultPrinted: true,
          },
        );
      }
    });
}
