// PostgreSQL / socket error codes meaning the server is gone, restarting, or refusing connections: the
// client may retry, and it is not a bug. 57P0x: admin/crash shutdown, cannot connect now; 53300: too many
// connections; class 08: connection exceptions.
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  '57P01',
  '57P02',
  '57P03',
  '53300',
  '08000',
  '08001',
  '08003',
  '08006',
]);

// node-postgres reports a dropped socket with a message and no code.
const LOST_MESSAGE =
  /Connection terminated|terminating connection|ECONNRESET|ECONNREFUSED|server closed the connection|Client has encountered a connection error/i;

/** Whether an error means the database connection was lost or could not be made (as opposed to a refused query). */
export function isConnectionLost(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null | undefined;
  if (typeof e?.code === 'string' && UNAVAILABLE_CODES.has(e.code)) return true;
  return typeof e?.message === 'string' && LOST_MESSAGE.test(e.message);
}
