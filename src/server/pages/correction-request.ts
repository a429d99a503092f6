import type { FastifyInstance } from 'fastify';
import { listEvents } from '../../core/attendance/checkin.js';
import { listCorrections, requestCorrection } from '../../core/corrections/corrections.js';
import type { Row } from '../../db/queries/people.js';
import { dayIn, instantIn } from '../../lib/time-zone.js';
import { ALL_ROLES } from '../route.js';
import { CorrectionCreate } from '../routes/attendance.js';
import type { ServerDeps } from '../deps.js';
import { html, type Html } from './html.js';
import type { Viewer } from './layout.js';
import { dayLabel, eventWords, siteNames } from './my-week.js';
import { definePage, type PageContext, type PageResult } from './page-route.js';

/** How far back the form offers my checks to correct. */
const PICK_DAYS = 31;

const ACTIONS = [
  ['add', 'A check is missing: add one'],
  ['change', 'A check has the wrong time or kind: change it'],
  ['delete', 'A check should not be there: remove it'],
] as const;

const ACTION_WORDS: Record<string, string> = {
  add: 'add a missing check',
  change: 'change a check',
  delete: 'remove a check',
};

const STATUS_WORDS: Record<string, string> = {
  pending: 'waiting for a decision',
  approved: 'approved and applied',
  rejected: 'rejected',
};

interface FormData {
  viewer: Viewer;
  events: Row[];
  sites: Map<string, string>;
  mine: Row[];
}

function requestForm(d: FormData, problem?: string, notice?: string): Html {
  const tz = d.viewer.timeZone;
  const label = (e: Row) => `${dayLabel(dayIn(e.occurredAt as Date, tz))}: ${eventWords(e, tz, d.sites)}`;
  return html`${notice ? html`<p role="status" class="ok">${notice}</p>` : ''}
    ${problem ? html`<p role="alert" class="problem">${problem}</p>` : ''}
    <form method="post" action="/corrections/new" class="stack">
      <label
        >What is wrong
        <select name="action" required>
          ${ACTIONS.map(([v, text]) => html`<option value="${v}">${text}</option>`)}
        </select></label
      >
      <label
        >Which check (to change or remove)
        <select name="eventId">
          <option value="">None: a check is missing</option>
          ${d.events.map((e) => html`<option value="${String(e.id)}">${label(e)}</option>`)}
        </select></label
      >
      <label
        >Kind (for a missing check, or to change it)
        <select name="proposedKind">
          <option value="">Keep as it is</option>
          <option value="check_in">Check-in</option>
          <option value="check_out">Check-out</option>
        </select></label
      >
      <label
        >Date and time (${tz}; for a missing check, or to change it)
        <input name="proposedAt" type="datetime-local"
      /></label>
      <label
        >Reason
        <textarea name="reason" required maxlength="2000" rows="3"></textarea>
      </label>
      <button type="submit">Send the request</button>
    </form>
    <h2>My requests</h2>
    ${
      d.mine.length
        ? html`<ul>
            ${d.mine.map(
              (c) =>
                html`<li>
                  ${dayLabel(dayIn(c.createdAt as Date, tz))}:
                  ${ACTION_WORDS[c.action as string] ?? String(c.action)} (“${String(c.reason)}”):
                  <strong>${STATUS_WORDS[c.status as string] ?? String(c.status)}</strong>
                </li>`,
            )}
          </ul>`
        : html`<p>You have not asked for any correction yet.</p>`
    }`;
}

async function formData(ctx: PageContext): Promise<FormData> {
  const { tx, viewer } = ctx;
  const employeeId = tx.caller.employeeId!;
  const events = await listEvents(tx, {
    employeeId,
    from: new Date(tx.now().getTime() - PICK_DAYS * 86_400_000),
    limit: 200,
  });
  const mine = await listCorrections(tx, { employeeId });
  return { viewer, events, sites: await siteNames(tx), mine };
}

function page(body: Html, status = 200): PageResult {
  return { title: 'Request a correction', body, status };
}

/** The form's fields as the API's correction request (the same schema), or the problem in words. */
function parseForm(form: Record<string, string>, timeZone: string) {
  const at = form.proposedAt ? instantIn(form.proposedAt, timeZone) : undefined;
  if (form.proposedAt && !at) return { problem: 'the date and time are not valid' };
  const r = CorrectionCreate.safeParse({
    action: form.action,
    eventId: form.eventId ? Number(form.eventId) : undefined,
    proposedKind: form.proposedKind || undefined,
    proposedOccurredAt: at?.toISOString(),
    reason: form.reason,
  });
  if (r.success) return { input: r.data };
  const issue = r.error.issues[0];
  const field = String(issue?.path[0] ?? '');
  const problem =
    field === 'reason'
      ? 'say why the check should be corrected'
      : field === 'eventId'
        ? 'choose the check to change or remove'
        : form.action === 'add'
          ? 'a missing check needs its kind and its date and time'
          : 'say what to change: the kind, or the date and time';
  return { problem };
}

/** Request a correction of my attendance (core corrections, as POST /api/v1/corrections). */
export function correctionRequestPages(app: FastifyInstance, deps: ServerDeps): void {
  const unlinked = page(
    html`<p>Your user is not linked to an employee, so there is no attendance to correct.</p>`,
  );
  definePage(app, deps, {
    method: 'GET',
    url: '/corrections/new',
    roles: ALL_ROLES,
    async handler(ctx) {
      if (!ctx.tx.caller.employeeId) return unlinked;
      const sent =
        ctx.query.said === 'sent'
          ? 'Your correction request was sent. It waits for your manager or HR to decide; the answer shows below.'
          : undefined;
      return page(requestForm(await formData(ctx), undefined, sent));
    },
  });
  definePage(app, deps, {
    method: 'POST',
    url: '/corrections/new',
    roles: ALL_ROLES,
    async handler(ctx) {
      if (!ctx.tx.caller.employeeId) return unlinked;
      const parsed = parseForm(ctx.form, ctx.viewer.timeZone);
      if (!parsed.input) return page(requestForm(await formData(ctx), `Not sent: ${parsed.problem}.`), 400);
      await requestCorrection(ctx.tx, parsed.input);
      return { redirect: '/corrections/new?said=sent' };
    },
  });
}
