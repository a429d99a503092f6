import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { todaysBoard, type Board } from '../../core/attendance/board.js';
import { whoAmI } from '../../core/accounts/users.js';
import { decide, listCorrections } from '../../core/corrections/corrections.js';
import { listEmployees } from '../../core/people/employees.js';
import { teamTimesheets } from '../../core/reports/team-timesheets.js';
import type { Tx } from '../../core/service.js';
import type { Role } from '../../core/accounts/roles.js';
import { idParam, isoDate, uuid } from '../validate.js';
import type { ServerDeps } from '../deps.js';
import { html, type Html } from './html.js';
import { definePage } from './page-route.js';
import { dataTable, hoursMinutes, localDate, localTime, notice, opt, parseForm } from './forms.js';

const MANAGERS: readonly Role[] = ['owner', 'admin', 'manager', 'hr'];
/** Who may download the payroll export: the API route's roles (GET /api/v1/payroll/export). */
const PAYROLL: readonly Role[] = ['owner', 'admin', 'hr'];

const GEOFENCE_WORDS: Record<string, string> = {
  inside: 'inside',
  outside: 'outside the geofence',
  unknown: 'position unknown',
  not_required: 'no geofence',
};

function boardTable(b: Board): Html {
  if (!b.rows.length) return html`<p>No active employees in your teams.</p>`;
  return dataTable(
    'Board table',
    `Employees on ${b.day}`,
    ['Employee', 'Team', 'Status', 'Where', 'Notes'],
    b.rows.map((r) => {
      const status =
        r.status === 'in'
          ? html`<span class="ok">In since ${r.lastAt}</span>`
          : r.status === 'left'
            ? `Checked out at ${r.lastAt}`
            : html`<span class="muted">Not yet in</span>`;
      const where = r.geofence
        ? `${GEOFENCE_WORDS[r.geofence] ?? r.geofence}${r.site && r.geofence === 'inside' ? ` ${r.site}` : ''}`
        : '—';
      const notes = [
        r.outside ? html`<span class="tag bad">outside the geofence</span>` : '',
        r.flagged ? html`<span class="tag bad">flagged</span>` : '',
        r.offline ? html`<span class="tag">offline</span>` : '',
      ];
      return html`<tr>
        <th scope="row">
          ${r.fullName}${r.employeeNumber ? html` <span class="muted">(${r.employeeNumber})</span>` : ''}
        </th>
        <td>${r.team ?? '—'}</td>
        <td>${status}</td>
        <td>${where}</td>
        <td>${notes}</td>
      </tr>`;
    }),
  );
}

function boardSummary(b: Board): Html {
  const c = b.counts;
  return html`<ul class="summary" aria-label="Summary">
    <li><strong>${c.in}</strong> in</li>
    <li><strong>${c.notIn}</strong> not yet in</li>
    <li><strong>${c.left}</strong> checked out</li>
    <li><strong>${c.outside}</strong> outside the geofence</li>
    <li><strong>${c.flagged}</strong> flagged</li>
    <li><strong>${c.offline}</strong> checked in offline</li>
  </ul>`;
}

const CorrectionsQuery = z.object({ status: z.enum(['pending', 'approved', 'rejected']).default('pending') });
const Note = z.object({ note: z.string().trim().max(2000).optional() });

const ACTION_WORDS: Record<string, string> = { add: 'Add', change: 'Change', delete: 'Delete' };
const KIND_WORDS: Record<string, string> = { check_in: 'check-in', check_out: 'check-out' };

/** Names of the employees the caller may see (the same scoping as the lists they come with). */
async function employeeNames(tx: Tx): Promise<Map<string, string>> {
  const list = await listEmployees(tx, { limit: 1000, offset: 0 });
  return new Map(list.map((e) => [String(e.id), String(e.fullName)]));
}

