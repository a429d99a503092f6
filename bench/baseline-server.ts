/**
 * The baseline of bench/server.ts: a bare Fastify + pg endpoint that INSERTs one attendance event per request,
 * with no authentication, no validation, no row-level security, no geofence and no audit entry.
 *
 *   npx tsx bench/baseline-server.ts <database-url> <port> <pool-size>
 */
import Fastify from 'fastify';
import pg from 'pg';

const [url, port, poolSize] = process.argv.slice(2);
const pool = new pg.Pool({ connectionString: url, max: Number(poolSize ?? 10) });
const app = Fastify({ logger: false });
app.post('/checkin', async (req, reply) => {
  const b = req.body as {
    tenantId: string;
    employeeId: string;
    latitude: number;
    longitude: number;
    accuracy: number;
  };
  const { rows } = await pool.query<{ id: number }>(
    `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, latitude, longitude, accuracy_m, geofence, method)
     VALUES ($1, $2, 'check_in', now(), $3, $4, $5, 'unknown', 'gps') RETURNING id`,
    [b.tenantId, b.employeeId, b.latitude, b.longitude, b.accuracy],
  );
  reply.code(201);
  return { id: rows[0]!.id };
});
const address = await app.listen({ host: '127.0.0.1', port: Number(port) });
process.stderr.write(`baseline serving on ${address}\n`);
process.once('SIGTERM', () => {
  void app.close().then(() => pool.end());
});
