import type { Queryable } from '../pool.js';

/**
 * The roles a user can have: the one list (the users.role CHECK constraint holds the same five). It lives
 * here because src/db may not import from src/core; core/accounts re-exports it.
 */
export const ROLES = ['owner', 'admin', 'manager', 'hr', 'employee'] as const;
export type Role = (typeof ROLES)[number];

/** Roles that see the whole company (employees, timesheets); managers see their teams, employees themselves. */
export const TENANT_WIDE_ROLES: readonly Role[] = ['owner', 'admin', 'hr'];

/** What the API shows of a user. */
export interface PublicUser {
  id: string;
  email: string;
  displayName: string;
  role: Role;
  employeeId: string | null;
  disabledAt: Date | null;
  lastLoginAt: Date | null;
  createdAt: Date;
  /** The latest lock-out still running, from any client address (lock-outs are per address). */
  lockedUntil: Date | null;
}

export interface User extends PublicUser {
  tenantId: string;
  sessionEpoch: number;
  failedLogins: number;
}

// Lock-outs are per (account, client address) in login_throttle: the latest lock still running, if any.
const LOCKED_UNTIL = `(SELECT max(t.locked_until) FROM login_throttle t
    WHERE t.tenant_id = users.tenant_id AND t.user_id = users.id AND t.locked_until > now()) AS "lockedUntil"`;

export const PUBLIC_USER_COLUMNS = `id, email, display_name AS "displayName", role, employee_id AS "employeeId",
  disabled_at AS "disabledAt", last_login_at AS "lastLoginAt", created_at AS "createdAt", ${LOCKED_UNTIL}`;

export const USER_COLUMNS = `tenant_id AS "tenantId", session_epoch AS "sessionEpoch",
  failed_logins AS "failedLogins", ${PUBLIC_USER_COLUMNS}`;

export async function insertUser(
  q: Queryable,
  u: {
    tenantId: string;
    email: string;
    displayName?: string;
    role: Role;
    passwordHash: string | null;
    employeeId?: string | null;
  },
): Promise<User> {
  const { rows } = await q.query<User>(
    `INSERT INTO users (tenant_id, email, display_name, role, password_hash, employee_id)
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${USER_COLUMNS}`,
    [u.tenantId, u.email.toLowerCase(), u.displayName ?? '', u.role, u.passwordHash, u.employeeId ?? null],
  );
  return rows[0]!;
}

export async function listUsers(q: Queryable, tenantId: string): Promise<User[]> {
  const { rows } = await q.query<User>(
    `SELECT ${USER_COLUMNS} FROM users WHERE tenant_id = $1 ORDER BY email`,
    [tenantId],
  );
  return rows;
}

export async function findUserByEmail(
  q: Queryable,
  tenantId: string,
  email: string,
): Promise<User | undefined> {
  const { rows } = await q.query<User>(
    `SELECT ${USER_COLUMNS} FROM users WHERE tenant_id = $1 AND email = $2`,
    [tenantId, email.toLowerCase()],
  );
  return rows[0];
}

/** The user by id; `lock` takes the row lock a change of authority needs (role, sessions). */
export async function findUser(
  q: Queryable,
  tenantId: string,
  id: string,
  lock = false,
): Promise<User | undefined> {
  const { rows } = await q.query<User>(
    `SELECT ${USER_COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2${lock ? ' FOR UPDATE' : ''}`,
    [tenantId, id],
  );
  return rows[0];
}

export async function passwordHashOf(q: Queryable, tenantId: string, id: string): Promise<string | null> {
  const { rows } = await q.query<{ password_hash: string | null }>(
    'SELECT password_hash FROM users WHERE tenant_id = $1 AND id = $2',
    [tenantId, id],
  );
  return rows[0]?.password_hash ?? null;
}

export interface UserPatch {
  role?: Role;
  displayName?: string;
  /** undefined: unchanged; null: unlinked. */
  employeeId?: string | null;
  disabled?: boolean;
}

/** Apply a patch; a role change or a disable bumps the session epoch (the sessions carried the old authority). */
export async function updateUser(
  q: Queryable,
  tenantId: string,
  id: string,
  b: UserPatch,
): Promise<User | undefined> {
  const { rows } = await q.query<User>(
    `UPDATE users SET role = coalesce($3, role), display_name = coalesce($4, display_name),
            employee_id = CASE WHEN $5::boolean THEN $6::uuid ELSE employee_id END,
            disabled_at = CASE WHEN $7::boolean IS NULL THEN disabled_at WHEN $7 THEN coalesce(disabled_at, now()) ELSE NULL END,
            session_epoch = session_epoch + CASE WHEN ($3::text IS NOT NULL AND $3 <> role) OR $7 IS TRUE THEN 1 ELSE 0 END
      WHERE tenant_id = $1 AND id = $2 RETURNING ${USER_COLUMNS}`,
    [
      tenantId,
      id,
      b.role ?? null,
      b.displayName ?? null,
      b.employeeId !== undefined,
      b.employeeId ?? null,
      b.disabled ?? null,
    ],
  );
  return rows[0];
}

export async function setUserDisabled(
  q: Queryable,
  tenantId: string,
  id: string,
  disabled: boolean,
): Promise<void> {
  // Disabling also bumps the epoch so that sessions already issued stop working at once.
  await q.query(
    `UPDATE users SET disabled_at = CASE WHEN $3 THEN now() ELSE NULL END,
                      session_epoch = session_epoch + CASE WHEN $3 THEN 1 ELSE 0 END
      WHERE tenant_id = $1 AND id = $2`,
    [tenantId, id, disabled],
  );
}

