/**
 * `npx tsx bench/dsar-export.ts [--url postgres://…] [--events 100000]`
 *
 * Seeds a throwaway database with one employee who has --events attendance events (half check-ins, half
 * check-outs, every one with a GPS position), then exports them with `dsar export`'s writer
 * (src/core/dsar/zip.ts) twice: at a tenth of the events and at all of them, unencrypted and encrypted to a
 * passphrase. It prints the time and the peak RSS of each: constant memory means the peak does not grow with
 * the number of events.
 */
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connectClient } from '../src/db/pool.js';
import { throwawayDatabase } from './throwaway.js';
import { findSubject } from '../src/db/queries/dsar.js';
import { writeExportFile } from '../src/core/dsar/zip.js';

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/postgres' },
    events: { type: 'string', default: '100000' },
  },
});
const N = Number(values.events);
const bench = await throwawayDatabase(values.url, 'dsar');
const dbUrl = bench.url;

try {
  const c = await connectClient(dbUrl);
  try {
    await c.query("SET session_replication_role = 'replica'"); // seeding: no change capture
    const t = await c.query<{ id: string }>(
      `INSERT INTO tenants (slug, name) VALUES ('bench', 'Bench') RETURNING id`,
    );
    const tenantId = t.rows[0]!.id;
    const ids: string[] = [];
    for (const label of ['small', 'large']) {
      const e = await c.query<{ id: string }>(
        `INSERT INTO employees (tenant_id, full_name, email, hourly_rate_minor) VALUES ($1, $2, $3, 2000) RETURNING id`,
        [tenantId, `Bench ${label}`, `${label}@bench.example`],
      );
      ids.push(e.rows[0]!.id);
    }
    const seed = async (employeeId: string, n: number) =>
      c.query(
        `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, latitude, longitude, accuracy_m,
                                        geofence, distance_m, method, device_id)
         SELECT $1, $2, CASE WHEN i % 2 = 0 THEN 'check_in' ELSE 'check_out' END,
                timestamptz '2016-01-01' + (i / 2) * interval '1 day' + (i % 2) * interval '8 hours',
                52.5 + random() / 100, 13.4 + random() / 100, 5, 'inside', 12, 'gps', 'bench-device'
           FROM generate_series(0, $3 - 1) i`,
        [tenantId, employeeId, n],
      );
    const t0 = Date.now();
    await seed(ids[0]!, Math.max(2, Math.round(N / 10)));
    await seed(ids[1]!, N);
    await c.query('ANALYZE');
    console.log(`seeded ${N + Math.round(N / 10)} events in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    for (const [i, events] of [
      [0, Math.round(N / 10)],
      [1, N],
    ] as const) {
      for (const encryption of [undefined, { passphrase: 'bench passphrase' }]) {
        const [subject] = await findSubject(c, tenantId, { employeeId: ids[i]! });
        const out = join(tmpdir(), `attendux-bench-dsar-${process.pid}.zip`);
        global.gc?.();
        const base = process.memoryUsage().rss;
        let peak = base;
        const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
        const s = Date.now();
        await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
        const m = await writeExportFile(c, subject!, out, {
          requestId: crypto.randomUUID(),
          tenantSlug: 'bench',
          overtime: { dailyMinutes: 480, multiplierPercent: 150 },
          holdYears: 6,
          generatedAt: new Date(),
          encryption,
        });
        await c.query('COMMIT');
        clearInterval(timer);
        peak = Math.max(peak, process.memoryUsage().rss);
        const secs = (Date.now() - s) / 1000;
        console.log(
          `${String(events).padStart(7)} events${encryption ? ', age passphrase' : ', plain         '}: ` +
            `${secs.toFixed(2)} s, ${(events / secs).toFixed(0)} events/s, ${(m.bytes / 1e6).toFixed(1)} MB zip, ` +
            `peak RSS ${(peak / 1e6).toFixed(0)} MB (${((peak - base) / 1e6).toFixed(0)} MB above the start)`,
        );
        await rm(out, { force: true });
      }
    }
  } finally {
    await c.end();
  }
} finally {
  await bench.drop();
}
