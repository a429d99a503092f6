import { createRequire } from 'node:module';
import type { CronExpression } from 'cron-parser';
import { AttenduxError } from '../../errors.js';

/*
 * Cron expressions are parsed by cron-parser (with its luxon time-zone support). It is loaded on first use,
 * not at import: the config schema validates expressions through this module, and a backup run whose config
 * has no schedule keys should not pay for loading it.
 */
const requireCjs = createRequire(import.meta.url);
let parserModule: typeof import('cron-parser') | undefined;
function parser(): typeof import('cron-parser') {
  return (parserModule ??= requireCjs('cron-parser') as typeof import('cron-parser'));
}

/** Is `tz` an IANA time zone this Node knows? */
export function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    // the throw is the answer: not a time zone
    return false;
  }
}

/**
 * Why `expr` is not a usable cron expression, or undefined when it is. Five fields (minute hour day month
 * weekday) or a `@daily`-style alias; six fields (a leading seconds field) are accepted for `schedule run`
 * only, which is how tests get a one-second schedule. cron-parser itself would accept four fields or an
 * empty string, which are typos here.
 */
export function cronProblem(expr: string): string | undefined {
  const text = expr.trim();
  if (!text) return 'is empty';
  if (!text.startsWith('@')) {
    const n = text.split(/\s+/).length;
    if (n < 5 || n > 6) return `has ${n} fields (want 5: minute hour day-of-month month day-of-week)`;
  }
  try {
    parser().CronExpressionParser.parse(text, { tz: 'UTC' });
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

export function hasSeconds(expr: string): boolean {
  const text = expr.trim();
  return !text.startsWith('@') && text.split(/\s+/).length === 6;
}

export function parseCron(expr: string, tz: string, from: Date): CronExpression {
  return parser().CronExpressionParser.parse(expr.trim(), { tz, currentDate: from });
}

/** The next `count` run times strictly after `from`. */
export function nextRuns(expr: string, tz: string, from: Date, count: number): Date[] {
  return parseCron(expr, tz, from)
    .take(count)
    .map((d) => d.toDate());
}

export function nextRun(expr: string, tz: string, from: Date): Date {
  return parseCron(expr, tz, from).next().toDate();
}

/**
 * The latest run time at or before `at`, as next() would have produced it. cron-parser's prev() does not
 * apply the daylight-saving shifts next() does (it misses the 02:00 run moved to 03:00 on the spring-forward
 * day, and finds a second 02:00 on the fall-back day that next() never runs), so it only gives a start
 * point two runs back, from which next() walks forward.
 */
export function previousRun(expr: string, tz: string, at: Date): Date {
  const back = parseCron(expr, tz, new Date(at.getTime() + 1));
  back.prev();
  const start = back.prev().toDate();
  const it = parseCron(expr, tz, new Date(start.getTime() - 2 * 3_600_000));
  let last = start;
  for (let i = 0; i < 10_000; i++) {
    const d = it.next().toDate();
    if (d > at) break;
    last = d;
  }
  return last;
}

/** Wall-clock time in a zone, `YYYY-MM-DD HH:MM[:SS]` plus the zone's abbreviation or offset. */
export function localTime(d: Date, tz: string, seconds = false): string {
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone: tz,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
    timeZoneName: 'shortOffset',
  }).formatToParts(d);
  const p = (t: string) => parts.find((x) => x.type === t)?.value ?? '';
  const time = `${p('hour')}:${p('minute')}${seconds ? `:${p('second')}` : ''}`;
  return `${p('year')}-${p('month')}-${p('day')} ${time} ${p('timeZoneName')}`;
}

function wallClock(d: Date, tz: string): string {
  return localTime(d, tz, true).replace(/ \S+$/, '');
}

/**
 * What a daylight-saving change does to this run, in words, or undefined when nothing. On the spring-forward
 * day a time inside the skipped hour does not exist: cron-parser (like Vixie cron) runs the job at the first
 * minute after the gap, so `0 2 * * *` in Europe/Berlin runs at 03:00. On the fall-back day a time inside the
 * repeated hour happens twice: it runs once, at the first.
 */
export function dstNote(expr: string, tz: string, run: Date): string | undefined {
  const fields = parseCron(expr, tz, new Date(run.getTime() - 1000)).fields;
  const wall = wallClock(run, tz);
  const hour = Number(wall.slice(11, 13));
  const minute = Number(wall.slice(14, 16));
  const hourWanted = nums(fields.hour.values).includes(hour);
  const minuteWanted = nums(fields.minute.values).includes(minute);
  if (!hourWanted || !minuteWanted) {
    return `the scheduled time does not exist on ${wall.slice(0, 10)} in ${tz} (clocks spring forward): runs at ${wall.slice(11, 16)} instead`;
  }
  const hourMs = 3_600_000;
  if (wallClock(new Date(run.getTime() + hourMs), tz) === wall) {
    return `${wall.slice(11, 16)} happens twice on ${wall.slice(0, 10)} in ${tz} (clocks fall back): runs once, at the first`;
  }
  return undefined;
}

const DAY_NAMES = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

