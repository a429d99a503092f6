import type { FastifyInstance } from 'fastify';
import { listSites } from '../../core/people/sites.js';
import { myWeek } from '../../core/reports/week.js';
import type { Row } from '../../db/queries/people.js';
import { addDays, clockIn, dayIn } from '../../lib/time-zone.js';
import { ALL_ROLES } from '../route.js';
import type { ServerDeps } from '../deps.js';
import { html, type Html } from './html.js';
import { definePage } from './page-route.js';

/** "Mon 30 Nov" for a day (YYYY-MM-DD). */
export function dayLabel(day: string): string {
  return new Intl.DateTimeFormat('en-GB', {
    weekday: 'short',
    day: 'numeric',
    month: 'short',
    timeZone: 'UTC',
  }).format(new Date(`${day}T12:00:00Z`));
}

/** "8 h 30 min", "45 min", "0 min". */
export function duration(minutes: number): string {
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  return h ? `${h} h${m ? ` ${m} min` : ''}` : `${m} min`;
}

/** Site names by id, for saying where a check was. */
export async function siteNames(tx: Parameters<typeof listSites>[0]): Promise<Map<string, string>> {
  return new Map((await listSites(tx)).map((s) => [s.id as string, s.name as string]));
}

/** One check in words: "Check-in at 09:02, inside HQ, sent late (offline)". */
export function eventWords(e: Row, timeZone: string, sites: Map<string, string>): string {
  const kind = e.kind === 'check_in' ? 'Check-in' : 'Check-out';
  const site = sites.get(e.siteId as string) ?? 'a site';
  const where =
    e.geofence === 'inside'
      ? `inside ${site}`
      : e.geofence === 'outside'
        ? `outside ${site}`
        : e.geofence === 'unknown'
          ? e.siteId
            ? `at the edge of ${site}`
            : 'without a position'
          : 'no position check';
  const notes = [
    e.flagged ? 'flagged for review' : '',
    e.offline ? 'sent late (offline)' : '',
    e.correctionId ? 'corrected' : '',
  ].filter(Boolean);
  return `${kind} at ${clockIn(e.occurredAt as Date, timeZone)}, ${[where, ...notes].join(', ')}`;
}

type Week = Awaited<ReturnType<typeof myWeek>>;

function daysTable(w: Week): Html {
  const byDay = new Map(w.days.map((d) => [d.day, d]));
  const rows = Array.from({ length: 7 }, (_, i) => {
    const day = addDays(w.from, i);
    const d = byDay.get(day);
    return html`<tr>
      <th scope="row">${dayLabel(day)}</th>
      <td>${duration(d?.workedMinutes ?? 0)}</td>
      <td>${duration(d?.regularMinutes ?? 0)}</td>
      <td>${duration(d?.overtimeMinutes ?? 0)}</td>
    </tr>`;
  });
  return html`<div class="table-wrap">
    <table>
      <caption class="muted">
        Worked time per day (${w.timeZone})
      </caption>
      <thead>
        <tr>
          <th scope="col">Day</th>
          <th scope="col">Worked</th>
          <th scope="col">Regular</th>
          <th scope="col">Overtime</th>
        </tr>
      </thead>
      <tbody>
        ${rows}
      </tbody>
      <tfoot>
        <tr>
          <th scope="row">Total</th>
          <td>${duration(w.totals.workedMinutes)}</td>
          <td>${duration(w.totals.regularMinutes)}</td>
          <td>${duration(w.totals.overtimeMinutes)}</td>
        </tr>
      </tfoot>
    </table>
  </div>`;
}

function weekBody(w: Week, sites: Map<string, string>): Html {
  const checks = w.events.map(
    (e) =>
      html`<li>
        ${dayLabel(dayIn(e.occurredAt as Date, w.timeZone))}: ${eventWords(e, w.timeZone, sites)}
      </li>`,
  );
  return html`<p>
      <strong>${dayLabel(w.from)} to ${dayLabel(w.to)} ${w.to.slice(0, 4)}</strong>: you worked
      ${duration(w.totals.workedMinutes)}${
        w.totals.overtimeMinutes ? html`, of which ${duration(w.totals.overtimeMinutes)} overtime` : ''
      }.
    </p>
    <nav class="pager" aria-label="Weeks">
      <a href="/timesheet?week=${w.prev}">Previous week</a>
      <a href="/timesheet">This week</a>
      <a href="/timesheet?week=${w.next}">Next week</a>
    </nav>
    ${daysTable(w)}
    <h2>My checks this week</h2>
    ${
      checks.length
        ? html`<ul>
            ${checks}
          </ul>`
        : html`<p>No checks this week.</p>`
    }
    <p>Something wrong or missing? <a href="/corrections/new">Request a correction</a>.</p>`;
}

/** My week's timesheet: worked, regular and overtime time per day, and the week's checks in words. */
export function myWeekPages(app: FastifyInstance, deps: ServerDeps): void {
  definePage(app, deps, {
    method: 'GET',
    url: '/timesheet',
    roles: ALL_ROLES,
    async handler({ tx, query }) {
      if (!tx.caller.employeeId)
        return {
          title: 'My week',
          body: html`<p>Your user is not linked to an employee, so there is no timesheet of yours.</p>`,
        };
      const w = await myWeek(tx, query.week);
      return { title: 'My week', body: weekBody(w, await siteNames(tx)) };
    },
  });
}
