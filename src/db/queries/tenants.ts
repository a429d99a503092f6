import type { Queryable } from '../pool.js';
import { isUuid } from '../../lib/uuid.js';

export interface Tenant {
  id: string;
  slug: string;
  name: string;
  timeZone: string;
  currency: string;
  status: 'active' | 'suspended';
  createdAt: Date;
}

const COLUMNS = `id, slug, name, time_zone AS "timeZone", currency, status, created_at AS "createdAt"`;

export async function insertTenant(
  q: Queryable,
  t: { slug: string; name: string; timeZone?: string; currency?: string },
): Promise<Tenant> {
  const { rows } = await q.query<Tenant>(
    `INSERT INTO tenants (slug, name, time_zone, currency) VALUES ($1, $2, $3, $4) RETURNING ${COLUMNS}`,
    [t.slug, t.name, t.timeZone ?? 'UTC', t.currency ?? 'EUR'],
  );
  return rows[0]!;
}

export async function listTenants(q: Queryable): Promise<(Tenant & { users: number; employees: number })[]> {
  const { rows } = await q.query<Tenant & { users: number; employees: number }>(
    `SELECT ${COLUMNS},
            (SELECT count(*)::int FROM users u WHERE u.tenant_id = t.id) AS users,
            (SELECT count(*)::int FROM employees e WHERE e.tenant_id = t.id) AS employees
       FROM tenants t ORDER BY slug`,
  );
  return rows;
}

/** Find by slug or id. */
export async function findTenant(q: Queryable, ref: string): Promise<Tenant | undefined> {
  const byId = isUuid(ref);
  const { rows } = await q.query<Tenant>(
    `SELECT ${COLUMNS} FROM tenants WHERE ${byId ? 'id = $1::uuid' : 'slug = $1'}`,
    [ref],
  );
  return rows[0];
}
