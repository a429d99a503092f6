import { AttenduxError } from '../errors.js';
import { inTransaction, type Pool, type PoolClient } from '../db/pool.js';
import { appendAudit } from '../db/queries/audit.js';
import {
  bumpSessionEpoch,
  findUserByEmail,
  insertUser,
  listUsers as queryUsers,
  ROLES,
  setUserDisabled,
  setUserPassword,
  type Role,
  type User,
} from '../db/queries/users.js';
import { BCRYPT_COST, checkPasswordPolicy, hashPassword } from '../crypto/password.js';
import { randomPassword } from '../crypto/random.js';
import { requireTenant } from './tenants.js';

const EMAIL_RE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

export interface CreateUserOptions {
  tenant: string;
  email: string;
  role: Role;
  displayName?: string;
  /** When absent a password is generated and returned once. */
  password?: string;
  actor: string;
  bcryptCost?: number;
}

export interface UserWithPassword {
  user: User;
  /** Set only when attendux generated the password; shown once, never stored. */
  generatedPassword?: string;
}

export function parseRole(role: string): Role {
  if (!(ROLES as readonly string[]).includes(role))
    throw new AttenduxError('USAGE', `unknown role "${role}"`, { hint: `roles: ${ROLES.join(', ')}` });
  return role as Role;
}

async function choosePassword(password: string | undefined, cost: number | undefined) {
  const generated = password === undefined ? randomPassword() : undefined;
  const plain = password ?? generated!;
  const problem = checkPasswordPolicy(plain);
  if (problem) throw new AttenduxError('USAGE', `password ${problem}`);
  return { hash: await hashPassword(plain, cost ?? BCRYPT_COST), generated };
}

export async function createUser(pool: Pool, opts: CreateUserOptions): Promise<UserWithPassword> {
  const email = opts.email.trim().toLowerCase();
  if (!EMAIL_RE.test(email)) throw new AttenduxError('USAGE', `"${opts.email}" is not an email address`);
  parseRole(opts.role);
  // Hash before the transaction: bcrypt takes ~200 ms and must not hold a connection and locks meanwhile.
  const { hash, generated } = await choosePassword(opts.password, opts.bcryptCost);
  return inTransaction(pool, async (c) => {
    const tenant = await requireTenant(c, opts.tenant);
    if (await findUserByEmail(c, tenant.id, email)) {
      throw new AttenduxError('ALREADY_EXISTS', `user ${email} already exists in company "${tenant.slug}"`);
    }
    const user = await insertUser(c, {
      tenantId: tenant.id,
      email,
      displayName: opts.displayName,
      role: opts.role,
      passwordHash: hash,
    });
    await appendAudit(c, {
      tenantId: tenant.id,
      actor: opts.actor,
      action: 'user.create',
      entityType: 'user',
      entityId: user.id,
      details: { email, role: opts.role },
    });
    return { user, generatedPassword: generated };
  });
}

export async function listUsers(pool: Pool, tenantRef: string): Promise<User[]> {
  const tenant = await requireTenant(pool, tenantRef);
  return queryUsers(pool, tenant.id);
}

async function withUser<T>(
  pool: Pool,
  tenantRef: string,
  email: string,
  fn: (c: PoolClient, user: User) => Promise<T>,
): Promise<T> {
  return inTransaction(pool, async (c) => {
    const tenant = await requireTenant(c, tenantRef);
    const user = await findUserByEmail(c, tenant.id, email);
    if (!user) throw new AttenduxError('NOT_FOUND', `no user ${email} in company "${tenant.slug}"`);
    return fn(c, user);
  });
}

export async function disableUser(
  pool: Pool,
  opts: { tenant: string; email: string; actor: string; enable?: boolean },
): Promise<User> {
  return withUser(pool, opts.tenant, opts.email, async (c, user) => {
    await setUserDisabled(c, user.tenantId, user.id, !opts.enable);
    await appendAudit(c, {
      tenantId: user.tenantId,
      actor: opts.actor,
      action: opts.enable ? 'user.enable' : 'user.disable',
      entityType: 'user',
      entityId: user.id,
    });
    return user;
  });
}

export async function resetPassword(
  pool: Pool,
  opts: { tenant: string; email: string; actor: string; password?: string; bcryptCost?: number },
): Promise<UserWithPassword> {
  const { hash, generated } = await choosePassword(opts.password, opts.bcryptCost);
  return withUser(pool, opts.tenant, opts.email, async (c, user) => {
    await setUserPassword(c, user.tenantId, user.id, hash);
    await appendAudit(c, {
      tenantId: user.tenantId,
      actor: opts.actor,
      action: 'user.reset-password',
      entityType: 'user',
      entityId: user.id,
    });
    return { user, generatedPassword: generated };
  });
}

export async function revokeSessions(
  pool: Pool,
  opts: { tenant: string; email: string; actor: string },
): Promise<{ user: User; sessionEpoch: number }> {
  return withUser(pool, opts.tenant, opts.email, async (c, user) => {
    const sessionEpoch = await bumpSessionEpoch(c, user.tenantId, user.id);
    await appendAudit(c, {
      tenantId: user.tenantId,
      actor: opts.actor,
      action: 'user.revoke-sessions',
      entityType: 'user',
      entityId: user.id,
      details: { sessionEpoch },
    });
    return { user, sessionEpoch };
  });
}

/** `attendux user unlock`: forget every failed-attempt counter and lock of the user, from every address. */
export async function unlockUser(
  pool: Pool,
  opts: { tenant: string; email: string; actor: string },
): Promise<{ user: User; cleared: number }> {
  return withUser(pool, opts.tenant, opts.email, async (c, user) => {
    const del = await c.query('DELETE FROM login_throttle WHERE tenant_id = $1 AND user_id = $2', [
      user.tenantId,
      user.id,
    ]);
    await c.query(
      'UPDATE users SET failed_logins = 0, locked_until = NULL WHERE tenant_id = $1 AND id = $2',
      [user.tenantId, user.id],
    );
    await appendAudit(c, {
      tenantId: user.tenantId,
      actor: opts.actor,
      action: 'user.unlock',
      entityType: 'user',
      entityId: user.id,
      details: { cleared: del.rowCount ?? 0 },
    });
    return { user, cleared: del.rowCount ?? 0 };
  });
}
