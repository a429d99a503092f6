import {
  correctEvent,
  deleteEvent,
  eventOfEmployee,
  insertCorrectedEvent,
  lockEvent,
} from '../../db/queries/attendance.js';
import {
  decideCorrection,
  insertCorrection,
  listCorrections as queryCorrections,
  lockCorrection,
  type CorrectionAction,
  type CorrectionRequest,
} from '../../db/queries/corrections.js';
import type { Row } from '../../db/queries/people.js';
import { canSeeEmployee } from '../../db/queries/scope.js';
import { conflict, forbidden, notFound, type Tx } from '../service.js';

export interface NewCorrection {
  employeeId?: string;
  action: CorrectionAction;
  eventId?: number;
  proposedKind?: 'check_in' | 'check_out';
  proposedOccurredAt?: Date;
  reason: string;
}

/** Ask for a correction of one's own attendance, or (manager and up) of an employee one may see. */
export async function requestCorrection(tx: Tx, b: NewCorrection): Promise<Row> {
  const { caller } = tx;
  const employeeId = b.employeeId ?? caller.employeeId;
  if (!employeeId) throw forbidden('your user is not linked to an employee; name employeeId');
  if (
    employeeId !== caller.employeeId &&
    (caller.role === 'employee' || !(await canSeeEmployee(tx.q, caller, employeeId)))
  )
    throw notFound('employee');
  if (b.eventId !== undefined && !(await eventOfEmployee(tx.q, caller.tenantId, b.eventId, employeeId)))
    throw notFound('attendance event');
  const row = await insertCorrection(tx.q, caller.tenantId, { ...b, employeeId, requestedBy: caller.userId });
  await tx.audit('correction.request', 'correction_request', row.id, {
    employeeId,
    action: b.action,
    eventId: b.eventId ?? null,
  });
  return row;
}

export function listCorrections(tx: Tx, f: { status?: string; employeeId?: string }): Promise<Row[]> {
  return queryCorrections(tx.q, tx.caller, f);
}

/** Approve (applying the change to the attendance events) or reject a pending request; never one's own. */
export async function decide(
  tx: Tx,
  id: string,
  decision: 'approve' | 'reject',
  note: string | undefined,
): Promise<Row> {
  const { caller } = tx;
  const r = await lockCorrection(tx.q, caller, id);
  if (!r) throw notFound('correction request');
  if (r.requestedBy === caller.userId || r.employeeId === caller.employeeId)
    throw forbidden('you cannot decide on your own correction request');
  if (r.status !== 'pending') throw conflict(`the request is already ${r.status}`);
  const applied = decision === 'approve' ? await applyCorrection(tx, id, r) : {};
  const row = await decideCorrection(tx.q, caller.tenantId, id, {
    status: decision === 'approve' ? 'approved' : 'rejected',
    by: caller.userId,
    note: note ?? null,
  });
  await tx.audit(`correction.${decision}`, 'correction_request', id, {
    employeeId: r.employeeId,
    action: r.action,
    ...applied,
  });
  return row;
}

async function applyCorrection(
  tx: Tx,
  correctionId: string,
  r: CorrectionRequest,
): Promise<Record<string, unknown>> {
  const { tenantId } = tx.caller;
  const change = { kind: r.proposedKind, occurredAt: r.proposedOccurredAt, correctionId };
  if (r.action === 'add')
    return { eventId: await insertCorrectedEvent(tx.q, tenantId, { employeeId: r.employeeId, ...change }) };
  const before = await lockEvent(tx.q, tenantId, r.eventId!);
  if (!before) throw conflict('the event of this request no longer exists');
  // delete: the audit entry keeps what the event was.
  if (r.action === 'change') await correctEvent(tx.q, tenantId, r.eventId!, change);
  else await deleteEvent(tx.q, tenantId, r.eventId!);
  return { eventId: r.eventId, before };
}