/** A correction request row as the list query returns it (db/queries/corrections.ts CORRECTION_COLUMNS). */
interface CorrectionView {
  id: string;
  employeeId: string;
  requestedBy: string | null;
  action: string;
  eventId: number | null;
  proposedKind: string | null;
  proposedOccurredAt: Date | null;
  reason: string;
  status: string;
  decisionNote: string | null;
  createdAt: Date;
}

async function correctionsPage(tx: Tx, status: string, done: string | undefined) {
  // One connection per transaction: its queries run one after another.
  const rows = (await listCorrections(tx, { status })) as unknown[] as CorrectionView[];
  const names = await employeeNames(tx);
  const me = await whoAmI(tx);
  const tz = me.tenant?.timeZone;
  const list = rows.map((r) => {
    const who = names.get(String(r.employeeId)) ?? 'an employee';
    const proposal = [
      ACTION_WORDS[String(r.action)] ?? String(r.action),
      r.proposedKind ? ` a ${KIND_WORDS[String(r.proposedKind)] ?? String(r.proposedKind)}` : '',
      r.proposedOccurredAt ? ` at ${localTime(r.proposedOccurredAt, tz)}` : '',
      r.eventId ? ` (event ${String(r.eventId)})` : '',
    ].join('');
    const own = r.requestedBy === tx.caller.userId || r.employeeId === tx.caller.employeeId;
    return html`<li class="card">
      <h2>${who}: ${proposal}</h2>
      <p>Reason: ${String(r.reason)}</p>
      <p class="muted">Requested ${localTime(r.createdAt, tz)} · ${String(r.status)}</p>
      ${
        r.status === 'pending' && !own
          ? html`<form method="post" action="/corrections/${String(r.id)}/approve" class="stack">
              <label
                >Note for ${who} (optional) <textarea name="note" rows="2" maxlength="2000"></textarea>
              </label>
              <div class="buttons">
                <button type="submit">Approve</button>
                <button type="submit" class="secondary" formaction="/corrections/${String(r.id)}/reject">
                  Reject
                </button>
              </div>
            </form>`
          : r.status === 'pending'
            ? html`<p class="muted">Your own request: someone else decides on it.</p>`
            : r.decisionNote
              ? html`<p>Note: ${String(r.decisionNote)}</p>`
              : ''
      }
    </li>`;
  });
  return {
    title: 'Correction requests',
    body: html`${notice(done)}
      <form method="get" action="/corrections" class="inline">
        <label
          >Show
          <select name="status">
            ${(['pending', 'approved', 'rejected'] as const).map(
              (s) => html`<option value="${s}" ${s === status ? html`selected` : ''}>${s}</option>`,
            )}
          </select></label
        >
        <button type="submit" class="secondary">Show requests</button>
      </form>
      ${
        list.length
          ? html`<ul class="cards">
              ${list}
            </ul>`
          : html`<p>No ${status} requests.</p>`
      }`,
  };
}

const DONE_WORDS: Record<string, string> = {
  approve: 'The request was approved and the attendance changed.',
  reject: 'The request was rejected; the attendance stays as it was.',
};

/** Monday of the week of `day` (YYYY-MM-DD). */
function mondayOf(day: string): string {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() - ((d.getUTCDay() + 6) % 7));
  return d.toISOString().slice(0, 10);
}

const TimesheetsQuery = z.object({ from: isoDate, to: isoDate, employeeId: uuid.optional() });

