import { z } from 'zod';
import { AttenduxError } from '../../errors.js';
import type { Pool } from '../../db/pool.js';
import {
  bumpSessionEpoch,
  clearAllFailures,
  findUser,
  findUserByEmail,
  insertUser,
  listUsers as queryUsers,
  setUserDisabled,
  setUserPassword,
  updateUser,
  type PublicUser,
  type Role,
  type User,
  type UserPatch,
} from '../../db/queries/users.js';
import { employeeExists } from '../../db/queries/people.js';
import { findTenant } from '../../db/queries/tenants.js';
import { BCRYPT_COST, checkPasswordPolicy, hashPassword } from '../../crypto/password.js';
import { randomPassword } from '../../crypto/random.js';
import { actsAsOwner, forbidden, invalid, notFound, type Tx } from '../service.js';
import { parseRole } from './roles.js';
import { inCompany } from './tenants.js';

/** The one email check (API schemas use it too): zod's, stricter than a@b.c patterns. */
export const EmailSchema = z.email().max(254);

/** Hashes a password (the server bounds concurrent bcrypt work; the command line hashes directly). */
export type Hasher = (plain: string) => Promise<string>;

export interface NewUser {
  email: string;
  role: Role;
  displayName?: string;
  employeeId?: string | null;
  /** When absent a password is generated and returned once. */
  password?: string;
}

export interface UserWithPassword<U = User> {
  user: U;
  /** Set only when attendux generated the password; shown once, never stored. */
  generatedPassword?: string;
}

/** What the API shows of a user: never the epoch or counters. */
export function publicUser(u: User): PublicUser {
  return {
    id: u.id,
    email: u.email,
    displayName: u.displayName,
    role: u.role,
    employeeId: u.employeeId,
    disabledAt: u.disabledAt,
    lastLoginAt: u.lastLoginAt,
    createdAt: u.createdAt,
    lockedUntil: u.lockedUntil,
  };
}

/** Refuse a password the policy does not allow (named by its field: password, newPassword). */
export function checkPassword(plain: string, field = 'password'): void {
  const problem = checkPasswordPolicy(plain);
  if (problem) throw invalid(field, problem);
}

/** A new password, or a generated one, checked against the policy and hashed. */
export async function choosePassword(password: string | undefined, hash: Hasher) {
  const generated = password === undefined ? randomPassword() : undefined;
  const plain = password ?? generated!;
  checkPassword(plain);
  return { hash: await hash(plain), generated };
}

async function requireEmployee(tx: Tx, employeeId: string | null | undefined): Promise<void> {
  if (employeeId && !(await employeeExists(tx.q, tx.caller.tenantId, employeeId))) throw notFound('employee');
}

/** Create a user in the caller's company (POST /users, `attendux user add`, init's first owner). */
export async function addUser(tx: Tx, input: NewUser, hash: Hasher): Promise<UserWithPassword> {
  const email = input.email.trim().toLowerCase();
  if (!EmailSchema.safeParse(email).success)
    throw invalid('email', 'not an email address', `"${input.email}" is not an email address`);
  parseRole(input.role);
  if (input.role === 'owner' && !actsAsOwner(tx.caller)) throw forbidden('only an owner can create an owner');
  await requireEmployee(tx, input.employeeId);
  const tenantId = tx.caller.tenantId;
  if (await findUserByEmail(tx.q, tenantId, email))
    throw new AttenduxError('ALREADY_EXISTS', `user ${email} already exists in this company`);
  const { hash: passwordHash, generated } = await choosePassword(input.password, hash);
  const user = await insertUser(tx.q, {
    tenantId,
    email,
    displayName: input.displayName,
    role: input.role,
    passwordHash,
    employeeId: input.employeeId ?? null,
  });
  await tx.audit('user.create', 'user', user.id, { role: input.role, employeeId: input.employeeId ?? null });
  return { user, generatedPassword: generated };
}

export async function listCompanyUsers(tx: Tx): Promise<User[]> {
  return queryUsers(tx.q, tx.caller.tenantId);
}

/** The user, locked for a change of authority; only owners act on owners. */
async function lockUser(tx: Tx, id: string, why: string): Promise<User> {
  const user = await findUser(tx.q, tx.caller.tenantId, id, true);
  if (!user) throw notFound('user');
  if (user.role === 'owner' && !actsAsOwner(tx.caller)) throw forbidden(why);
  return user;
}

/** PATCH /users/:id: role, name, linked employee, disabled (a role change or a disable ends the sessions). */
export async function changeUser(tx: Tx, id: string, patch: UserPatch): Promise<User> {
  await lockUser(tx, id, 'only an owner can change an owner or make one');
  if (patch.role === 'owner' && !actsAsOwner(tx.caller))
    throw forbidden('only an owner can change an owner or make one');
  const { caller } = tx;
  if (id === caller.userId && (patch.disabled || (patch.role && patch.role !== caller.role)))
    throw forbidden('you cannot disable yourself or change your own role');
  await requireEmployee(tx, patch.employeeId);
  const user = (await updateUser(tx.q, caller.tenantId, id, patch))!;
  // Which fields changed, and the new values that are not personal data: never the display name, since audit
  // entries are append-only and an erasure (dsar erase) could not remove it.
  const facts = { ...patch };
  delete facts.displayName;
  await tx.audit('user.update', 'user', id, { fields: Object.keys(patch), ...facts });
  return user;
}

