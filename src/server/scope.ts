import type { PoolClient } from '../db/pool.js';
import type { Principal } from './auth.js';

/**
 * Which employees a caller may see: owner/admin/hr and API keys the whole company; a manager the employees of
 * the teams they manage and themselves; an employee only themselves. Out of scope answers like nonexistent.
 *
 * Returns a SQL condition over the employees alias and its three parameters (appended at `first`).
 */
export function employeeScope(
  p: Principal,
  alias: string,
  first: number,
): { sql: string; params: unknown[] } {
  const [r, u, e] = [first, first + 1, first + 2];
  return {
    sql: `($${r}::text IS NULL OR $${r}::text IN ('owner', 'admin', 'hr')
           OR ($${r}::text = 'manager' AND ${alias}.team_id IN
                (SELECT tm.team_id FROM team_managers tm WHERE tm.tenant_id = ${alias}.tenant_id AND tm.user_id = $${u}::uuid))
           OR ${alias}.id = $${e}::uuid)`,
    params: [p.role, p.userId, p.employeeId],
  };
}

/** True when the caller may see the employee (and it exists in the caller's company). */
export async function canSeeEmployee(c: PoolClient, p: Principal, employeeId: string): Promise<boolean> {
  const s = employeeScope(p, 'e', 3);
  const { rows } = await c.query(
    `SELECT 1 FROM employees e WHERE e.tenant_id = $1 AND e.id = $2 AND ${s.sql}`,
    [p.tenantId, employeeId, ...s.params],
  );
  return rows.length > 0;
}
