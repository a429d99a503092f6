import { execFileSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  cronProblem,
  dstNote,
  localTime,
  nextRuns,
  previousRun,
  toOnCalendar,
} from '../../src/core/schedule/cron.js';
import { applyEnvOverrides, validateConfig } from '../../src/core/config/load.js';
import { DEFAULT_JOBS } from '../../src/core/schedule/jobs.js';
import { planJobs } from '../../src/core/schedule/plan.js';
import { AttenduxError } from '../../src/errors.js';
import { emptyRecord } from '../../src/core/schedule/runs.js';
import { jobStatus, scheduleShow } from '../../src/core/schedule/status.js';

const BERLIN = 'Europe/Berlin';
// 2026-03-29 02:00 CET: clocks jump to 03:00 CEST. 2026-10-25 03:00 CEST: back to 02:00 CET.
const BEFORE_SPRING = new Date('2026-03-28T12:00:00Z');
const BEFORE_FALL = new Date('2026-10-24T12:00:00Z');

const iso = (ds: Date[]) => ds.map((d) => d.toISOString());
const local = (ds: Date[]) => ds.map((d) => localTime(d, BERLIN));

describe('next runs of each default job across the spring-forward change in Europe/Berlin', () => {
  const config = validateConfig({ schedule: { timeZone: BERLIN } }, 'test');
  const jobs = new Map(planJobs(config, () => true).map((j) => [j.id, j]));

  it('covers every default job', () => {
    expect([...jobs.keys()]).toEqual(DEFAULT_JOBS.map((j) => j.id));
    for (const j of jobs.values()) expect(j.timeZone).toBe(BERLIN);
  });

  it('backup-full (0 2 * * *) runs at 03:00 on the day 02:00 does not exist, and says so', () => {
    const runs = nextRuns(jobs.get('backup-full')!.cron, BERLIN, BEFORE_SPRING, 3);
    expect(local(runs)).toEqual([
      '2026-03-29 03:00 GMT+2',
      '2026-03-30 02:00 GMT+2',
      '2026-03-31 02:00 GMT+2',
    ]);
    expect(iso(runs)).toEqual([
      '2026-03-29T01:00:00.000Z',
      '2026-03-30T00:00:00.000Z',
      '2026-03-31T00:00:00.000Z',
    ]);
    expect(dstNote('0 2 * * *', BERLIN, runs[0]!)).toBe(
      'the scheduled time does not exist on 2026-03-29 in Europe/Berlin (clocks spring forward): runs at 03:00 instead',
    );
    expect(dstNote('0 2 * * *', BERLIN, runs[1]!)).toBeUndefined();
  });

  it('backup-incremental (0 */6 * * *) keeps its wall-clock hours: the night is one hour shorter', () => {
    const runs = nextRuns(jobs.get('backup-incremental')!.cron, BERLIN, new Date('2026-03-28T20:00:00Z'), 4);
    expect(local(runs)).toEqual([
      '2026-03-29 00:00 GMT+1',
      '2026-03-29 06:00 GMT+2',
      '2026-03-29 12:00 GMT+2',
      '2026-03-29 18:00 GMT+2',
    ]);
    // 00:00 CET to 06:00 CEST is five real hours.
    expect(runs[1]!.getTime() - runs[0]!.getTime()).toBe(5 * 3_600_000);
  });

  it('backup-config (*/15) skips nothing real: 01:45 CET is followed by 03:00 CEST, 15 minutes later', () => {
    const runs = nextRuns(jobs.get('backup-config')!.cron, BERLIN, new Date('2026-03-29T00:40:00Z'), 3);
    expect(local(runs)).toEqual([
      '2026-03-29 01:45 GMT+1',
      '2026-03-29 03:00 GMT+2',
      '2026-03-29 03:15 GMT+2',
    ]);
    expect(runs[1]!.getTime() - runs[0]!.getTime()).toBe(15 * 60_000);
  });

  it('the daily jobs at 03:00 or later keep their local time on the change day', () => {
    for (const [id, hhmm] of [
      ['backup-prune', '03:30'],
      ['audit-verify', '04:15'],
      ['audit-purge', '04:45'],
      ['retention-apply', '05:00'],
      ['dsar-overdue', '08:00'],
    ] as const) {
      const runs = nextRuns(jobs.get(id)!.cron, BERLIN, BEFORE_SPRING, 2);
      expect(local(runs), id).toEqual([`2026-03-29 ${hhmm} GMT+2`, `2026-03-30 ${hhmm} GMT+2`]);
      expect(runs[1]!.getTime() - runs[0]!.getTime(), id).toBe(24 * 3_600_000);
    }
  });

  it('restore-drill (weekly, Sunday 05:00) runs on the change day itself, in summer time', () => {
    const runs = nextRuns(jobs.get('restore-drill')!.cron, BERLIN, BEFORE_SPRING, 2);
    expect(local(runs)).toEqual(['2026-03-29 05:00 GMT+2', '2026-04-05 05:00 GMT+2']);
    expect(runs[1]!.getTime() - runs[0]!.getTime()).toBe(7 * 24 * 3_600_000);
  });

  it('on the fall-back day a time in the repeated hour runs once, at the first, and says so', () => {
    const runs = nextRuns('30 2 * * *', BERLIN, BEFORE_FALL, 2);
    expect(iso(runs)).toEqual(['2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z']);
    expect(dstNote('30 2 * * *', BERLIN, runs[0]!)).toMatch(
      /happens twice on 2026-10-25 .*runs once, at the first/,
    );
    // The full backup at 02:00 is inside the repeated hour too, and also runs once.
    const full = nextRuns('0 2 * * *', BERLIN, BEFORE_FALL, 2);
    expect(iso(full)).toEqual(['2026-10-25T00:00:00.000Z', '2026-10-26T01:00:00.000Z']);
  });

  it('previousRun is the latest scheduled time at or before the instant', () => {
    expect(previousRun('0 2 * * *', BERLIN, new Date('2026-03-29T01:00:00.000Z')).toISOString()).toBe(
      '2026-03-29T01:00:00.000Z',
    );
    expect(previousRun('0 2 * * *', BERLIN, new Date('2026-03-29T00:59:00Z')).toISOString()).toBe(
      '2026-03-28T01:00:00.000Z',
    );
    // Fall back: 02:00 happens at 00:00Z and again at 01:00Z; only the first is a run.
    expect(previousRun('0 2 * * *', BERLIN, new Date('2026-10-25T01:30:00Z')).toISOString()).toBe(
      '2026-10-25T00:00:00.000Z',
    );
    expect(previousRun('*/15 * * * *', 'UTC', new Date('2026-05-01T10:14:59Z')).toISOString()).toBe(
      '2026-05-01T10:00:00.000Z',
    );
  });
});

