import type { FastifyInstance } from 'fastify';
import type { Row } from '../route.js';
import { z } from 'zod';
import { withTenant } from '../../db/pool.js';
import { appendAudit, SYSTEM_TENANT } from '../../db/queries/audit.js';
import type { Role } from '../../db/queries/users.js';
import { checkPasswordPolicy, hashPassword } from '../../crypto/password.js';
import { clearFailures, isLocked, recordFailure } from '../password-work.js';
import { pepperedHash } from '../../crypto/random.js';
import { checkCsrf, clearSessionCookie, nowSeconds, setSessionCookie } from '../auth.js';
import { httpError } from '../errors.js';
import { parse } from '../validate.js';
import { ALL_ROLES, auditHashes, defineRoute } from '../route.js';
import type { ServerDeps } from '../deps.js';

const LoginSchema = z.strictObject({
  company: z.string().min(1).max(63),
  email: z.string().min(3).max(254),
  password: z.string().min(1).max(200),
});

/** Compared against when the company or user does not exist, so that answering takes as long either way. */
let dummyHash: Promise<string> | undefined;
const DUMMY = (cost: number) => (dummyHash ??= hashPassword('attendux-dummy-password', cost));

const LOGIN_FAILED = 'wrong company, email or password, or the account is locked for a while';

