import type { Queryable } from '../pool.js';

/**
 * `attendux tenant export`: the COPY statements that stream one company's rows as CSV. COPY takes no bind
 * parameters, so PostgreSQL's format() quotes the identifiers and literals.
 */

/** Never exported: secrets and the biometric vector (the export says a template exists, never what it is). */
export const WITHHELD_COLUMNS: Record<string, readonly string[]> = {
  users: ['password_hash'],
  api_keys: ['secret_hmac'],
  employees: ['face_template'],
  audit_log: ['prev_hash', 'hash'],
};
/** Security bookkeeping of the install, not the company's data. */
const WITHHELD_TABLES = ['security_ledger', 'login_throttle'];

/** The company's tables, in name order, with the company's own row first and its audit log last. */
export async function exportTables(q: Queryable): Promise<string[]> {
  const { rows } = await q.query<{ t: string }>('SELECT attendux_tenant_tables() AS t');
  return ['tenants', ...rows.map((r) => r.t).filter((t) => !WITHHELD_TABLES.includes(t)), 'audit_log'];
}

/**
 * COPY of one table's rows of the company (and, with `employeeId`, of one person) as CSV with a header. The
 * employees table says whether a face template exists (`face_template_present`) instead of the vector.
 */
export async function copyCsvSql(
  q: Queryable,
  table: string,
  tenantId: string,
  employeeId?: string,
): Promise<string> {
  const { rows } = await q.query<{ sql: string }>(
    `SELECT format('COPY (SELECT %s FROM %I WHERE %I = %L%s ORDER BY 1, 2) TO STDOUT WITH (FORMAT csv, HEADER)',
                   (SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum)
                      FROM pg_attribute a
                     WHERE a.attrelid = format('%I', $1::text)::regclass AND a.attnum > 0 AND NOT a.attisdropped
                       AND NOT a.attname = ANY($4::text[]))
                     || CASE WHEN $1 = 'employees' THEN ', face_template IS NOT NULL AS face_template_present' ELSE '' END,
                   $1::text, CASE WHEN $1 = 'tenants' THEN 'id' ELSE 'tenant_id' END, $2::text,
                   CASE WHEN $3::text IS NULL THEN ''
                        ELSE format(' AND %I = %L', CASE WHEN $1 = 'employees' THEN 'id' ELSE 'employee_id' END, $3::text) END)
       AS sql`,
    [table, tenantId, employeeId ?? null, WITHHELD_COLUMNS[table] ?? []],
  );
  return rows[0]!.sql;
}

/** The company's employees (ids only: a person's data is streamed per table). */
export async function employeeIds(q: Queryable, tenantId: string): Promise<string[]> {
  const { rows } = await q.query<{ id: string }>(
    'SELECT id::text FROM employees WHERE tenant_id = $1 ORDER BY id',
    [tenantId],
  );
  return rows.map((r) => r.id);
}
