import type { Queryable } from '../pool.js';

export interface DsarRequest {
  id: string;
  tenantId: string;
  tenant: string;
  kind: 'export' | 'erasure';
  status: 'open' | 'done' | 'rejected';
  employeeId: string;
  source: 'cli' | 'api';
  receivedAt: string;
  dueAt: string;
  extendedAt: string | null;
  handledBy: string | null;
  doneAt: string | null;
}

const REQUEST_COLUMNS = `r.id, r.tenant_id AS "tenantId", t.slug AS tenant, r.kind, r.status, r.employee_id AS "employeeId",
  r.source, to_json(r.received_at)#>>'{}' AS "receivedAt", to_json(r.due_at)#>>'{}' AS "dueAt",
  to_json(r.extended_at)#>>'{}' AS "extendedAt", r.handled_by AS "handledBy", to_json(r.done_at)#>>'{}' AS "doneAt"`;

/** File a request: due one month after it was received (GDPR Art. 12(3)). `done` files and closes it. */
export async function insertRequest(
  q: Queryable,
  r: {
    id?: string;
    tenantId: string;
    kind: 'export' | 'erasure';
    employeeId: string;
    source: 'cli' | 'api';
    reason?: string | null;
    handledBy?: string | null;
    done?: boolean;
    now: Date;
  },
): Promise<DsarRequest> {
  const { rows } = await q.query<DsarRequest>(
    `WITH r AS (
       INSERT INTO dsar_requests (id, tenant_id, kind, employee_id, source, reason, handled_by, received_at, due_at,
                                  status, done_at)
       VALUES (coalesce($9::uuid, gen_random_uuid()), $1, $2, $3, $4, $5, $6, $7, $7::timestamptz + interval '1 month',
               CASE WHEN $8 THEN 'done' ELSE 'open' END, CASE WHEN $8 THEN $7::timestamptz END)
       RETURNING *)
     SELECT ${REQUEST_COLUMNS} FROM r JOIN tenants t ON t.id = r.tenant_id`,
    [
      r.tenantId,
      r.kind,
      r.employeeId,
      r.source,
      r.reason ?? null,
      r.handledBy ?? null,
      r.now,
      r.done ?? false,
      r.id ?? null,
    ],
  );
  return rows[0]!;
}

/** The oldest open request of this kind for the employee (what a CLI export or erasure answers). */
export async function openRequestFor(
  q: Queryable,
  tenantId: string,
  employeeId: string,
  kind: 'export' | 'erasure',
  lock = true,
): Promise<string | undefined> {
  const { rows } = await q.query<{ id: string }>(
    `SELECT id FROM dsar_requests WHERE tenant_id = $1 AND employee_id = $2 AND kind = $3 AND status = 'open'
      ORDER BY received_at, id LIMIT 1 ${lock ? 'FOR UPDATE' : ''}`,
    [tenantId, employeeId, kind],
  );
  return rows[0]?.id;
}

export async function closeRequest(
  q: Queryable,
  r: { tenantId: string; id: string; handledBy: string; now: Date; receipt?: unknown; receiptText?: string },
): Promise<void> {
  await q.query(
    `UPDATE dsar_requests SET status = 'done', done_at = $3, handled_by = $4, receipt = $5::jsonb, receipt_text = $6
      WHERE tenant_id = $1 AND id = $2`,
    [
      r.tenantId,
      r.id,
      r.now,
      r.handledBy,
      r.receipt === undefined ? null : JSON.stringify(r.receipt),
      r.receiptText ?? null,
    ],
  );
}

export async function listRequests(
  q: Queryable,
  f: { tenantId?: string; status?: 'open' | 'done' | 'overdue'; now: Date },
): Promise<DsarRequest[]> {
  const { rows } = await q.query<DsarRequest>(
    `SELECT ${REQUEST_COLUMNS} FROM dsar_requests r JOIN tenants t ON t.id = r.tenant_id
      WHERE ($1::uuid IS NULL OR r.tenant_id = $1)
        AND ($2::text IS NULL OR ($2 = 'done' AND r.status <> 'open') OR ($2 = 'open' AND r.status = 'open')
             OR ($2 = 'overdue' AND r.status = 'open' AND r.due_at < $3))
      ORDER BY r.due_at, r.id`,
    [f.tenantId ?? null, f.status ?? null, f.now],
  );
  return rows;
}

export async function findRequest(
  q: Queryable,
  id: string,
): Promise<(DsarRequest & { extendReason: string | null }) | undefined> {
  const { rows } = await q.query<DsarRequest & { extendReason: string | null }>(
    `SELECT ${REQUEST_COLUMNS}, r.extend_reason AS "extendReason" FROM dsar_requests r
       JOIN tenants t ON t.id = r.tenant_id WHERE r.id = $1 FOR UPDATE OF r`,
    [id],
  );
  return rows[0];
}

/** Extend the due date by two months (Art. 12(3): once, with the reasons told to the requester). */
export async function extendRequest(
  q: Queryable,
  r: { tenantId: string; id: string; reason: string; now: Date },
): Promise<void> {
  await q.query(
    `UPDATE dsar_requests SET due_at = due_at + interval '2 months', extended_at = $3, extend_reason = $4
      WHERE tenant_id = $1 AND id = $2 AND extended_at IS NULL AND status = 'open'`,
    [r.tenantId, r.id, r.now, r.reason],
  );
}
