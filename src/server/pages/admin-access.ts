import type { FastifyInstance } from 'fastify';
import { ROLES, type Role } from '../../core/accounts/roles.js';
import { addUser, changeUser, listCompanyUsers } from '../../core/accounts/users.js';
import { issueApiKey, listCompanyKeys, revokeCompanyKey, API_KEY_SCOPES } from '../../core/keys/api-keys.js';
import { listEmployees } from '../../core/people/employees.js';
import type { Tx } from '../../core/service.js';
import { KeyCreate, UserCreate, UserPatch } from '../routes/admin.js';
import { idParam } from '../validate.js';
import type { ServerDeps } from '../deps.js';
import { html, type Html } from './html.js';
import { definePage } from './page-route.js';
import { localTime, notice, opt, parseForm, poster, requireConfirm } from './forms.js';
import { ADMINS } from './admin-people.js';
import { auditPages } from './admin-audit.js';

const DONE: Record<string, string> = {
  role: 'The role was changed; the user must sign in again.',
  disabled: 'The user was disabled and signed out everywhere.',
  enabled: 'The user can sign in again.',
  revoked: 'The API key was revoked: it no longer works.',
};

const roleOptions = (current?: Role) =>
  ROLES.map((r) => html`<option value="${r}" ${r === current ? html`selected` : ''}>${r}</option>`);

async function usersPage(tx: Tx, done: string | undefined) {
  // One connection per transaction: its queries run one after another.
  const users = await listCompanyUsers(tx);
  const employees = await listEmployees(tx, { limit: 1000, offset: 0 });
  const rows = users.map((u) => {
    const id = u.id;
    const self = id === tx.caller.userId;
    return html`<li class="card">
      <h2>${u.email}</h2>
      <p>
        ${u.displayName ? html`${u.displayName} · ` : ''}Role ${u.role} ·
        ${u.disabledAt ? html`<strong>disabled</strong>` : 'active'}${u.lockedUntil ? ' · locked out for now' : ''}
        · last sign-in ${u.lastLoginAt ? localTime(u.lastLoginAt) : 'never'}
      </p>
      ${
        self
          ? html`<p class="muted">This is you: nobody changes their own role or disables themselves.</p>`
          : html`<form method="post" action="/admin/users/${id}/role" class="inline">
                <label
                  >Role of ${u.email}
                  <select name="role">
                    ${roleOptions(u.role)}
                  </select></label
                >
                <button type="submit" class="secondary">Change role</button>
              </form>
              ${
                u.disabledAt
                  ? html`<form method="post" action="/admin/users/${id}/enable">
                      <button type="submit" class="secondary">Enable ${u.email}</button>
                    </form>`
                  : html`<form method="post" action="/admin/users/${id}/disable" class="inline danger">
                      <label class="check"
                        ><input type="checkbox" name="confirm" value="yes" required /> Yes, disable
                        ${u.email}</label
                      >
                      <button type="submit" class="danger">Disable user</button>
                    </form>`
              }`
      }
    </li>`;
  });
  return {
    title: 'Users and roles',
    body: html`${notice(done ? DONE[done] : undefined)}
      <ul class="cards">
        ${rows}
      </ul>
      <h2>Add a user</h2>
      <form method="post" action="/admin/users" class="stack">
        <label>Email <input name="email" type="email" required maxlength="254" /></label>
        <label>Display name <input name="displayName" maxlength="200" /></label>
        <label
          >Role
          <select name="role">
            ${roleOptions('employee')}
          </select></label
        >
        <label
          >Linked employee (who checks in as this user)
          <select name="employeeId">
            <option value="">None</option>
            ${employees.map((e) => html`<option value="${String(e.id)}">${String(e.fullName)}</option>`)}
          </select></label
        >
        <label
          >Password (leave empty to generate one)
          <input name="password" type="password" autocomplete="new-password" maxlength="200"
        /></label>
        <button type="submit">Create user</button>
      </form>`,
  };
}

/** A secret shown once, on the page that answers the post (it is never stored in the clear or shown again). */
function secretPage(title: string, what: string, secret: string, back: string) {
  return {
    title,
    status: 201,
    body: html`<p role="status" class="ok">${what}</p>
      <p>Copy it now: it is shown only this once and cannot be shown again.</p>
      <p><code class="secret" aria-label="The secret">${secret}</code></p>
      <p><a href="${back}">Done, back to the list</a></p>`,
  };
}

