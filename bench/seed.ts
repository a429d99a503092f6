/**
 * The reference data set every benchmark uses (server, backup, restore): companies with sites, teams,
 * employees and an owner each, and attendance events spread over the last year. Generated inside
 * PostgreSQL with generate_series so seeding 2,000,000 events takes seconds, not a round trip per row.
 *
 *   npx tsx bench/seed.ts --url postgres://owner@127.0.0.1/db --companies 200 --employees 5000 --events 2000000
 */
import { parseArgs } from 'node:util';
import { createPool, type Pool } from '../src/db/pool.js';
import { hashPassword } from '../src/crypto/password.js';

export interface SeedOptions {
  companies: number;
  /** Total across all companies. */
  employees: number;
  /** Total across all companies. */
  events: number;
  /** Password of every company's owner (owner@<slug>.example). */
  ownerPassword?: string;
}

export const BENCH_OWNER_PASSWORD = 'bench-owner-password';

export async function seedReference(pool: Pool, opts: SeedOptions): Promise<void> {
  const hash = await hashPassword(opts.ownerPassword ?? BENCH_OWNER_PASSWORD, 4);
  const perCompany = Math.max(1, Math.floor(opts.employees / opts.companies));
  await pool.query(
    `INSERT INTO tenants (slug, name, time_zone)
     SELECT 'bench-' || lpad(g::text, 4, '0'), 'Bench Company ' || g, (ARRAY['UTC','Europe/Berlin','America/New_York'])[1 + g % 3]
       FROM generate_series(1, $1) g`,
    [opts.companies],
  );
  await pool.query(
    `INSERT INTO sites (tenant_id, name, latitude, longitude, radius_m)
     SELECT t.id, 'HQ', 52.52 + (row_number() OVER ()) * 0.001, 13.40, 150 FROM tenants t WHERE t.slug LIKE 'bench-%'`,
  );
  await pool.query(
    `INSERT INTO teams (tenant_id, name)
     SELECT t.id, 'Team ' || g FROM tenants t, generate_series(1, 3) g WHERE t.slug LIKE 'bench-%'`,
  );
  await pool.query(
    `INSERT INTO employees (tenant_id, employee_number, full_name, email, team_id, hourly_rate_minor, currency, time_zone)
     SELECT t.id, 'E' || g, 'Employee ' || g, 'e' || g || '@' || t.slug || '.example',
            (SELECT id FROM teams tm WHERE tm.tenant_id = t.id ORDER BY name LIMIT 1 OFFSET g % 3),
            1500 + (g % 20) * 100, 'EUR', t.time_zone
       FROM tenants t, generate_series(1, $1) g WHERE t.slug LIKE 'bench-%'`,
    [perCompany],
  );
  await pool.query(
    `INSERT INTO users (tenant_id, email, display_name, role, password_hash)
     SELECT t.id, 'owner@' || t.slug || '.example', 'Owner', 'owner', $1 FROM tenants t WHERE t.slug LIKE 'bench-%'`,
    [hash],
  );
  // Events: numbered employees get alternating check-in/check-out pairs going back from now.
  await pool.query(
    `WITH emp AS (
       SELECT e.tenant_id, e.id, s.id AS site_id, s.latitude, s.longitude,
              row_number() OVER (ORDER BY e.tenant_id, e.id) - 1 AS n
         FROM employees e JOIN sites s ON s.tenant_id = e.tenant_id
        WHERE e.tenant_id IN (SELECT id FROM tenants WHERE slug LIKE 'bench-%')),
     total AS (SELECT count(*) AS c FROM emp)
     INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, latitude, longitude, accuracy_m,
                                    site_id, geofence, distance_m, method, device_id)
     SELECT emp.tenant_id, emp.id, CASE WHEN g % 2 = 0 THEN 'check_in' ELSE 'check_out' END,
            now() - ((g / total.c) / 2) * interval '1 day' - CASE WHEN g % 2 = 0 THEN interval '9 hours' ELSE interval '0' END,
            emp.latitude + 0.0001, emp.longitude + 0.0001, 12.5, emp.site_id, 'inside', 14.2, 'gps', 'device-' || (g % 97)
       FROM generate_series(0, $1 - 1) g, total, emp
      WHERE emp.n = g % total.c`,
    [opts.events],
  );
  await pool.query('ANALYZE');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      companies: { type: 'string', default: '200' },
      employees: { type: 'string', default: '5000' },
      events: { type: 'string', default: '2000000' },
    },
  });
  if (!values.url) throw new Error('--url (the owner connection) is required');
  const pool = createPool(values.url, 2);
  const t0 = Date.now();
  await seedReference(pool, {
    companies: Number(values.companies),
    employees: Number(values.employees),
    events: Number(values.events),
  });
  await pool.end();
  console.log(`seeded in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}
