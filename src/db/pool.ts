import pg from 'pg';
import { AttenduxError } from '../errors.js';

// int8 columns (identity ids, minor-unit amounts, row counts) as JS numbers: every value we store fits in
// 2^53, and strings would leak into JSON output. A value that does not fit fails loudly instead of rounding.
pg.types.setTypeParser(20, (v: string) => {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new RangeError(`int8 value ${v} exceeds the JS safe integer range`);
  return n;
});

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
export type Queryable = Pick<pg.ClientBase, 'query'>;

export function createPool(url: string, max = 10, applicationName = 'attendux'): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max, application_name: applicationName });
  // An idle client losing its connection (database restarted) must not crash the process.
  pool.on('error', () => undefined);
  return pool;
}

export async function connectClient(url: string, applicationName = 'attendux'): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: applicationName });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    throw dbUnavailable(url, err);
  }
  return client;
}

export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable database URL)';
  }
}

export function dbUnavailable(url: string, err: unknown): AttenduxError {
  return new AttenduxError(
    'DB_UNAVAILABLE',
    `cannot connect to ${redactUrl(url)}: ${(err as Error).message}`,
    {
      cause: err,
      hint: 'check database.url / database.adminUrl and that PostgreSQL is running',
    },
  );
}

/** Run fn in a transaction; roll back on any error. */
export async function inTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/**
 * Run fn in a transaction scoped to one company: row-level security policies compare every row's
 * tenant_id with this setting, and with no setting they match nothing.
 */
export async function withTenant<T>(
  pool: pg.Pool,
  tenantId: string,
  fn: (c: pg.PoolClient, prelude: pg.QueryResult[]) => Promise<T>,
  /**
   * Optional read-only statements to run in the same round trip as BEGIN (the server confirms the caller's
   * session or API key this way). Built only from uuidLiteral() values; their results are passed to fn.
   */
  prelude?: string,
): Promise<T> {
  // BEGIN, the setting (and the prelude) travel in one round trip: the simple protocol takes several
  // statements but no parameters, so the id is spliced in only after it matched the strict uuid pattern.
  const tenant = uuidLiteral(tenantId);
  const client = await pool.connect();
  try {
    const results = (await client.query(
      `BEGIN; SELECT set_config('attendux.tenant_id', ${tenant}::text, true)${prelude ? `; ${prelude}` : ''}`,
    )) as unknown as pg.QueryResult[];
    const result = await fn(client, prelude ? results.slice(2) : []);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/**
 * A uuid as a SQL literal, for the few statements that must go over the simple protocol. Anything that is
 * not exactly a uuid throws, so no input can reach the SQL text.
 */
export function uuidLiteral(id: string): string {
  if (!TENANT_ID_RE.test(id)) throw new AttenduxError('INTERNAL', 'not a uuid');
  return `'${id.toLowerCase()}'::uuid`;
}

const TENANT_ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Execute DDL whose identifiers or literals come from input. PostgreSQL's format() quotes them (%I, %L)
 * from bound parameters, so no value is ever spliced into SQL text on our side.
 */
export async function ddl(c: Queryable, template: string, ...args: string[]): Promise<void> {
  const placeholders = args.map((_, i) => `$${i + 1}::text`).join(', ');
  const { rows } = await c.query<{ sql: string }>(
    `SELECT format($${args.length + 1}::text${placeholders ? ', ' + placeholders : ''}) AS sql`,
    [...args, template],
  );
  await c.query(rows[0]!.sql);
}
