import type { FastifyInstance } from 'fastify';
import {
  createEmployee,
  deleteFace,
  enrollFace,
  getEmployee,
  listEmployees,
  updateEmployee,
} from '../../core/people/employees.js';
import { createSite, deleteSite, listSites, updateSite } from '../../core/people/sites.js';
import { listTeams } from '../../core/people/teams.js';
import type { Role } from '../../core/accounts/roles.js';
import type { Tx } from '../../core/service.js';
import type { Row } from '../../db/queries/people.js';
import { EmployeeCreate, EmployeePatch, FaceBody, SiteBody } from '../routes/people.js';
import { idParam } from '../validate.js';
import type { ServerDeps } from '../deps.js';
import { html, type Html } from './html.js';
import { definePage } from './page-route.js';
import { dataTable, notice, num, opt, parseForm, poster, requireConfirm, text } from './forms.js';

export const ADMINS: readonly Role[] = ['owner', 'admin'];

const DONE: Record<string, string> = {
  created: 'The employee was created.',
  saved: 'The changes were saved.',
  deactivated: 'The employee was deactivated: they can no longer check in.',
  reactivated: 'The employee is active again.',
  enrolled: 'The face template was enrolled.',
  'face-deleted': 'The face template was deleted.',
  'site-created': 'The site was created.',
  'site-saved': 'The site was saved.',
  'site-deleted': 'The site was deleted.',
};
export const doneWords = (k: string | undefined) => (k ? DONE[k] : undefined);

/** The employee fields of a form, as the API's JSON body would carry them. */
function employeeInput(form: Record<string, string>) {
  return {
    fullName: opt(form.fullName),
    employeeNumber: opt(form.employeeNumber),
    email: opt(form.email),
    teamId: form.teamId === undefined ? undefined : (opt(form.teamId) ?? null),
    hourlyRateMinor: num(form.hourlyRateMinor),
    currency: opt(form.currency)?.toUpperCase(),
    timeZone: opt(form.timeZone),
  };
}

function employeeFields(teams: Row[], e?: Row): Html {
  const v = (k: string) => text(e?.[k]);
  return html`<label
      >Full name <input name="fullName" required maxlength="200" value="${v('fullName')}"
    /></label>
    <label
      >Employee number <input name="employeeNumber" maxlength="64" value="${v('employeeNumber')}"
    /></label>
    <label>Email <input name="email" type="email" maxlength="254" value="${v('email')}" /></label>
    <label
      >Team
      <select name="teamId">
        <option value="">No team</option>
        ${teams.map(
          (t) =>
            html`<option value="${String(t.id)}" ${t.id === e?.teamId ? html`selected` : ''}>
              ${String(t.name)}
            </option>`,
        )}
      </select></label
    >
    <label
      >Hourly rate in cents
      <input
        name="hourlyRateMinor"
        type="number"
        min="0"
        max="100000000"
        step="1"
        value="${v('hourlyRateMinor')}"
    /></label>
    <label
      >Currency (ISO code, e.g. EUR)
      <input name="currency" maxlength="3" value="${v('currency')}" placeholder="company default"
    /></label>
    <label
      >Time zone (e.g. Europe/Berlin)
      <input name="timeZone" maxlength="64" value="${v('timeZone')}" placeholder="company default"
    /></label>`;
}

async function employeesPage(tx: Tx, done: string | undefined) {
  // One connection per transaction: its queries run one after another.
  const list = await listEmployees(tx, { limit: 1000, offset: 0 });
  const teams = await listTeams(tx);
  const teamName = new Map(teams.map((t) => [t.id, String(t.name)]));
  return {
    title: 'Employees',
    body: html`${notice(doneWords(done))}
      ${dataTable(
        'Employees table',
        html`${list.length} employees`,
        ['Name', 'Number', 'Team', 'Status', 'Face template'],
        list.map(
          (e) =>
            html`<tr>
              <th scope="row"><a href="/admin/employees/${String(e.id)}">${String(e.fullName)}</a></th>
              <td>${(e.employeeNumber as string | null) ?? '—'}</td>
              <td>${teamName.get(e.teamId) ?? '—'}</td>
              <td>${String(e.status)}</td>
              <td>${e.faceEnrolled ? 'enrolled' : 'none'}</td>
            </tr>`,
        ),
      )}
      <h2>Add an employee</h2>
      <form method="post" action="/admin/employees" class="stack">
        ${employeeFields(teams)}
        <button type="submit">Create employee</button>
      </form>`,
  };
}

