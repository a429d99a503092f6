import { ROLES, TENANT_WIDE_ROLES, type Role } from '../../db/queries/users.js';
import { AttenduxError } from '../../errors.js';

// The role lists are defined next to the users table (src/db may not import core); this is its home in core.
export { ROLES, TENANT_WIDE_ROLES, type Role };

export function parseRole(role: string): Role {
  if (!(ROLES as readonly string[]).includes(role))
    throw new AttenduxError('USAGE', `unknown role "${role}"`, { hint: `roles: ${ROLES.join(', ')}` });
  return role as Role;
}
