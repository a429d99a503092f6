import type { Queryable } from '../pool.js';

export const ROLES = ['owner', 'admin', 'manager', 'hr', 'employee'] as const;
export type Role = (typeof ROLES)[number];

export interface User {
  tenantId: string;
  id: string;
  email: string;
  displayName: string;
  role: Role;
  employeeId: string | null;
  sessionEpoch: number;
  failedLogins: number;
  lockedUntil: Date | null;
  disabledAt: Date | null;
  lastLoginAt: Date | null;
  createdAt: Date;
}

export const USER_COLUMNS = `tenant_id AS "tenantId", id, email, display_name AS "displayName", role,
  employee_id AS "employeeId", session_epoch AS "sessionEpoch", failed_logins AS "failedLogins",
  locked_until AS "lockedUntil", disabled_at AS "disabledAt", last_login_at AS "lastLoginAt",
  created_at AS "createdAt"`;

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
  // Lock-outs are per (account, client address) in login_throttle: the latest lock still running, if any.
  const { rows } = await q.query<User>(
    `SELECT ${USER_COLUMNS.replace(
      'locked_until AS "lockedUntil"',
      `(SELECT max(t.locked_until) FROM login_throttle t WHERE t.tenant_id = users.tenant_id
         AND t.user_id = users.id AND t.locked_until > now()) AS "lockedUntil"`,
    )} FROM users WHERE tenant_id = $1 ORDER BY email`,
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

/** Setting a password ends every session of the user and clears a lock-out. */
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
}

export async function bumpSessionEpoch(q: Queryable, tenantId: string, id: string): Promise<number> {
  const { rows } = await q.query<{ session_epoch: number }>(
    `UPDATE users SET session_epoch = session_epoch + 1 WHERE tenant_id = $1 AND id = $2 RETURNING session_epoch`,
    [tenantId, id],
  );
  return rows[0]!.session_epoch;
}
