import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { login } from '../../core/accounts/login.js';
import { logout } from '../../core/accounts/users.js';
import { clearSessionCookie, nowSeconds, SESSION_COOKIE, setSessionCookie } from '../auth.js';
import { checkCsrf } from '../auth.js';
import { auditHashes, ALL_ROLES } from '../route.js';
import { LOGIN_FAILED, LoginSchema, loginDepsOf } from '../routes/auth.js';
import { HTML_PAGE } from '../security.js';
import type { ServerDeps } from '../deps.js';
import { html } from './html.js';
import { homeOf } from './layout.js';
import { definePage, safeNext, sendPage, strings } from './page-route.js';

/** Said on the sign-in page after a redirect here (?said=...): only these constants, never text from the URL. */
const NOTICES: Record<string, string> = {
  changed: 'Your password was changed, and every session of yours ended. Sign in with the new password.',
};

function loginForm(
  reply: FastifyReply,
  next: string,
  problem?: string,
  status = 200,
  notice?: string,
): FastifyReply {
  return sendPage(reply, {
    title: 'Sign in',
    status,
    body: html`${problem ? html`<p role="alert" class="problem">${problem}</p>` : ''}
      ${notice ? html`<p role="status" class="ok">${notice}</p>` : ''}
      <form method="post" action="/login" class="stack">
        <input type="hidden" name="next" value="${next}" />
        <label>Company <input name="company" autocomplete="organization" required maxlength="63" /></label>
        <label
          >Email <input name="email" type="email" autocomplete="username" required maxlength="254"
        /></label>
        <label
          >Password
          <input name="password" type="password" autocomplete="current-password" required maxlength="200"
        /></label>
        <button type="submit">Log in</button>
      </form>`,
  });
}

/** Sign in and out, and the start page that sends each role to its home. */
export function sessionPages(
  app: FastifyInstance,
  deps: ServerDeps,
  loginRateLimit: { max: number; timeWindow: number },
): void {
  const loginDeps = loginDepsOf(deps);
  const signIn = (req: FastifyRequest, reply: FastifyReply) =>
    // A session cookie (perhaps stale) goes through /home, which checks it and sends the role home.
    req.cookies[SESSION_COOKIE]
      ? reply.code(303).header('location', '/home').send()
      : loginForm(reply, safeNext(strings(req.query).next, '/home'));
  app.get('/', { config: HTML_PAGE }, signIn);
  app.get('/login', { config: HTML_PAGE }, (req, reply) => {
    const q = strings(req.query);
    return loginForm(reply, safeNext(q.next, '/home'), undefined, 200, NOTICES[q.said ?? '']);
  });
  app.post('/login', { config: { ...HTML_PAGE, rateLimit: loginRateLimit } }, async (req, reply) => {
    checkCsrf(req, deps, undefined);
    const form = strings(req.body);
    const next = safeNext(form.next, '/home');
    const input = LoginSchema.safeParse({
      company: form.company,
      email: form.email,
      password: form.password,
    });
    if (!input.success) return loginForm(reply, next, 'Fill in company, email and password.', 400);
    const ok = await login(loginDeps, input.data, auditHashes(req, deps));
    if (!ok) {
      deps.metrics.failedLogins++;
      // The same words for a wrong password and a locked account: the page must not tell which accounts exist.
      return loginForm(reply, next, `Not signed in: ${LOGIN_FAILED}.`, 401);
    }
    deps.metrics.successfulLogins++;
    const now = nowSeconds();
    setSessionCookie(req, reply, deps, {
      tenantId: ok.tenantId,
      userId: ok.user.id,
      epoch: ok.sessionEpoch,
      iat: now,
      seen: now,
    });
    return reply
      .code(303)
      .header('location', next === '/home' ? homeOf(ok.user.role) : next)
      .send();
  });
  definePage(app, deps, {
    method: 'GET',
    url: '/home',
    roles: ALL_ROLES,
    handler: ({ viewer }) => Promise.resolve({ redirect: homeOf(viewer.role) }),
  });
  definePage(app, deps, {
    method: 'POST',
    url: '/logout',
    roles: ALL_ROLES,
    endsSession: true,
    handler: async ({ tx, req, reply }) => {
      await logout(tx);
      clearSessionCookie(req, reply);
      return { redirect: '/login' };
    },
  });
}
