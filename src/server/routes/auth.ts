import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { hashPassword } from '../../crypto/password.js';
import { login, type LoginDeps } from '../../core/accounts/login.js';
import { changeOwnPassword } from '../../core/accounts/passwords.js';
import { logout, whoAmI } from '../../core/accounts/users.js';
import { checkCsrf, clearSessionCookie, nowSeconds, setSessionCookie } from '../auth.js';
import { httpError } from '../errors.js';
import { parse } from '../validate.js';
import { ALL_ROLES, auditHashes, defineRoute, noContent } from '../route.js';
import { documented } from '../openapi.js';
import type { ServerDeps } from '../deps.js';

export const LoginSchema = z.strictObject({
  company: z.string().min(1).max(63),
  email: z.string().min(3).max(254),
  password: z.string().min(1).max(200),
});
const PasswordSchema = z.strictObject({
  currentPassword: z.string().min(1).max(200),
  newPassword: z.string().min(1).max(200),
});

const LOGIN_DOC = documented('/api/v1/auth/login', {
  public: true,
  body: LoginSchema,
  summary: 'Log in: sets the session cookie',
});

/** Compared against when the company or user does not exist, so that answering takes as long either way. */
let dummyHash: Promise<string> | undefined;

export const LOGIN_FAILED = 'wrong company, email or password, or the account is locked for a while';

/** What a login needs from the server (the API's and the sign-in page's are the same). */
export function loginDepsOf(deps: ServerDeps): LoginDeps {
  return {
    pool: deps.pool,
    verify: (password, hash) => deps.passwords.verify(password, hash),
    dummyHash: () => (dummyHash ??= hashPassword('attendux-dummy-password', deps.bcryptCost)),
    auditPepper: deps.secrets.auditPepper,
    maxFailedLogins: deps.server.maxFailedLogins,
    lockoutMinutes: deps.server.lockoutMinutes,
  };
}

export function authRoutes(
  app: FastifyInstance,
  deps: ServerDeps,
  loginRateLimit: { max: number; timeWindow: number },
) {
  const loginDeps = loginDepsOf(deps);

  app.post(
    '/api/v1/auth/login',
    // The per-IP limit runs in onRequest: before the body is parsed, long before bcrypt.
    { config: { rateLimit: loginRateLimit, swaggerTransform: LOGIN_DOC } },
    async (req, reply) => {
      checkCsrf(req, deps, undefined);
      const ok = await login(loginDeps, parse(LoginSchema, req.body, 'body'), auditHashes(req, deps));
      if (!ok) {
        deps.metrics.failedLogins++;
        throw httpError('LOGIN_FAILED', LOGIN_FAILED);
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
      return { user: ok.user, tenant: { id: ok.tenantId, slug: ok.slug } };
    },
  );

  defineRoute(app, deps, {
    method: 'POST',
    url: '/api/v1/auth/logout',
    roles: ALL_ROLES,
    endsSession: true,
    ledger: true,
    success: [204],
    async handler({ tx, req, reply }) {
      await logout(tx);
      clearSessionCookie(req, reply);
      return noContent(reply);
    },
  });

  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/me',
    roles: ALL_ROLES,
    scope: 'read',
    async handler({ tx, p }) {
      const { tenant, user } = await whoAmI(tx);
      if (p.kind === 'apikey') return { kind: 'apikey', actor: p.actor, scopes: p.scopes, tenant };
      return { kind: 'user', user, tenant };
    },
  });

  passwordRoute(app, deps);
}

/** Change my own password: the current one is checked like a login (failures count toward the lock-out). */
function passwordRoute(app: FastifyInstance, deps: ServerDeps) {
  defineRoute(app, deps, {
    method: 'POST',
    url: '/api/v1/me/password',
    roles: ALL_ROLES,
    // One change at a time per user: 48 concurrent guesses must not each hold a connection and a bcrypt
    // slot while logins wait.
    exclusive: (claim) =>
      claim.kind === 'session' ? `password:${claim.tenantId}:${claim.userId}` : undefined,
    endsSession: true,
    ledger: true,
    body: PasswordSchema,
    success: [204],
    async handler({ tx, req, body, reply, failAfterCommit }) {
      const r = await changeOwnPassword(
        tx,
        body,
        { ipHash: auditHashes(req, deps).ipHash ?? '-' },
        { verify: (pw, h) => deps.passwords.verify(pw, h), hash: (pw) => deps.passwords.hash(pw) },
        { maxFailedLogins: deps.server.maxFailedLogins, lockoutMinutes: deps.server.lockoutMinutes },
      );
      // The failed attempt's counter and audit entry are committed although the request fails.
      if (r.refused) return failAfterCommit(r.refused);
      // A new password ends every session, this one included; the client logs in again.
      clearSessionCookie(req, reply);
      return noContent(reply);
    },
  });
}