describe('cron expression validation', () => {
  it('accepts five fields, aliases and a seconds field', () => {
    for (const ok of ['0 2 * * *', '*/15 * * * *', '@daily', '* * * * * *', '0 5 * * sun', '0 0 1,15 * 1-5'])
      expect(cronProblem(ok), ok).toBeUndefined();
  });

  it('names what is wrong', () => {
    expect(cronProblem('61 * * * *')).toMatch(/61 expected range 0-59/);
    expect(cronProblem('0 2 * *')).toMatch(/has 4 fields/);
    expect(cronProblem('')).toBe('is empty');
    expect(cronProblem('0 25 * * *')).toMatch(/25/);
    expect(cronProblem('every day')).toBeDefined();
  });

  it('rejects a bad expression at config load, naming the key and the expression (exit 2)', () => {
    let err: unknown;
    try {
      validateConfig({ schedule: { jobs: { 'backup-prune': { cron: '0 26 * * *' } } } }, 'attendux.json');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AttenduxError);
    expect((err as AttenduxError).exitCode).toBe(2);
    expect((err as AttenduxError).message).toMatch(
      /^attendux\.json: key "schedule\.jobs\.backup-prune\.cron": invalid cron expression "0 26 \* \* \*": /,
    );
    expect(() => validateConfig({ backup: { schedule: { full: '0 2 * *' } } }, 'f')).toThrow(
      /key "backup\.schedule\.full": invalid cron expression "0 2 \* \*"/,
    );
    expect(() => validateConfig({ schedule: { timeZone: 'Mars/Olympus' } }, 'f')).toThrow(
      /key "schedule\.timeZone": unknown time zone "Mars\/Olympus"/,
    );
    expect(() => validateConfig({ schedule: { jobs: { typo: { cron: '0 1 * * *' } } } }, 'f')).toThrow(
      /unknown job "typo"/,
    );
    expect(() => validateConfig({ schedule: { jobs: { 'backup-full': { exec: ['rm'] } } } }, 'f')).toThrow(
      /is built in: its command cannot be replaced/,
    );
  });
});