function faceSection(e: Row): Html {
  const id = String(e.id);
  return html`<h2>Face template</h2>
    <p>${e.faceEnrolled ? 'A face template is enrolled.' : 'No face template is enrolled.'}</p>
    <form method="post" action="/admin/employees/${id}/face" class="stack">
      <label
        >Face vector from the enrolment device (numbers separated by commas or spaces)
        <textarea name="vector" rows="4" required maxlength="30000"></textarea>
      </label>
      <button type="submit">Enrol face template</button>
    </form>
    ${
      e.faceEnrolled
        ? html`<form method="post" action="/admin/employees/${id}/face/delete" class="stack danger">
            <label class="check"
              ><input type="checkbox" name="confirm" value="yes" required /> Yes, delete the face template of
              ${String(e.fullName)}</label
            >
            <button type="submit" class="danger">Delete face template</button>
          </form>`
        : ''
    }`;
}

function statusSection(e: Row): Html {
  const id = String(e.id);
  return e.status === 'active'
    ? html`<h2>Deactivate</h2>
        <p>A deactivated employee cannot check in; their records stay.</p>
        <form method="post" action="/admin/employees/${id}/deactivate" class="stack danger">
          <label class="check"
            ><input type="checkbox" name="confirm" value="yes" required /> Yes, deactivate
            ${String(e.fullName)}</label
          >
          <button type="submit" class="danger">Deactivate employee</button>
        </form>`
    : html`<h2>Inactive</h2>
        <form method="post" action="/admin/employees/${id}/reactivate">
          <button type="submit">Reactivate employee</button>
        </form>`;
}

/** Numbers pasted from a device: commas, spaces, brackets or new lines between them. */
function vectorOf(text: string | undefined): number[] {
  return (text ?? '')
    .replace(/[[\]]/g, ' ')
    .split(/[\s,;]+/)
    .filter((s) => s !== '')
    .map(Number);
}

function siteCard(s: Row): Html {
  const id = String(s.id);
  const name = String(s.name);
  return html`<li class="card">
    <h2>${name}</h2>
    <p>Latitude ${String(s.latitude)}, longitude ${String(s.longitude)}, radius ${String(s.radiusM)} m</p>
    <form method="post" action="/admin/sites/${id}" class="stack">
      ${siteFields(s)}
      <button type="submit">Save site ${name}</button>
    </form>
    <form method="post" action="/admin/sites/${id}/delete" class="stack danger">
      <label class="check"
        ><input type="checkbox" name="confirm" value="yes" required /> Yes, delete site ${name}</label
      >
      <button type="submit" class="danger">Delete site ${name}</button>
    </form>
  </li>`;
}

function siteFields(s?: Row): Html {
  const v = (k: string) => text(s?.[k]);
  return html`<label>Name <input name="name" required maxlength="200" value="${v('name')}" /></label>
    <label
      >Latitude
      <input name="latitude" type="number" step="any" min="-90" max="90" required value="${v('latitude')}"
    /></label>
    <label
      >Longitude
      <input
        name="longitude"
        type="number"
        step="any"
        min="-180"
        max="180"
        required
        value="${v('longitude')}"
    /></label>
    <label
      >Radius in metres
      <input name="radiusM" type="number" step="1" min="1" max="100000" required value="${v('radiusM')}"
    /></label>`;
}

const siteInput = (f: Record<string, string>) => ({
  name: opt(f.name),
  latitude: num(f.latitude),
  longitude: num(f.longitude),
  radiusM: num(f.radiusM),
});