async function timesheetsPage(tx: Tx, query: Record<string, string>, role: Role) {
  const me = await whoAmI(tx);
  const today = localDate(tx.now(), me.tenant?.timeZone);
  const q = parseForm(TimesheetsQuery, {
    from: opt(query.from) ?? mondayOf(today),
    to: opt(query.to) ?? today,
    employeeId: opt(query.employeeId),
  });
  const employees = await listEmployees(tx, { limit: 1000, offset: 0 });
  const sheets = await teamTimesheets(tx, q, q.employeeId);
  const rows = sheets.map(
    (t) =>
      html`<tr>
        <th scope="row">${t.fullName}</th>
        <td>${hoursMinutes(t.totals.workedMinutes)}</td>
        <td>${hoursMinutes(t.totals.regularMinutes)}</td>
        <td>${hoursMinutes(t.totals.overtimeMinutes)}</td>
        <td>${t.days.length}</td>
      </tr>`,
  );
  const days = q.employeeId && sheets[0] ? dayTable(sheets[0].days) : '';
  return {
    title: 'Timesheets',
    body: html`<form method="get" action="/timesheets" class="inline">
        <label>From <input type="date" name="from" value="${q.from}" required /></label>
        <label>To <input type="date" name="to" value="${q.to}" required /></label>
        <label
          >Employee
          <select name="employeeId">
            <option value="">Everyone I may see</option>
            ${employees.map(
              (e) =>
                html`<option value="${String(e.id)}" ${e.id === q.employeeId ? html`selected` : ''}>
                  ${String(e.fullName)}
                </option>`,
            )}
          </select></label
        >
        <button type="submit">Show timesheets</button>
      </form>
      ${dataTable('Timesheets table', html`Worked time from ${q.from} to ${q.to}`, ['Employee', 'Worked', 'Regular', 'Overtime', 'Days worked'], rows)}
      ${days} ${PAYROLL.includes(role) ? payrollForm(q.from, q.to) : ''}`,
  };
}

function dayTable(days: { day: string; workedMinutes: number; overtimeMinutes: number }[]): Html {
  return html`<h2>Days</h2>
    ${
      days.length
        ? html`<ul>
            ${days.map(
              (d) =>
                html`<li>
                  ${d.day}:
                  ${hoursMinutes(d.workedMinutes)}${d.overtimeMinutes ? ` (overtime ${hoursMinutes(d.overtimeMinutes)})` : ''}
                </li>`,
            )}
          </ul>`
        : html`<p>No worked time in this range.</p>`
    }`;
}

/** The payroll export is the API's route (a session may call it): the browser downloads its CSV attachment. */
function payrollForm(from: string, to: string): Html {
  return html`<h2>Payroll export</h2>
    <p>
      Every employee's regular and overtime minutes and gross pay for the range, as a CSV file for payroll.
    </p>
    <form method="get" action="/api/v1/payroll/export" class="inline">
      <label>From <input type="date" name="from" value="${from}" required /></label>
      <label>To <input type="date" name="to" value="${to}" required /></label>
      <input type="hidden" name="format" value="csv" />
      <button type="submit">Download payroll CSV</button>
    </form>`;
}

/** Today's board, correction requests, timesheets and the payroll export, for managers, HR and up. */
export function managePages(app: FastifyInstance, deps: ServerDeps): void {
  definePage(app, deps, {
    method: 'GET',
    url: '/board',
    roles: MANAGERS,
    handler: async ({ tx }) => {
      const b = await todaysBoard(tx);
      return {
        title: "Today's board",
        body: html`<p>Attendance on ${b.day} (times in the company's time zone).</p>
          ${boardSummary(b)} ${boardTable(b)}`,
      };
    },
  });
  definePage(app, deps, {
    method: 'GET',
    url: '/corrections',
    roles: MANAGERS,
    handler: ({ tx, query }) =>
      correctionsPage(
        tx,
        parseForm(CorrectionsQuery, { status: opt(query.status) }).status,
        DONE_WORDS[query.done ?? ''],
      ),
  });
  for (const decision of ['approve', 'reject'] as const) {
    definePage(app, deps, {
      method: 'POST',
      url: `/corrections/:id/${decision}`,
      roles: MANAGERS,
      handler: async ({ tx, req, form }) => {
        const { note } = parseForm(Note, { note: opt(form.note) });
        await decide(tx, idParam(req.params), decision, note);
        return { redirect: `/corrections?done=${decision}` };
      },
    });
  }
  definePage(app, deps, {
    method: 'GET',
    url: '/timesheets',
    roles: MANAGERS,
    handler: ({ tx, query, viewer }) => timesheetsPage(tx, query, viewer.role),
  });
}
