import pg from 'pg';
import { AttenduxError } from '../errors.js';
import { redactUrl } from '../lib/db-url.js';

// int8 columns (identity ids, minor-unit amounts, row counts) as JS numbers: every value we store fits in
// 2^53, and strings would leak into JSON output. A value that does not fit fails loudly instead of rounding.
pg.types.setTypeParser(20, (v: string) => {
  const n = Number(v);
  if (!Number.isSafeInteger(n))
    throw new AttenduxError('DB_ERROR', `int8 value ${v} exceeds the JS safe integer range`);
  return n;
});

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
export type Queryable = Pick<pg.ClientBase, 'query'>;

export interface PoolOptions {
  /**
   * The URL leads to pgbouncer in transaction mode (database.pgbouncer): each transaction may run on another
   * server connection, where a statement prepared on the last one does not exist (pgbouncer 1.18, as Debian
   * ships it, does not track them). Statement names are dropped, so every query is sent unnamed: still with
   * bound parameters, parsed and planned each time.
   */
  unnamedStatements?: boolean;
}

export function createPool(
  url: string,
  max = 10,
  applicationName = 'attendux',
  opts: PoolOptions = {},
): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max, application_name: applicationName });
  // An idle client losing its connection (database restarted) must not crash the process.
  pool.on('error', () => undefined);
  if (opts.unnamedStatements)
    pool.on('connect', (client) => {
      unnamedClients.add(client);
      dropStatementNames(client);
    });
  return pool;
}

/** Every query of this client without its statement name (see PoolOptions.unnamedStatements). */
export function dropStatementNames(client: pg.ClientBase): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  const unnamed = (...args: unknown[]): unknown => {
    const [config] = args;
    // Plain query configs only: a Submittable (pg's Query, a cursor) is passed on as it is.
    if (
      typeof config === 'object' &&
      config !== null &&
      Object.getPrototypeOf(config) === Object.prototype &&
      'name' in config &&
      'text' in config
    ) {
      args[0] = { ...config, name: undefined };
    }
    return query(...args);
  };
  client.query = unnamed as typeof client.query;
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
    // A failed ROLLBACK means the connection is gone, which ends the transaction too; report the cause.
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/** A parameterised statement, named so that each pooled connection prepares it once. */
export interface Statement {
  name: string;
  text: string;
  values: unknown[];
}

/** The parts of pg's connection a query writes its protocol messages to (pg/lib/connection.js). */
interface WireConnection {
  parse(m: { text: string }): void;
  bind(m: object): void;
  execute(m: { portal?: string }): void;
  sync(): void;
}
interface QueryInternals {
  portal: string;
  prepare(c: WireConnection): void;
  _getRows(c: WireConnection, rows?: number): void;
}
type Results = pg.QueryResult | pg.QueryResult[];
const QueryBase = pg.Query as unknown as new (
  config: pg.QueryConfig,
  values: undefined,
  callback: (err: Error | null, r: Results) => void,
) => QueryInternals;

/**
 * A statement with BEGIN before and/or COMMIT after it in ONE round trip: their Parse/Bind/Execute go in the
 * same extended-protocol batch, before the one Sync (as libpq's pipeline mode would send them). PostgreSQL
 * runs them in order and stops at the first error, so a failed statement leaves the transaction open and
 * aborted (the caller rolls back), and a failed COMMIT is this query's error. Extends pg's own Query (pg 8,
 * overriding where it writes its messages); test/integration/checkin-fast-path.test.ts covers it.
 */