function userPages(app: FastifyInstance, deps: ServerDeps): void {
  const post = poster(app, deps, ADMINS);
  definePage(app, deps, {
    method: 'GET',
    url: '/admin/users',
    roles: ADMINS,
    handler: ({ tx, query }) => usersPage(tx, query.done),
  });
  post('/admin/users', async ({ tx, form }) => {
    const input = parseForm(UserCreate, {
      email: opt(form.email),
      role: opt(form.role),
      displayName: opt(form.displayName),
      employeeId: opt(form.employeeId) ?? null,
      password: opt(form.password),
    });
    const { user, generatedPassword } = await addUser(tx, input, (p) => deps.passwords.hash(p));
    if (generatedPassword)
      return secretPage(
        'User created',
        `User ${user.email} was created. Their password:`,
        generatedPassword,
        '/admin/users',
      );
    return { redirect: '/admin/users' };
  });
  post('/admin/users/:id/role', async ({ tx, req, form }) => {
    await changeUser(tx, idParam(req.params), parseForm(UserPatch, { role: opt(form.role) }));
    return { redirect: '/admin/users?done=role' };
  });
  post('/admin/users/:id/disable', async ({ tx, req, form }) => {
    requireConfirm(form);
    await changeUser(tx, idParam(req.params), { disabled: true });
    return { redirect: '/admin/users?done=disabled' };
  });
  post('/admin/users/:id/enable', async ({ tx, req }) => {
    await changeUser(tx, idParam(req.params), { disabled: false });
    return { redirect: '/admin/users?done=enabled' };
  });
}

function keyList(tx: Tx) {
  return listCompanyKeys(tx).then((keys) =>
    keys.map(
      (k) =>
        html`<li class="card">
          <h2>${k.name}</h2>
          <p>
            Prefix <code>${k.prefix}</code> · scopes ${k.scopes.join(', ')} · created
            ${localTime(k.createdAt)} ${k.expiresAt ? html` · expires ${localTime(k.expiresAt)}` : ''} · last
            used ${k.lastUsedAt ? localTime(k.lastUsedAt) : 'never'}
          </p>
          ${
            k.revokedAt
              ? html`<p><strong>Revoked</strong> ${localTime(k.revokedAt)}</p>`
              : html`<form method="post" action="/admin/api-keys/${k.id}/revoke" class="inline danger">
                  <label class="check"
                    ><input type="checkbox" name="confirm" value="yes" required /> Yes, revoke the key
                    ${k.name}</label
                  >
                  <button type="submit" class="danger">Revoke key</button>
                </form>`
          }
        </li>`,
    ),
  );
}

function keyForm(): Html {
  return html`<h2>Create an API key</h2>
    <form method="post" action="/admin/api-keys" class="stack">
      <label>Name <input name="name" required maxlength="200" /></label>
      <fieldset>
        <legend>Scopes</legend>
        ${API_KEY_SCOPES.map(
          (s) =>
            html`<label class="check"><input type="checkbox" name="scope-${s}" value="yes" /> ${s}</label>`,
        )}
      </fieldset>
      <label>Expires on (optional) <input name="expiresOn" type="date" /></label>
      <button type="submit">Create API key</button>
    </form>`;
}

function keyPages(app: FastifyInstance, deps: ServerDeps): void {
  definePage(app, deps, {
    method: 'GET',
    url: '/admin/api-keys',
    roles: ADMINS,
    handler: async ({ tx, query }) => {
      const list = await keyList(tx);
      return {
        title: 'API keys',
        body: html`${notice(query.done ? DONE[query.done] : undefined)}
          <p>
            Keys let kiosks and integrations call the API. The secret is shown once, when the key is created.
          </p>
          ${
            list.length
              ? html`<ul class="cards">
                  ${list}
                </ul>`
              : html`<p>No API keys yet.</p>`
          }
          ${keyForm()}`,
      };
    },
  });
  definePage(app, deps, {
    method: 'POST',
    url: '/admin/api-keys',
    roles: ADMINS,
    handler: async ({ tx, form }) => {
      const expiresOn = opt(form.expiresOn);
      const input = parseForm(KeyCreate, {
        name: opt(form.name),
        scopes: API_KEY_SCOPES.filter((s) => form[`scope-${s}`] === 'yes'),
        expiresAt: expiresOn ? `${expiresOn}T00:00:00Z` : undefined,
      });
      const k = await issueApiKey(tx, deps.secrets.apiKeyHmacKey, input);
      return secretPage(
        'API key created',
        `The API key ${k.apiKey.name} was created. Its secret:`,
        k.key,
        '/admin/api-keys',
      );
    },
  });
  definePage(app, deps, {
    method: 'POST',
    url: '/admin/api-keys/:id/revoke',
    roles: ADMINS,
    handler: async ({ tx, req, form }) => {
      requireConfirm(form);
      await revokeCompanyKey(tx, idParam(req.params));
      return { redirect: '/admin/api-keys?done=revoked' };
    },
  });
}

/** Users and roles, API keys, settings and the audit log, for owners and admins. */
export function adminAccessPages(app: FastifyInstance, deps: ServerDeps): void {
  userPages(app, deps);
  keyPages(app, deps);
  auditPages(app, deps);
}