/**
 * systemd's own reading of a timer's OnCalendar= lines: the first `n` elapses after a base time (a timer
 * fires on the union of its lines), as UTC ISO strings.
 */
function systemdNext(specs: string[], base: Date, n: number): string[] {
  const all = new Set<string>();
  for (const spec of specs) {
    const out = execFileSync(
      'systemd-analyze',
      ['calendar', `--iterations=${n}`, `--base-time=@${Math.floor(base.getTime() / 1000)}`, spec],
      { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } },
    );
    for (const m of out.matchAll(/(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC/g))
      all.add(new Date(`${m[1]!.replace(' ', 'T')}Z`).toISOString());
  }
  return [...all].sort().slice(0, n);
}

describe('cron to systemd OnCalendar=', () => {
  it('turns lists, ranges, steps and weekdays into calendar specs', () => {
    expect(toOnCalendar('0 2 * * *', 'UTC')).toEqual(['*-*-* 02:00:00 UTC']);
    // systemd skips a time that does not exist; cron runs it after the jump: dated lines make up for it.
    expect(toOnCalendar('0 2 * * *', BERLIN, new Date('2026-01-01T00:00:00Z'), 2)).toEqual([
      '*-*-* 02:00:00 Europe/Berlin',
      '2026-03-29 03:00:00 Europe/Berlin',
      '2027-03-28 03:00:00 Europe/Berlin',
    ]);
    expect(toOnCalendar('30 2 * * *', BERLIN, new Date('2026-01-01T00:00:00Z'), 1)).toEqual([
      '*-*-* 02:30:00 Europe/Berlin',
      '2026-03-29 03:30:00 Europe/Berlin',
    ]);
    expect(toOnCalendar('*/15 * * * *', BERLIN)).toEqual(['*-*-* *:00,15,30,45:00 Europe/Berlin']);
    expect(toOnCalendar('*/15 * * * *', 'UTC')).toEqual(['*-*-* *:00,15,30,45:00 UTC']);
    expect(toOnCalendar('0 */6 * * *', 'UTC')).toEqual(['*-*-* 00,06,12,18:00:00 UTC']);
    expect(toOnCalendar('0 5 * * 0', 'UTC')).toEqual(['Sun *-*-* 05:00:00 UTC']);
    expect(toOnCalendar('30 8 * * 1-5', 'UTC')).toEqual(['Mon..Fri *-*-* 08:30:00 UTC']);
    // Both day fields restricted: cron ORs them, so two lines.
    expect(toOnCalendar('0 1 1 * 0', 'UTC')).toEqual(['*-*-01 01:00:00 UTC', 'Sun *-*-* 01:00:00 UTC']);
    expect(() => toOnCalendar('* * * * * *', 'UTC')).toThrow(/seconds/);
    expect(() => toOnCalendar('0 0 L * *', 'UTC')).toThrow(/L or #/);
  });

  it('systemd fires each default job at the times cron-parser computes, across both DST changes', () => {
    const config = validateConfig({ schedule: { timeZone: BERLIN } }, 'test');
    for (const j of planJobs(config, () => true)) {
      const specs = toOnCalendar(j.cron, j.timeZone, new Date('2026-01-01T00:00:00Z'), 2);
      for (const base of [
        BEFORE_SPRING,
        BEFORE_FALL,
        new Date('2026-03-29T00:40:00Z'),
        new Date('2027-03-27T12:00:00Z'),
      ]) {
        expect(systemdNext(specs, base, 4), `${j.id} from ${base.toISOString()}`).toEqual(
          iso(nextRuns(j.cron, j.timeZone, base, 4)),
        );
      }
    }
  });
});

describe('schedule show and overdue (core)', () => {
  it('show says on the spring-forward day that the full backup runs at 03:00', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'attendux-show-'));
    const configPath = join(dir, 'attendux.json');
    await writeFile(configPath, JSON.stringify({ dataDir: 'data', schedule: { timeZone: BERLIN } }));
    const r = await scheduleShow({ configPath, hasCommand: () => true, now: BEFORE_SPRING });
    const full = r.jobs.find((j) => j.id === 'backup-full')!;
    expect(full.next[0]).toEqual({
      at: '2026-03-29T01:00:00.000Z',
      local: '2026-03-29 03:00 GMT+2',
      note: 'the scheduled time does not exist on 2026-03-29 in Europe/Berlin (clocks spring forward): runs at 03:00 instead',
    });
    expect(full.next[1]).toEqual({ at: '2026-03-30T00:00:00.000Z', local: '2026-03-30 02:00 GMT+2' });
  });

  it('a job is overdue when a scheduled time past its grace has no run started at or after it', () => {
    const config = validateConfig({ schedule: { timeZone: BERLIN } }, 'test');
    const full = planJobs(config, () => true).find((j) => j.id === 'backup-full')!; // grace 120 min
    const rec = (startedAt: string | null, outcome: 'success' | 'failure' = 'success') => ({
      ...emptyRecord('backup-full'),
      lastStarted: startedAt
        ? {
            job: 'backup-full',
            outcome,
            startedAt,
            finishedAt: startedAt,
            durationMs: 1,
            exitCode: 0,
            bytes: 1,
            pid: 1,
            trigger: 't',
          }
        : null,
    });
    const at = (iso: string) => new Date(iso);
    // 2026-03-29: the run is due at 01:00Z (03:00 CEST); grace ends 03:00Z.
    expect(jobStatus(full, rec('2026-03-28T01:00:05Z'), at('2026-03-29T02:59:00Z'), null).overdue).toBe(
      false,
    );
    const late = jobStatus(full, rec('2026-03-28T01:00:05Z'), at('2026-03-29T03:01:00Z'), null);
    expect([late.overdue, late.missed, late.ok]).toEqual([true, '2026-03-29T01:00:00.000Z', false]);
    expect(jobStatus(full, rec('2026-03-29T01:00:02Z'), at('2026-03-29T03:01:00Z'), null).ok).toBe(true);
    // Never ran: overdue only once the schedule has been installed before the missed time.
    expect(jobStatus(full, rec(null), at('2026-03-29T03:01:00Z'), null).overdue).toBe(false);
    expect(jobStatus(full, rec(null), at('2026-03-29T03:01:00Z'), at('2026-03-29T00:00:00Z')).overdue).toBe(
      true,
    );
    expect(jobStatus(full, rec(null), at('2026-03-29T03:01:00Z'), at('2026-03-29T02:00:00Z')).overdue).toBe(
      false,
    );
    // A failed last run is a problem even when on time.
    const failed = jobStatus(full, rec('2026-03-29T01:00:02Z', 'failure'), at('2026-03-29T03:01:00Z'), null);
    expect([failed.overdue, failed.ok]).toEqual([false, false]);
    expect(failed.problem).toMatch(/^last run failed at /);
    // A disabled job is never overdue.
    expect(
      jobStatus({ ...full, enabled: false }, rec(null), at('2026-03-29T03:01:00Z'), at('2020-01-01')).ok,
    ).toBe(true);
  });
});

