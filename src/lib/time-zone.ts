/** Wall-clock dates and times in a company's time zone (IANA), with the platform's Intl only. */

function parts(d: Date, timeZone: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of new Intl.DateTimeFormat('en-CA', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).formatToParts(d))
    out[p.type] = p.value;
  return out;
}

/** The day (YYYY-MM-DD) an instant falls on in a zone. */
export function dayIn(d: Date, timeZone: string): string {
  const p = parts(d, timeZone);
  return `${p.year}-${p.month}-${p.day}`;
}

/** The wall-clock time (HH:MM, 24 h) of an instant in a zone. */
export function clockIn(d: Date, timeZone: string): string {
  const p = parts(d, timeZone);
  return `${p.hour}:${p.minute}`;
}

/** Milliseconds the zone's wall clock is ahead of UTC at an instant. */
function offsetMs(d: Date, timeZone: string): number {
  const p = parts(d, timeZone);
  const wall = Date.UTC(+p.year!, +p.month! - 1, +p.day!, +p.hour!, +p.minute!);
  return wall - Math.floor(d.getTime() / 60_000) * 60_000;
}

/**
 * The instant of a wall-clock time (`YYYY-MM-DDTHH:MM`, as an <input type="datetime-local"> sends it) in a zone;
 * undefined when it is not one. A time in a spring-forward gap lands after the jump.
 */
export function instantIn(local: string, timeZone: string): Date | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})$/.exec(local);
  if (!m) return undefined;
  const wall = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!);
  const check = new Date(wall);
  if (Number.isNaN(wall) || check.toISOString().slice(0, 16) !== local) return undefined;
  // Two rounds: the offset at the first guess may differ from the offset at the answer across a DST change.
  let t = wall - offsetMs(new Date(wall), timeZone);
  t = wall - offsetMs(new Date(t), timeZone);
  return new Date(t);
}

/** A day plus n days (YYYY-MM-DD, calendar arithmetic). */
export function addDays(day: string, n: number): string {
  return new Date(Date.parse(`${day}T00:00:00Z`) + n * 86_400_000).toISOString().slice(0, 10);
}

/** The Monday of the ISO week a day falls in. */
export function mondayOf(day: string): string {
  const dow = new Date(`${day}T00:00:00Z`).getUTCDay(); // 0 = Sunday
  return addDays(day, -((dow + 6) % 7));
}
