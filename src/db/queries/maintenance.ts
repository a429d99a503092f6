import type { Queryable } from '../pool.js';

/** The maintenance row (migrations/0010): the server is in maintenance while it exists. */
export interface MaintenanceRow {
  reason: string;
  retryAfterSeconds: number;
  since: Date;
  host: string;
  pid: number;
}

export async function readMaintenanceRow(q: Queryable): Promise<MaintenanceRow | undefined> {
  const { rows } = await q.query<MaintenanceRow>(
    `SELECT reason, retry_after_seconds AS "retryAfterSeconds", since, host, pid FROM server_maintenance`,
  );
  return rows[0];
}

export async function writeMaintenanceRow(q: Queryable, m: Omit<MaintenanceRow, 'since'>): Promise<void> {
  await q.query(
    `INSERT INTO server_maintenance (reason, retry_after_seconds, host, pid) VALUES ($1, $2, $3, $4)
     ON CONFLICT (singleton) DO UPDATE SET reason = $1, retry_after_seconds = $2, since = now(), host = $3, pid = $4`,
    [m.reason, m.retryAfterSeconds, m.host, m.pid],
  );
}

/** Returns whether a row was there. */
export async function deleteMaintenanceRow(q: Queryable): Promise<boolean> {
  const { rowCount } = await q.query('DELETE FROM server_maintenance');
  return (rowCount ?? 0) > 0;
}