describe('schedule and notify keys from the environment', () => {
  it('ATTENDUX_SCHEDULE_JOBS takes JSON; ATTENDUX_NOTIFY_COMMAND a shell line or a JSON argv', () => {
    const raw = applyEnvOverrides(
      {},
      {
        ATTENDUX_SCHEDULE_JOBS: '{"backup-full":{"cron":"0 3 * * *"}}',
        ATTENDUX_SCHEDULE_TIME_ZONE: 'Europe/Berlin',
        ATTENDUX_NOTIFY_COMMAND: 'mail -s "attendux" root',
        ATTENDUX_NOTIFY_PING_URL: 'https://hc.example/ping/{job}',
      },
    );
    const c = validateConfig(raw, 'env');
    expect(c.schedule.jobs['backup-full']).toEqual({ cron: '0 3 * * *' });
    expect(c.schedule.timeZone).toBe('Europe/Berlin');
    expect(c.notify.command).toBe('mail -s "attendux" root');
    expect(c.notify.pingUrl).toBe('https://hc.example/ping/{job}');
    const argv = validateConfig(
      applyEnvOverrides({}, { ATTENDUX_NOTIFY_COMMAND: '["/usr/local/bin/alert","--x"]' }),
      'env',
    );
    expect(argv.notify.command).toEqual(['/usr/local/bin/alert', '--x']);
    expect(() => validateConfig({ notify: { pingUrl: 'ftp://x' } }, 'f')).toThrow(
      /key "notify\.pingUrl": must be an http\(s\) URL/,
    );
  });
});
