import type { Queryable } from '../pool.js';
import type { Row } from './people.js';
import { employeeScope, type Viewer } from './scope.js';

const CORRECTION_COLUMNS = `r.id, r.employee_id AS "employeeId", r.requested_by AS "requestedBy", r.action,
  r.event_id AS "eventId", r.proposed_kind AS "proposedKind", r.proposed_occurred_at AS "proposedOccurredAt",
  r.reason, r.status, r.decided_by AS "decidedBy", r.decided_at AS "decidedAt", r.decision_note AS "decisionNote",
  r.created_at AS "createdAt"`;

export type CorrectionAction = 'add' | 'change' | 'delete';

export interface CorrectionRequest {
  id: string;
  employeeId: string;
  requestedBy: string | null;
  action: CorrectionAction;
  eventId: number | null;
  proposedKind: string | null;
  proposedOccurredAt: Date | null;
  status: string;
}

export async function insertCorrection(
  q: Queryable,
  tenantId: string,
  r: {
    employeeId: string;
    requestedBy: string | null;
    action: CorrectionAction;
    eventId?: number;
    proposedKind?: string;
    proposedOccurredAt?: Date;
    reason: string;
  },
): Promise<Row & { id: string }> {
  const { rows } = await q.query<Row & { id: string }>(
    `INSERT INTO correction_requests AS r (tenant_id, employee_id, requested_by, action, event_id, proposed_kind,
                                          proposed_occurred_at, reason)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ${CORRECTION_COLUMNS}`,
    [
      tenantId,
      r.employeeId,
      r.requestedBy,
      r.action,
      r.eventId ?? null,
      r.proposedKind ?? null,
      r.proposedOccurredAt ?? null,
      r.reason,
    ],
  );
  return rows[0]!;
}

export async function listCorrections(
  q: Queryable,
  v: Viewer,
  f: { status?: string; employeeId?: string },
): Promise<Row[]> {
  const s = employeeScope(v, 'e', 4);
  const { rows } = await q.query<Row>(
    `SELECT ${CORRECTION_COLUMNS} FROM correction_requests r
       JOIN employees e ON e.tenant_id = r.tenant_id AND e.id = r.employee_id
      WHERE r.tenant_id = $1 AND ($2::text IS NULL OR r.status = $2) AND ($3::uuid IS NULL OR r.employee_id = $3)
        AND ${s.sql}
      ORDER BY r.created_at DESC LIMIT 500`,
    [v.tenantId, f.status ?? null, f.employeeId ?? null, ...s.params],
  );
  return rows;
}

/** The request, locked for a decision, when the caller may see its employee. */
export async function lockCorrection(
  q: Queryable,
  v: Viewer,
  id: string,
): Promise<CorrectionRequest | undefined> {
  const s = employeeScope(v, 'e', 3);
  const { rows } = await q.query<CorrectionRequest>(
    `SELECT ${CORRECTION_COLUMNS} FROM correction_requests r
       JOIN employees e ON e.tenant_id = r.tenant_id AND e.id = r.employee_id
      WHERE r.tenant_id = $1 AND r.id = $2 AND ${s.sql} FOR UPDATE OF r`,
    [v.tenantId, id, ...s.params],
  );
  return rows[0];
}

export async function decideCorrection(
  q: Queryable,
  tenantId: string,
  id: string,
  d: { status: 'approved' | 'rejected'; by: string | null; note: string | null },
): Promise<Row> {
  const { rows } = await q.query<Row>(
    `UPDATE correction_requests AS r SET status = $3, decided_by = $4, decided_at = now(), decision_note = $5
      WHERE tenant_id = $1 AND id = $2 RETURNING ${CORRECTION_COLUMNS}`,
    [tenantId, id, d.status, d.by, d.note],
  );
  return rows[0]!;
}