/** `[1,2,3,5]` → `1..3,5`; two-digit padding for the time fields. */
function compress(values: number[], pad: number, name?: (v: number) => string): string {
  const sorted = [...new Set(values)].sort((a, b) => a - b);
  const out: string[] = [];
  const fmt = (v: number) => (name ? name(v) : String(v).padStart(pad, '0'));
  for (let i = 0; i < sorted.length; i++) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    if (j - i >= 2) out.push(`${fmt(sorted[i]!)}..${fmt(sorted[j]!)}`);
    else for (let k = i; k <= j; k++) out.push(fmt(sorted[k]!));
    i = j;
  }
  return out.join(',');
}

const nums = (vs: readonly (number | string)[]) => vs.filter((v): v is number => typeof v === 'number');

/**
 * The systemd OnCalendar= lines for a cron expression in a time zone, computed from cron-parser's parsed
 * fields so both agree on what the expression means. Cron runs a job when the day-of-month OR the weekday
 * matches if both are restricted; systemd ANDs them, so that case becomes two OnCalendar= lines (a timer
 * fires on the union of its lines). `L` and `#` have no systemd equivalent and are refused. Runs that cron
 * makes only because of a daylight-saving jump follow as dated lines (see springForwardRuns).
 */
export function toOnCalendar(expr: string, tz: string, from = new Date(), years = 10): string[] {
  if (hasSeconds(expr))
    throw new AttenduxError('CONFIG_INVALID', 'has a seconds field, which only `schedule run` supports');
  const f = parseCron(expr, tz, new Date()).fields;
  if (f.dayOfMonth.hasLastChar || f.dayOfWeek.hasLastChar || expr.includes('#'))
    throw new AttenduxError('CONFIG_INVALID', 'uses L or #, which systemd timers cannot express');
  const time = `${f.hour.isWildcard ? '*' : compress(nums(f.hour.values), 2)}:${f.minute.isWildcard ? '*' : compress(nums(f.minute.values), 2)}:00`;
  const month = f.month.isWildcard ? '*' : compress(nums(f.month.values), 2);
  const dom = f.dayOfMonth.isWildcard ? '*' : compress(nums(f.dayOfMonth.values), 2);
  const dows = nums(f.dayOfWeek.values).map((d) => d % 7);
  const dow = compress(dows, 0, (d) => DAY_NAMES[d]!);
  const zone = ` ${tz}`;
  const lines =
    !f.dayOfMonth.isWildcard && !f.dayOfWeek.isWildcard
      ? [`*-${month}-${dom} ${time}${zone}`, `${dow} *-${month}-* ${time}${zone}`]
      : [`${f.dayOfWeek.isWildcard ? '' : `${dow} `}*-${month}-${dom} ${time}${zone}`];
  return [...lines, ...springForwardRuns(expr, tz, from, years).map((d) => `${wallClock(d, tz)}${zone}`)];
}

/** Minutes east of UTC of a zone at an instant. */
function offsetMinutes(fmt: Intl.DateTimeFormat, d: Date): number {
  const name = fmt.formatToParts(d).find((p) => p.type === 'timeZoneName')?.value ?? 'GMT';
  const m = /GMT([+-])(\d{1,2})(?::(\d\d))?/.exec(name);
  return m ? (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3] ?? 0)) : 0;
}

/** The instants in [from, from + years) at which the zone's clocks jump forward. */
const gapCache = new Map<string, Date[]>();
export function springForwardInstants(tz: string, from: Date, years: number): Date[] {
  const key = `${tz} ${from.toISOString().slice(0, 10)} ${years}`;
  const hit = gapCache.get(key);
  if (hit) return hit;
  const out = scanSpringForward(tz, from, years);
  gapCache.set(key, out);
  return out;
}

function scanSpringForward(tz: string, from: Date, years: number): Date[] {
  const fmt = new Intl.DateTimeFormat('en-US', { timeZone: tz, timeZoneName: 'shortOffset' });
  const day = 86_400_000;
  const out: Date[] = [];
  const end = from.getTime() + years * 365.25 * day;
  // Whole minutes, so the binary search below lands on the minute of the jump itself.
  for (let t = Math.floor(from.getTime() / 60_000) * 60_000; t < end; t += day) {
    if (offsetMinutes(fmt, new Date(t + day)) <= offsetMinutes(fmt, new Date(t))) continue;
    let lo = t;
    let hi = t + day;
    while (hi - lo > 60_000) {
      const mid = lo + Math.floor((hi - lo) / 2 / 60_000) * 60_000 || lo + 60_000;
      if (offsetMinutes(fmt, new Date(mid)) > offsetMinutes(fmt, new Date(lo))) hi = mid;
      else lo = mid;
    }
    out.push(new Date(hi));
  }
  return out;
}

/**
 * The runs cron makes only because of a spring-forward gap: cron-parser (like cron) moves a time that does
 * not exist to the same distance after the jump (02:30 becomes 03:30), where systemd skips it altogether.
 * The timer gets those runs as dated OnCalendar= lines for the next `years`, so that a systemd timer and cron
 * run a job at the same instants, also the full backup at 02:00 on the change day.
 */
export function springForwardRuns(expr: string, tz: string, from: Date, years: number): Date[] {
  const out: Date[] = [];
  for (const jump of springForwardInstants(tz, from, years)) {
    const it = parseCron(expr, tz, new Date(jump.getTime() - 60_000));
    for (let i = 0; i < 200; i++) {
      const run = it.next().toDate();
      if (run.getTime() >= jump.getTime() + 3 * 3_600_000) break;
      if (dstNote(expr, tz, run)?.includes('spring forward')) out.push(run);
    }
  }
  return out;
}