class Bracketed extends QueryBase {
  private readonly begin: boolean;
  private readonly commit: boolean;
  constructor(
    config: pg.QueryConfig,
    callback: (err: Error | null, r: Results) => void,
    begin: boolean,
    commit: boolean,
  ) {
    super(config, undefined, callback);
    this.begin = begin;
    this.commit = commit;
  }
  override prepare(c: WireConnection): void {
    if (this.begin) {
      c.parse({ text: 'BEGIN' });
      c.bind({});
      c.execute({});
    }
    super.prepare(c);
  }
  override _getRows(c: WireConnection, rows?: number): void {
    if (!this.commit || rows) return super._getRows(c, rows);
    c.execute({ portal: this.portal });
    c.parse({ text: 'COMMIT' });
    c.bind({});
    c.execute({});
    c.sync();
  }
}

/** Clients whose statements must not be named (createPool's unnamedStatements). */
const unnamedClients = new WeakSet<object>();

function bracketed(c: pg.ClientBase, s: Statement, begin: boolean, commit: boolean): Promise<pg.QueryResult> {
  const config = unnamedClients.has(c) ? { text: s.text, values: s.values } : s;
  return new Promise((resolve, reject) => {
    const q = new Bracketed(
      config,
      (err, r) => (err ? reject(err) : resolve(Array.isArray(r) ? r[begin ? 1 : 0]! : r)),
      begin,
      commit,
    );
    void c.query(q as unknown as pg.QueryConfig);
  });
}

/**
 * Run fn in a transaction whose BEGIN travels with its first statement, and whose COMMIT travels with the
 * last when fn runs that one through `commitWith` (else a COMMIT of its own follows): the kiosk check-in makes
 * two round trips instead of five, every other request one fewer. Any error rolls back.
 */
export async function inTransactionFrom<T>(
  pool: pg.Pool,
  first: Statement,
  fn: (
    c: pg.PoolClient,
    firstResult: pg.QueryResult,
    commitWith: (last: Statement) => Promise<pg.QueryResult>,
  ) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let committed = false;
  try {
    const r = await bracketed(client, first, true, false);
    const result = await fn(client, r, async (last) => {
      const out = await bracketed(client, last, false, true);
      committed = true;
      return out;
    });
    if (!committed) await client.query('COMMIT');
    return result;
  } catch (err) {
    // A failed ROLLBACK means the connection is gone, which ends the transaction too; report the cause.
    if (!committed) await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/**
 * Run fn in a transaction scoped to one company: row-level security policies compare every row's
 * tenant_id with this setting, and with no setting they match nothing.
 *
 * `enter` replaces the plain tenant statement with one that sets the tenant itself AND confirms the caller
 * (attendux_enter_session / attendux_enter_api_key, migrations/0004), so the confirmation costs no extra
 * round trip; its result is passed to fn. It travels with the BEGIN (inTransactionFrom). Every value travels
 * as a bound parameter.
 */
export async function withTenant<T>(
  pool: pg.Pool,
  tenantId: string,
  fn: (c: pg.PoolClient, entered: pg.QueryResult) => Promise<T>,
  enter?: Statement,
): Promise<T> {
  return inTransactionFrom(
    pool,
    enter ?? { name: 'attendux_enter_tenant', text: 'SELECT attendux_enter_tenant($1)', values: [tenantId] },
    (client, entered) => fn(client, entered),
  );
}

/**
 * Execute DDL whose identifiers or literals come from input. PostgreSQL's format() quotes them (%I, %L)
 * from bound parameters, so no value is ever spliced into SQL text on our side.
 */
export async function ddl(c: Queryable, template: string, ...args: string[]): Promise<void> {
  await c.query(await formatSql(c, template, ...args));
}

/**
 * SQL text with identifiers and literals quoted by PostgreSQL's format() (%I, %L), for statements that take
 * no bind parameters (COPY, DDL) or are run later.
 */
export async function formatSql(c: Queryable, template: string, ...args: string[]): Promise<string> {
  const placeholders = args.map((_, i) => `$${i + 1}::text`).join(', ');
  const { rows } = await c.query<{ sql: string }>(
    `SELECT format($${args.length + 1}::text${placeholders ? ', ' + placeholders : ''}) AS sql`,
    [...args, template],
  );
  return rows[0]!.sql;
}
