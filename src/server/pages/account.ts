import type { FastifyInstance } from 'fastify';
import { changeOwnPassword } from '../../core/accounts/passwords.js';
import { isAttenduxError } from '../../errors.js';
import { clearSessionCookie } from '../auth.js';
import { ALL_ROLES, auditHashes } from '../route.js';
import type { ServerDeps } from '../deps.js';
import { html } from './html.js';
import type { Viewer } from './layout.js';
import { definePage, type PageResult } from './page-route.js';

function accountPage(viewer: Viewer, problem?: string, status = 200): PageResult {
  return {
    title: 'My account',
    status,
    body: html`<dl>
        <dt>Name</dt>
        <dd>${viewer.displayName || '—'}</dd>
        <dt>Email</dt>
        <dd>${viewer.email}</dd>
        <dt>Role</dt>
        <dd>${viewer.role}</dd>
        <dt>Company</dt>
        <dd>${viewer.company}</dd>
      </dl>
      <h2 id="pw">Change my password</h2>
      ${problem ? html`<p role="alert" class="problem">${problem}</p>` : ''}
      <form method="post" action="/account/password" class="stack" aria-labelledby="pw">
        <label
          >Current password
          <input
            name="currentPassword"
            type="password"
            autocomplete="current-password"
            required
            maxlength="200"
        /></label>
        <label
          >New password
          <input name="newPassword" type="password" autocomplete="new-password" required maxlength="200"
        /></label>
        <label
          >New password again
          <input name="repeatPassword" type="password" autocomplete="new-password" required maxlength="200"
        /></label>
        <button type="submit">Change my password</button>
      </form>
      <p class="muted">A new password signs you out everywhere, here too: sign in again with it.</p>
      <h2>My data</h2>
      <p>
        A zip of everything the company holds about you: your login, your employee record, your attendance and
        timesheets, your corrections, the audit entries about you, and a README that explains each file.
      </p>
      <p><a href="/api/v1/me/export" download>Download my data (zip)</a></p>`,
  };
}

/**
 * Password changes in progress, per user (as the API route's `exclusive`): parallel guesses from many tabs must
 * not each run bcrypt while logins wait.
 */
const changing = new Set<string>();

/** My account: who I am, change my password (as POST /api/v1/me/password), download my data (GET /me/export). */
export function accountPages(app: FastifyInstance, deps: ServerDeps): void {
  definePage(app, deps, {
    method: 'GET',
    url: '/account',
    roles: ALL_ROLES,
    handler: ({ viewer }) => Promise.resolve(accountPage(viewer)),
  });
  definePage(app, deps, {
    method: 'POST',
    url: '/account/password',
    roles: ALL_ROLES,
    endsSession: true,
    async handler({ tx, req, reply, form, viewer }) {
      const { currentPassword = '', newPassword = '', repeatPassword } = form;
      if (!currentPassword || !newPassword || currentPassword.length > 200 || newPassword.length > 200)
        return accountPage(viewer, 'Not changed: fill in your current password and the new one.', 400);
      if (newPassword !== repeatPassword)
        return accountPage(viewer, 'Not changed: the two new passwords are not the same.', 400);
      const key = `${tx.caller.tenantId}:${tx.caller.userId}`;
      if (changing.has(key))
        return accountPage(viewer, 'Not changed: a change of your password is already in progress.', 429);
      changing.add(key);
      let r: { refused?: Error };
      try {
        r = await changeOwnPassword(
          tx,
          { currentPassword, newPassword },
          { ipHash: auditHashes(req, deps).ipHash ?? '-' },
          { verify: (pw, h) => deps.passwords.verify(pw, h), hash: (pw) => deps.passwords.hash(pw) },
          { maxFailedLogins: deps.server.maxFailedLogins, lockoutMinutes: deps.server.lockoutMinutes },
        );
      } catch (err) {
        // Refusals before anything was written (a weak new password, a lock-out) are said on the form.
        if (isAttenduxError(err) && err.code === 'VALIDATION_FAILED')
          return accountPage(
            viewer,
            `Not changed: ${err.message.replace(/^newPassword/, 'the new password')}.`,
            400,
          );
        if (isAttenduxError(err) && err.code === 'RATE_LIMITED')
          return accountPage(
            viewer,
            `Not changed: too many wrong passwords. Wait ${deps.server.lockoutMinutes} minutes, then try again.`,
            429,
          );
        throw err;
      } finally {
        changing.delete(key);
      }
      // Returning (not throwing) commits the failed attempt's counter and audit entry.
      if (r.refused) return accountPage(viewer, 'Not changed: the current password is wrong.', 403);
      // A new password ends every session, this one included.
      clearSessionCookie(req, reply);
      return { redirect: '/login?said=changed' };
    },
  });
}