/**
 * End every session of a user by bumping the epoch. The action keeps the spelling each entry point always
 * wrote (the command line's came first): renaming would split the history that audit filters search.
 */
export async function revokeUserSessions(tx: Tx, id: string): Promise<{ user: User; sessionEpoch: number }> {
  // Only owners act on owners: an admin must not be able to keep the owners logged out.
  const user = await lockUser(tx, id, "only an owner can end an owner's sessions");
  const sessionEpoch = await bumpSessionEpoch(tx.q, tx.caller.tenantId, id);
  const action = tx.caller.kind === 'cli' ? 'user.revoke-sessions' : 'user.revoke_sessions';
  await tx.audit(action, 'user', id, { sessionEpoch });
  return { user, sessionEpoch };
}

/** Log out: the session is a stateless cookie, so the epoch bump is what kills a copied cookie too. */
export async function logout(tx: Tx): Promise<void> {
  const id = tx.caller.userId!;
  await bumpSessionEpoch(tx.q, tx.caller.tenantId, id);
  await tx.audit('auth.logout', 'user', id);
}

/** GET /me: the caller's company, and the user when the caller is one. */
export async function whoAmI(tx: Tx) {
  const { caller } = tx;
  const t = await findTenant(tx.q, caller.tenantId);
  const tenant = t && { id: t.id, slug: t.slug, name: t.name, timeZone: t.timeZone, currency: t.currency };
  const u = caller.userId ? await findUser(tx.q, caller.tenantId, caller.userId) : undefined;
  const user = u && {
    id: u.id,
    email: u.email,
    displayName: u.displayName,
    role: u.role,
    employeeId: u.employeeId,
    lastLoginAt: u.lastLoginAt,
  };
  return { tenant, user };
}

// ---- The command line's entry points: the company and the user named by slug and email. ----

export interface CreateUserOptions extends NewUser {
  tenant: string;
  actor: string;
  bcryptCost?: number;
}

const hasher =
  (cost = BCRYPT_COST): Hasher =>
  (plain) =>
    hashPassword(plain, cost);

export async function createUser(pool: Pool, opts: CreateUserOptions): Promise<UserWithPassword> {
  return inCompany(pool, opts.tenant, opts.actor, (tx) => addUser(tx, opts, hasher(opts.bcryptCost)));
}

export async function listUsers(pool: Pool, tenantRef: string): Promise<User[]> {
  return inCompany(pool, tenantRef, 'cli', listCompanyUsers);
}

async function withUser<T>(
  pool: Pool,
  opts: { tenant: string; email: string; actor: string },
  fn: (tx: Tx, user: User) => Promise<T>,
): Promise<T> {
  return inCompany(pool, opts.tenant, opts.actor, async (tx, tenant) => {
    const user = await findUserByEmail(tx.q, tenant.id, opts.email);
    if (!user) throw new AttenduxError('NOT_FOUND', `no user ${opts.email} in company "${tenant.slug}"`);
    return fn(tx, user);
  });
}

export async function disableUser(
  pool: Pool,
  opts: { tenant: string; email: string; actor: string; enable?: boolean },
): Promise<User> {
  return withUser(pool, opts, async (tx, user) => {
    await setUserDisabled(tx.q, user.tenantId, user.id, !opts.enable);
    await tx.audit(opts.enable ? 'user.enable' : 'user.disable', 'user', user.id);
    return user;
  });
}

export async function resetPassword(
  pool: Pool,
  opts: { tenant: string; email: string; actor: string; password?: string; bcryptCost?: number },
): Promise<UserWithPassword> {
  // Hashed before the transaction: bcrypt takes ~200 ms and must not hold a connection and locks meanwhile.
  const { hash, generated } = await choosePassword(opts.password, hasher(opts.bcryptCost));
  return withUser(pool, opts, async (tx, user) => {
    await setUserPassword(tx.q, user.tenantId, user.id, hash);
    await tx.audit('user.reset-password', 'user', user.id);
    return { user, generatedPassword: generated };
  });
}

export async function revokeSessions(
  pool: Pool,
  opts: { tenant: string; email: string; actor: string },
): Promise<{ user: User; sessionEpoch: number }> {
  return withUser(pool, opts, (tx, user) => revokeUserSessions(tx, user.id));
}

/** `attendux user unlock`: forget every failed-attempt counter and lock of the user, from every address. */
export async function unlockUser(
  pool: Pool,
  opts: { tenant: string; email: string; actor: string },
): Promise<{ user: User; cleared: number }> {
  return withUser(pool, opts, async (tx, user) => {
    const cleared = await clearAllFailures(tx.q, user.tenantId, user.id);
    await tx.audit('user.unlock', 'user', user.id, { cleared });
    return { user, cleared };
  });
}
export { parseRole } from './roles.js';
