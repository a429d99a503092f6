import { withTenant, type Pool } from '../../db/pool.js';
import { appendAudit, SYSTEM_TENANT } from '../../db/queries/audit.js';
import {
  clearFailures,
  loginCandidate,
  recordFailure,
  tenantIdBySlug,
  touchLastLogin,
  type LoginCandidate,
  type Role,
} from '../../db/queries/users.js';
import { pepperedHash } from '../../crypto/random.js';

export interface LoginDeps {
  pool: Pool;
  /** Every bcrypt computation goes through the server's bound on concurrent password work. */
  verify(password: string, hash: string): Promise<boolean>;
  /** Compared against when the company or user does not exist, so that answering takes as long either way. */
  dummyHash(): Promise<string>;
  auditPepper: string;
  maxFailedLogins: number;
  lockoutMinutes: number;
}

export interface LoginInput {
  company: string;
  email: string;
  password: string;
}

/** The client's peppered address and user agent, as the audit log keeps them. */
export interface ClientHashes {
  ipHash: string | null;
  uaHash: string | null;
}

export interface LoggedIn {
  tenantId: string;
  slug: string;
  user: { id: string; email: string; role: Role; displayName: string; employeeId: string | null };
  sessionEpoch: number;
}

type Failure = 'unknown_company' | 'unknown_user' | 'locked' | 'disabled' | 'bad_password';

/**
 * Check a login. Every failure path costs exactly one bcrypt computation, the locked one included: an answer
 * that comes faster for a locked account tells which emails exist. Failures are counted per (account, client
 * address), audited and answered alike (undefined); the per-IP rate limit and the server-wide bound on bcrypt
 * work are what keep that work in check.
 */
export async function login(
  d: LoginDeps,
  input: LoginInput,
  client: ClientHashes,
): Promise<LoggedIn | undefined> {
  const email = input.email.trim().toLowerCase();
  const slug = input.company.toLowerCase();
  const emailHash = pepperedHash(d.auditPepper, email);
  const tenantId = await tenantIdBySlug(d.pool, slug);
  if (!tenantId) {
    await d.verify(input.password, await d.dummyHash());
    await auditUnknownCompany(d, client, emailHash);
    return undefined;
  }
  const ipHash = client.ipHash ?? '-';
  const user = await withTenant(d.pool, tenantId, (c) => loginCandidate(c, tenantId, email, ipHash));
  const real = user && !user.locked && !user.disabled && user.password_hash ? user.password_hash : null;
  const matched = await d.verify(input.password, real ?? (await d.dummyHash()));
  if (real === null || !matched || !user) {
    const reason: Failure = !user
      ? 'unknown_user'
      : user.locked
        ? 'locked'
        : user.disabled
          ? 'disabled'
          : 'bad_password';
    await recordLoginFailure(d, tenantId, user, client, { reason, emailHash });
    return undefined;
  }
  await withTenant(d.pool, tenantId, async (c) => {
    await touchLastLogin(c, tenantId, user.id);
    await clearFailures(c, { tenantId, userId: user.id, ipHash });
    await appendAudit(c, {
      tenantId,
      actor: `user:${user.id}`,
      action: 'auth.login',
      entityType: 'user',
      entityId: user.id,
      ...client,
    });
  });
  return {
    tenantId,
    slug,
    sessionEpoch: user.session_epoch,
    user: {
      id: user.id,
      email,
      role: user.role,
      displayName: user.display_name,
      employeeId: user.employee_id,
    },
  };
}

/** A login for a company that does not exist is audited in the install-wide (system) log. */
async function auditUnknownCompany(d: LoginDeps, client: ClientHashes, emailHash: string | null) {
  await withTenant(d.pool, SYSTEM_TENANT, (c) =>
    appendAudit(c, {
      tenantId: SYSTEM_TENANT,
      actor: 'anonymous',
      action: 'auth.login_failed',
      entityType: 'tenant',
      ...client,
      details: { reason: 'unknown_company', emailHash },
    }),
  );
}

/** Count the failure against the (account, address) pair unless already locked, audit it, and a new lock. */
async function recordLoginFailure(
  d: LoginDeps,
  tenantId: string,
  user: LoginCandidate | undefined,
  client: ClientHashes,
  why: { reason: Failure; emailHash: string | null },
): Promise<void> {
  const { reason, emailHash } = why;
  const ipHash = client.ipHash ?? '-';
  await withTenant(d.pool, tenantId, async (c) => {
    const locked =
      user && !user.locked
        ? await recordFailure(c, {
            tenantId,
            userId: user.id,
            ipHash,
            max: d.maxFailedLogins,
            minutes: d.lockoutMinutes,
          })
        : false;
    await appendAudit(c, {
      tenantId,
      actor: 'anonymous',
      action: 'auth.login_failed',
      entityType: 'user',
      entityId: user?.id,
      ...client,
      details: { reason, emailHash, ...(locked ? { lockedNow: true } : {}) },
    });
    if (locked) {
      await appendAudit(c, {
        tenantId,
        actor: 'system',
        action: 'user.locked',
        entityType: 'user',
        entityId: user!.id,
        ...client,
        details: { minutes: d.lockoutMinutes, failedLogins: d.maxFailedLogins },
      });
    }
  });
}
