/**
 * `npx tsx bench/retention.ts [--url postgres://…] [--events 1000000] [--employees 500]`
 *
 * Seeds a throwaway database with one company of that many attendance events (generate_series, spread evenly
 * over the last six years, every one with a GPS position), sets retention.attendanceYears = 3 and
 * retention.locationDays = 90, then times `retention apply`'s plan and apply (src/core/retention), then
 * `tenant export` of what is left (time, size, peak RSS) and `tenant delete`.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createPool } from '../src/db/pool.js';
import { throwawayDatabase } from './throwaway.js';
import { registerAuditKey } from '../src/core/audit/mac.js';
import { planRetention } from '../src/core/retention/plan.js';
import { applyRetention } from '../src/core/retention/apply.js';
import { exportTenant } from '../src/core/tenant-data/export.js';
import { deleteTenant } from '../src/core/tenant-data/delete.js';

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/postgres' },
    events: { type: 'string', default: '1000000' },
    employees: { type: 'string', default: '500' },
  },
});
const N = Number(values.events);
const E = Number(values.employees);
const bench = await throwawayDatabase(values.url, 'retention');
const dbUrl = bench.url;
const secs = (t0: number) => ((Date.now() - t0) / 1000).toFixed(2);

const tmp = await mkdtemp(join(tmpdir(), 'attendux-bench-retention-'));
try {
  const pool = createPool(dbUrl, 2);
  registerAuditKey(pool, randomBytes(32).toString('base64'));
  let t0 = Date.now();
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO tenants (slug, name) VALUES ('bench', 'Bench') RETURNING id`,
  );
  const tenant = rows[0]!.id;
  await pool.query(
    `INSERT INTO employees (tenant_id, full_name, employee_number)
     SELECT $1, 'Person ' || i, 'E' || i FROM generate_series(1, $2::int) i`,
    [tenant, E],
  );
  await pool.query(
    `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, latitude, longitude, accuracy_m,
                                    geofence, method)
     SELECT $1, e.ids[1 + i % $3::int], CASE WHEN i % 2 = 0 THEN 'check_in' ELSE 'check_out' END,
            now() - (i::double precision / $2::int) * interval '6 years', 48.1, 11.5, 8, 'inside', 'gps'
       FROM (SELECT array_agg(id) AS ids FROM employees WHERE tenant_id = $1) e, generate_series(1, $2::int) i`,
    [tenant, N, E],
  );
  await pool.query(
    `INSERT INTO tenant_settings (tenant_id, key, value) VALUES ($1, 'retention.attendanceYears', '3'),
       ($1, 'retention.locationDays', '90'), ($1, 'dsar.holdYears', '0')`,
    [tenant],
  );
  await pool.query('VACUUM ANALYZE');
  console.log(`seeded ${N} events of ${E} employees in ${secs(t0)} s`);

  t0 = Date.now();
  const plan = await planRetention(pool, { tenant: 'bench' });
  const p = plan.tenants[0]!;
  console.log(`plan: ${p.deleteEvents} to delete, ${p.stripEvents} positions to drop, in ${secs(t0)} s`);
  t0 = Date.now();
  const r = await applyRetention(pool, plan, 'bench');
  const t = r.tenants[0]!;
  console.log(
    `apply: deleted ${t.deletedEvents} events, dropped ${t.strippedEvents} positions, one transaction, in ${secs(t0)} s`,
  );

  const out = join(tmp, 'bench.zip');
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
  t0 = Date.now();
  const x = await exportTenant(pool, { tenant: 'bench', out, actor: 'bench' });
  clearInterval(timer);
  console.log(
    `tenant export: ${x.files} files, ${x.people} people, ${((await stat(out)).size / 1e6).toFixed(1)} MB in ${secs(t0)} s, peak RSS ${(peak / 1e6).toFixed(0)} MB`,
  );
  t0 = Date.now();
  const d = await deleteTenant(pool, { tenant: 'bench', confirmSlug: 'bench', actor: 'bench' });
  console.log(`tenant delete: ${d.total} rows in ${secs(t0)} s`);
  await pool.end();
} finally {
  await rm(tmp, { recursive: true, force: true });
  await bench.drop();
}
