import { ROLES, type Role } from '../../db/queries/users.js';
import { usageError } from '../../errors.js';

// The one role list is defined next to the users table (src/db may not import core); this is its home in core.
export { ROLES, type Role };

/** Roles that see the whole company (employees, timesheets); managers see their teams, employees themselves. */
export const TENANT_WIDE_ROLES: readonly Role[] = ['owner', 'admin', 'hr'];

export function parseRole(role: string): Role {
  if (!(ROLES as readonly string[]).includes(role))
    throw usageError(`unknown role "${role}"`, `roles: ${ROLES.join(', ')}`);
  return role as Role;
}