/**
 * Setting a password ends every session of the user and clears every lock-out (from every client address):
 * whoever set it knows the new password, and guesses counted against the old one say nothing about it.
 */
export async function setUserPassword(
  q: Queryable,
  tenantId: string,
  id: string,
  passwordHash: string,
): Promise<void> {
  await q.query(
    `UPDATE users SET password_hash = $3, session_epoch = session_epoch + 1, failed_logins = 0, locked_until = NULL
      WHERE tenant_id = $1 AND id = $2`,
    [tenantId, id, passwordHash],
  );
  await clearAllFailures(q, tenantId, id);
}

export async function bumpSessionEpoch(q: Queryable, tenantId: string, id: string): Promise<number> {
  const { rows } = await q.query<{ session_epoch: number }>(
    `UPDATE users SET session_epoch = session_epoch + 1 WHERE tenant_id = $1 AND id = $2 RETURNING session_epoch`,
    [tenantId, id],
  );
  return rows[0]!.session_epoch;
}

export async function touchLastLogin(q: Queryable, tenantId: string, id: string): Promise<void> {
  await q.query('UPDATE users SET last_login_at = now() WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
}

export interface LoginCandidate {
  id: string;
  password_hash: string | null;
  role: Role;
  session_epoch: number;
  /** Locked for this client address. */
  locked: boolean;
  disabled: boolean;
  employee_id: string | null;
  display_name: string;
}

export async function loginCandidate(
  q: Queryable,
  tenantId: string,
  email: string,
  ipHash: string,
): Promise<LoginCandidate | undefined> {
  const { rows } = await q.query<LoginCandidate>(
    `SELECT u.id, u.password_hash, u.role, u.session_epoch, coalesce(t.locked_until > now(), false) AS locked,
            u.disabled_at IS NOT NULL AS disabled, u.employee_id, u.display_name
       FROM users u
       LEFT JOIN login_throttle t ON t.tenant_id = u.tenant_id AND t.user_id = u.id AND t.ip_hash = $3
      WHERE u.tenant_id = $1 AND u.email = $2`,
    [tenantId, email, ipHash],
  );
  return rows[0];
}

/** The company of a login form's slug, looked up before any company is set (SECURITY DEFINER, migrations). */
export async function tenantIdBySlug(q: Queryable, slug: string): Promise<string | null> {
  const { rows } = await q.query<{ id: string | null }>('SELECT attendux_tenant_by_slug($1) AS id', [slug]);
  return rows[0]?.id ?? null;
}

/** Forget every failed-attempt counter and lock of the user, from every address; returns how many. */
export async function clearAllFailures(q: Queryable, tenantId: string, id: string): Promise<number> {
  const del = await q.query('DELETE FROM login_throttle WHERE tenant_id = $1 AND user_id = $2', [
    tenantId,
    id,
  ]);
  await q.query('UPDATE users SET failed_logins = 0, locked_until = NULL WHERE tenant_id = $1 AND id = $2', [
    tenantId,
    id,
  ]);
  return del.rowCount ?? 0;
}

export interface ThrottleKey {
  tenantId: string;
  userId: string;
  ipHash: string;
}

/** The next count: 1 again once a lock has expired or the last failure is older than the lock-out time. */
const NEXT = `(CASE WHEN (l.locked_until IS NOT NULL AND l.locked_until <= now())
                     OR l.updated_at < now() - make_interval(mins => $5)
                   THEN 1 ELSE l.failures + 1 END)`;

/**
 * Failed attempts (wrong password at login, wrong current password at /me/password) per (account, peppered
 * client address): an attacker elsewhere fills only their own counter, never the owner's. The counter starts
 * again after a lock has expired, or when the last failure is older than the lock-out time.
 * Returns whether this failure locked the pair.
 */
export async function recordFailure(
  q: Queryable,
  t: ThrottleKey & { max: number; minutes: number },
): Promise<boolean> {
  const { rows } = await q.query<{ locked: boolean }>(
    `INSERT INTO login_throttle AS l (tenant_id, user_id, ip_hash, failures, locked_until, updated_at)
     VALUES ($1, $2, $3, 1, CASE WHEN 1 >= $4 THEN now() + make_interval(mins => $5) END, now())
     ON CONFLICT (tenant_id, user_id, ip_hash) DO UPDATE SET
       failures = ${NEXT},
       locked_until = CASE WHEN ${NEXT} >= $4 THEN now() + make_interval(mins => $5) END,
       updated_at = now()
     RETURNING l.locked_until IS NOT NULL AND l.locked_until > now() AS locked`,
    [t.tenantId, t.userId, t.ipHash, t.max, t.minutes],
  );
  return rows[0]?.locked ?? false;
}

export async function isLocked(q: Queryable, t: ThrottleKey): Promise<boolean> {
  const { rows } = await q.query<{ locked: boolean }>(
    `SELECT locked_until > now() AS locked FROM login_throttle
      WHERE tenant_id = $1 AND user_id = $2 AND ip_hash = $3`,
    [t.tenantId, t.userId, t.ipHash],
  );
  return rows[0]?.locked ?? false;
}

export async function clearFailures(q: Queryable, t: ThrottleKey): Promise<void> {
  await q.query('DELETE FROM login_throttle WHERE tenant_id = $1 AND user_id = $2 AND ip_hash = $3', [
    t.tenantId,
    t.userId,
    t.ipHash,
  ]);
}
