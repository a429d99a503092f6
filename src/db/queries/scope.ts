import type { Queryable } from '../pool.js';
import { TENANT_WIDE_ROLES } from './users.js';

/** The part of a caller that decides which employees it sees (core's Caller has it). */
export interface Viewer {
  tenantId: string;
  role: string | null;
  userId: string | null;
  employeeId: string | null;
}

/**
 * Which employees a caller may see: owner/admin/hr and API keys (no role) the whole company; a manager the
 * employees of the teams they manage and themselves; an employee only themselves. Out of scope answers like
 * nonexistent.
 *
 * Returns a SQL condition over the employees alias and its four parameters (appended at `first`: every
 * caller passes them last).
 */
export function employeeScope(v: Viewer, alias: string, first: number): { sql: string; params: unknown[] } {
  const [r, u, e, w] = [first, first + 1, first + 2, first + 3];
  return {
    sql: `($${r}::text IS NULL OR $${r}::text = ANY($${w}::text[])
           OR ($${r}::text = 'manager' AND ${alias}.team_id IN
                (SELECT tm.team_id FROM team_managers tm WHERE tm.tenant_id = ${alias}.tenant_id AND tm.user_id = $${u}::uuid))
           OR ${alias}.id = $${e}::uuid)`,
    params: [v.role, v.userId, v.employeeId, TENANT_WIDE_ROLES],
  };
}

/** True when the caller may see the employee (and it exists in the caller's company). */
export async function canSeeEmployee(q: Queryable, v: Viewer, employeeId: string): Promise<boolean> {
  const s = employeeScope(v, 'e', 3);
  const { rows } = await q.query(
    `SELECT 1 FROM employees e WHERE e.tenant_id = $1 AND e.id = $2 AND ${s.sql}`,
    [v.tenantId, employeeId, ...s.params],
  );
  return rows.length > 0;
}
