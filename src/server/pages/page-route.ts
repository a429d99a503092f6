import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Role } from '../../core/accounts/roles.js';
import { whoAmI } from '../../core/accounts/users.js';
import { ERROR_CODES, isAttenduxError } from '../../errors.js';
import { forbidden } from '../../core/service.js';
import { checkCsrf, readClaim, type Claim } from '../auth.js';
import { runRoute, type RequestContext } from '../route.js';
import { HTML_PAGE, STATIC_SECURITY_HEADERS } from '../security.js';
import { knownError } from '../errors.js';
import type { ServerDeps } from '../deps.js';
import { html, type Html } from './html.js';
import { layout, type Viewer } from './layout.js';

/** What a page handler gets: the API's request context plus who is viewing, the form and the CSP nonce. */
export interface PageContext extends RequestContext {
  viewer: Viewer;
  /** The posted form (application/x-www-form-urlencoded), or {} on GET. Values are strings (first of repeats). */
  form: Record<string, string>;
  /** The query string, as strings. */
  query: Record<string, string>;
}

export type PageResult =
  { title: string; body: Html; scripts?: readonly string[]; status?: number } | { redirect: string };

export interface PageSpec {
  method: 'GET' | 'POST';
  url: string;
  /** Roles that may open the page: the same RBAC as the API (a manager's team scoping is in the services). */
  roles: readonly Role[];
  /** The page ends the session (sign out, password change): the cookie is not refreshed after it. */
  endsSession?: boolean;
  handler(ctx: PageContext): Promise<PageResult>;
}

/** A query or form object reduced to its string values (repeated fields keep the first). */
export function strings(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (v === null || typeof v !== 'object') return out;
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    const first = Array.isArray(x) ? (x as unknown[])[0] : x;
    if (typeof first === 'string') out[k] = first;
  }
  return out;
}

/** Send a page result: a 303 after a post (post/redirect/get), or the page in the layout. */
export function sendPage(reply: FastifyReply, r: PageResult, viewer?: Viewer): FastifyReply {
  if ('redirect' in r) return reply.code(303).header('location', r.redirect).send();
  return reply
    .code(r.status ?? 200)
    .type('text/html; charset=utf-8')
    .send(layout({ title: r.title, body: r.body, scripts: r.scripts, nonce: reply.cspNonce, viewer }));
}

/** Only same-site relative paths may be redirect targets (no `//evil`, no scheme). */
export function safeNext(next: string | undefined, fallback: string): string {
  return next && /^\/(?![/\\])[\x21-\x7e]*$/.test(next) ? next : fallback;
}

/**
 * Register an HTML page for signed-in people. Without a session a GET is redirected to the sign-in page (and
 * back after); API keys are refused (pages are for people). Everything else is the API's path: CSRF (Origin)
 * check on posts, the session confirmed, RBAC and the handler in one tenant transaction (runRoute).
 */
export function definePage(app: FastifyInstance, deps: ServerDeps, spec: PageSpec): void {
  app.route({
    method: spec.method,
    url: spec.url,
    config: HTML_PAGE,
    handler: async (req, reply) => {
      let claim: Claim;
      try {
        claim = await readClaim(req, deps);
      } catch (err) {
        if (spec.method === 'GET' && isAttenduxError(err) && ERROR_CODES[err.code].httpStatus === 401)
          return reply
            .code(303)
            .header('location', `/login?next=${encodeURIComponent(req.url)}`)
            .send();
        throw err;
      }
      if (claim.kind !== 'session') throw forbidden('pages are for signed-in people, not API keys');
      checkCsrf(req, deps, claim);
      let viewer: Viewer | undefined;
      const result = (await runRoute(
        deps,
        {
          method: spec.method,
          url: spec.url,
          roles: spec.roles,
          ledger: spec.method === 'POST',
          endsSession: spec.endsSession,
          handler: async (ctx) => {
            const { tenant, user } = await whoAmI(ctx.tx);
            viewer = {
              email: user?.email ?? '',
              displayName: user?.displayName ?? '',
              role: user?.role ?? 'employee',
              company: tenant?.name ?? '',
              timeZone: tenant?.timeZone ?? 'UTC',
            };
            return spec.handler({ ...ctx, viewer, form: strings(req.body), query: strings(req.query) });
          },
        },
        req,
        reply,
        claim,
      )) as PageResult;
      return sendPage(reply, result, viewer);
    },
  });
}

/** Plain words for an error on a page: the catalog's message, never a stack; 5xx only for real faults. */
export function errorPage(err: unknown, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  const known = knownError(err);
  const status = known ? ERROR_CODES[known.code].httpStatus : 500;
  if (status >= 500 && known?.code !== 'MAINTENANCE') req.log.error({ err }, 'page failed');
  const message =
    status === 429
      ? 'Too many attempts. Wait a minute, then try again.'
      : status === 403
        ? 'You do not have access to this page.'
        : status >= 500
          ? 'Something went wrong on the server. Try again; if it keeps happening, tell your administrator.'
          : (known?.message ?? 'the request failed');
  // An error answered before helmet ran (a rate limit in onRequest) still carries the security headers.
  if (!reply.hasHeader('content-security-policy')) reply.headers(STATIC_SECURITY_HEADERS);
  return sendPage(reply, {
    title: status === 403 ? 'Not allowed' : status === 429 ? 'Slow down' : 'That did not work',
    status,
    body: html`<p role="alert">${message}</p>
      <p><a href="/">Back to the start page</a></p>`,
  });
}