function employeePages(app: FastifyInstance, deps: ServerDeps): void {
  const post = poster(app, deps, ADMINS);
  definePage(app, deps, {
    method: 'GET',
    url: '/admin/employees',
    roles: ADMINS,
    handler: ({ tx, query }) => employeesPage(tx, query.done),
  });
  post('/admin/employees', async ({ tx, form }) => {
    const e = await createEmployee(tx, parseForm(EmployeeCreate, employeeInput(form)));
    return { redirect: `/admin/employees/${String(e.id)}?done=created` };
  });
  definePage(app, deps, {
    method: 'GET',
    url: '/admin/employees/:id',
    roles: ADMINS,
    handler: async ({ tx, req, query }) => {
      const e = await getEmployee(tx, idParam(req.params));
      const teams = await listTeams(tx);
      return {
        title: `Employee ${String(e.fullName)}`,
        body: html`${notice(doneWords(query.done))}
          <p><a href="/admin/employees">All employees</a></p>
          <form method="post" action="/admin/employees/${String(e.id)}" class="stack">
            ${employeeFields(teams, e)}
            <button type="submit">Save changes</button>
          </form>
          ${faceSection(e)} ${statusSection(e)}`,
      };
    },
  });
  post('/admin/employees/:id', async ({ tx, req, form }) => {
    const id = idParam(req.params);
    await updateEmployee(tx, id, parseForm(EmployeePatch, employeeInput(form)));
    return { redirect: `/admin/employees/${id}?done=saved` };
  });
  for (const [action, status] of [
    ['deactivate', 'inactive'],
    ['reactivate', 'active'],
  ] as const) {
    post(`/admin/employees/:id/${action}`, async ({ tx, req, form }) => {
      if (action === 'deactivate') requireConfirm(form);
      const id = idParam(req.params);
      await updateEmployee(tx, id, { status });
      return { redirect: `/admin/employees/${id}?done=${action}d` };
    });
  }
  post('/admin/employees/:id/face', async ({ tx, req, form }) => {
    const id = idParam(req.params);
    const { vector } = parseForm(FaceBody, { vector: vectorOf(form.vector) });
    await enrollFace(tx, id, vector, await deps.keyring());
    return { redirect: `/admin/employees/${id}?done=enrolled` };
  });
  post('/admin/employees/:id/face/delete', async ({ tx, req, form }) => {
    requireConfirm(form);
    const id = idParam(req.params);
    await deleteFace(tx, id);
    return { redirect: `/admin/employees/${id}?done=face-deleted` };
  });
}

function sitePages(app: FastifyInstance, deps: ServerDeps): void {
  const post = poster(app, deps, ADMINS);
  definePage(app, deps, {
    method: 'GET',
    url: '/admin/sites',
    roles: ADMINS,
    handler: async ({ tx, query }) => {
      const sites = await listSites(tx);
      return {
        title: 'Sites',
        body: html`${notice(doneWords(query.done))}
          <p>A check-in counts as inside a site when the position is within its radius of the centre.</p>
          ${
            sites.length
              ? html`<ul class="cards">
                  ${sites.map(siteCard)}
                </ul>`
              : html`<p>No sites yet.</p>`
          }
          <h2>Add a site</h2>
          <form method="post" action="/admin/sites" class="stack">
            ${siteFields()}
            <button type="submit">Create site</button>
          </form>`,
      };
    },
  });
  post('/admin/sites', async ({ tx, form }) => {
    await createSite(tx, parseForm(SiteBody, siteInput(form)));
    return { redirect: '/admin/sites?done=site-created' };
  });
  post('/admin/sites/:id', async ({ tx, req, form }) => {
    await updateSite(tx, idParam(req.params), parseForm(SiteBody, siteInput(form)));
    return { redirect: '/admin/sites?done=site-saved' };
  });
  post('/admin/sites/:id/delete', async ({ tx, req, form }) => {
    requireConfirm(form);
    await deleteSite(tx, idParam(req.params));
    return { redirect: '/admin/sites?done=site-deleted' };
  });
}

/** Employees (with face templates) and sites, for owners and admins. */
export function adminPeoplePages(app: FastifyInstance, deps: ServerDeps): void {
  employeePages(app, deps);
  sitePages(app, deps);
}