export function authRoutes(
  app: FastifyInstance,
  deps: ServerDeps,
  loginRateLimit: { max: number; timeWindow: number },
) {
  app.post(
    '/api/v1/auth/login',
    // The per-IP limit runs in onRequest: before the body is parsed, long before bcrypt.
    { config: { rateLimit: loginRateLimit } },
    async (req, reply) => {
      checkCsrf(req, deps, undefined);
      const body = parse(LoginSchema, req.body, 'body');
      const email = body.email.trim().toLowerCase();
      const hashes = auditHashes(req, deps);
      const emailHash = pepperedHash(deps.secrets.auditPepper, email);
      const fail = () => {
        deps.metrics.failedLogins++;
        return httpError('LOGIN_FAILED', LOGIN_FAILED);
      };

      const tenantRow = await deps.pool.query<{ id: string | null }>(
        'SELECT attendux_tenant_by_slug($1) AS id',
        [body.company.toLowerCase()],
      );
      const tenantId = tenantRow.rows[0]?.id ?? null;
      if (!tenantId) {
        await deps.passwords.verify(body.password, await DUMMY(deps.bcryptCost));
        await withTenant(deps.pool, SYSTEM_TENANT, (c) =>
          appendAudit(c, {
            tenantId: SYSTEM_TENANT,
            actor: 'anonymous',
            action: 'auth.login_failed',
            entityType: 'tenant',
            ...hashes,
            details: { reason: 'unknown_company', emailHash },
          }),
        );
        throw fail();
      }

      const ipHash = hashes.ipHash ?? '-';
      const user = await withTenant(deps.pool, tenantId, async (c) => {
        const { rows } = await c.query<{
          id: string;
          password_hash: string | null;
          role: Role;
          session_epoch: number;
          locked: boolean;
          disabled: boolean;
          employee_id: string | null;
          display_name: string;
        }>(
          `SELECT u.id, u.password_hash, u.role, u.session_epoch, coalesce(t.locked_until > now(), false) AS locked,
                  u.disabled_at IS NOT NULL AS disabled, u.employee_id, u.display_name
             FROM users u
             LEFT JOIN login_throttle t ON t.tenant_id = u.tenant_id AND t.user_id = u.id AND t.ip_hash = $3
            WHERE u.tenant_id = $1 AND u.email = $2`,
          [tenantId, email, ipHash],
        );
        return rows[0];
      });

      // Every failure path costs exactly one bcrypt computation, the locked one included: an answer that
      // comes faster for a locked account tells which emails exist. The per-IP rate limit and the
      // server-wide bound on bcrypt work (PasswordWork) are what keep that work in check.
      const real = user && !user.locked && !user.disabled && user.password_hash ? user.password_hash : null;
      const matched = await deps.passwords.verify(body.password, real ?? (await DUMMY(deps.bcryptCost)));
      const ok = real !== null && matched;

      if (!ok || !user) {
        await withTenant(deps.pool, tenantId, async (c) => {
          let locked = false;
          if (user && !user.locked) {
            locked = await recordFailure(c, {
              tenantId,
              userId: user.id,
              ipHash,
              max: deps.server.maxFailedLogins,
              minutes: deps.server.lockoutMinutes,
            });
          }
          await appendAudit(c, {
            tenantId,
            actor: 'anonymous',
            action: 'auth.login_failed',
            entityType: 'user',
            entityId: user?.id,
            ...hashes,
            details: {
              reason: !user
                ? 'unknown_user'
                : user.locked
                  ? 'locked'
                  : user.disabled
                    ? 'disabled'
                    : 'bad_password',
              emailHash,
              ...(locked ? { lockedNow: true } : {}),
            },
          });
          if (locked) {
            await appendAudit(c, {
              tenantId,
              actor: 'system',
              action: 'user.locked',
              entityType: 'user',
              entityId: user!.id,
              ...hashes,
              details: { minutes: deps.server.lockoutMinutes, failedLogins: deps.server.maxFailedLogins },
            });
          }
        });
        throw fail();
      }

      await withTenant(deps.pool, tenantId, async (c) => {
        await c.query<Row>(`UPDATE users SET last_login_at = now() WHERE tenant_id = $1 AND id = $2`, [
          tenantId,
          user.id,
        ]);
        await clearFailures(c, { tenantId, userId: user.id, ipHash });
        await appendAudit(c, {
          tenantId,
          actor: `user:${user.id}`,
          action: 'auth.login',
          entityType: 'user',
          entityId: user.id,
          ...hashes,
        });
      });
      deps.metrics.successfulLogins++;
      const now = nowSeconds();
      setSessionCookie(req, reply, deps, {
        tenantId,
        userId: user.id,
        epoch: user.session_epoch,
        iat: now,
        seen: now,
      });
      return {
        user: {
          id: user.id,
          email,
          role: user.role,
          displayName: user.display_name,
          employeeId: user.employee_id,
        },
        tenant: { id: tenantId, slug: body.company.toLowerCase() },
      };
    },
  );

  defineRoute(app, deps, {
    method: 'POST',
    url: '/api/v1/auth/logout',
    roles: ALL_ROLES,
    endsSession: true,
    ledger: true,
    // Sessions are stateless cookies: logging out bumps the epoch so a copied cookie dies with it.
    async handler({ c, p, req, reply, audit }) {
      await c.query<Row>(
        'UPDATE users SET session_epoch = session_epoch + 1 WHERE tenant_id = $1 AND id = $2',
        [p.tenantId, p.userId],
      );
      await audit('auth.logout', 'user', p.userId);
      clearSessionCookie(req, reply);
      reply.code(204);
      return null;
    },
  });

  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/me',
    roles: ALL_ROLES,
    scope: 'read',
    async handler({ c, p }) {
      const tenant = await c.query<{
        id: string;
        slug: string;
        name: string;
        timeZone: string;
        currency: string;
      }>(`SELECT id, slug, name, time_zone AS "timeZone", currency FROM tenants WHERE id = $1`, [p.tenantId]);
      if (p.kind === 'apikey')
        return { kind: 'apikey', actor: p.actor, scopes: p.scopes, tenant: tenant.rows[0] };
      const { rows } = await c.query<Row>(
        `SELECT id, email, display_name AS "displayName", role, employee_id AS "employeeId", last_login_at AS "lastLoginAt"
           FROM users WHERE tenant_id = $1 AND id = $2`,
        [p.tenantId, p.userId],
      );
      return { kind: 'user', user: rows[0], tenant: tenant.rows[0] };
    },
  });

  const PasswordSchema = z.strictObject({
    currentPassword: z.string().min(1).max(200),
    newPassword: z.string().min(1).max(200),
  });
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
    async handler({ c, p, req, reply, audit, failAfterCommit }) {
      const body = parse(PasswordSchema, req.body, 'body');
      const problem = checkPasswordPolicy(body.newPassword);
      if (problem)
        throw httpError('VALIDATION_FAILED', `newPassword ${problem}`, {
          fields: [{ field: 'body.newPassword', problem }],
        });
      const who = { tenantId: p.tenantId, userId: p.userId!, ipHash: auditHashes(req, deps).ipHash ?? '-' };
      if (await isLocked(c, who))
        throw httpError('RATE_LIMITED', 'too many wrong passwords; wait for the lock-out to end');
      const { rows } = await c.query<{ password_hash: string | null }>(
        'SELECT password_hash FROM users WHERE tenant_id = $1 AND id = $2',
        [p.tenantId, p.userId],
      );
      if (
        !rows[0]?.password_hash ||
        !(await deps.passwords.verify(body.currentPassword, rows[0].password_hash))
      ) {
        // Counted against the same (account, address) budget as logins, audited, and committed although
        // the request fails.
        const locked = await recordFailure(c, {
          ...who,
          max: deps.server.maxFailedLogins,
          minutes: deps.server.lockoutMinutes,
        });
        await audit('user.password_change_failed', 'user', p.userId, {
          reason: 'bad_current_password',
          ...(locked ? { lockedNow: true } : {}),
        });
        return failAfterCommit(httpError('FORBIDDEN', 'the current password is wrong'));
      }
      await clearFailures(c, who);
      const hash = await deps.passwords.hash(body.newPassword);
      // A new password ends every session, this one included; the client logs in again.
      await c.query<Row>(
        `UPDATE users SET password_hash = $3, session_epoch = session_epoch + 1 WHERE tenant_id = $1 AND id = $2`,
        [p.tenantId, p.userId, hash],
      );
      await audit('user.password_change', 'user', p.userId);
      clearSessionCookie(req, reply);
      reply.code(204);
      return null;
    },
  });
}
