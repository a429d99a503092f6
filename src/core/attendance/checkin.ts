import {
  checkinSubject,
  insertEvent,
  listEvents as queryEvents,
  type EventFilter,
  type EventKind,
  type EventValues,
} from '../../db/queries/attendance.js';
import type { Row } from '../../db/queries/people.js';
import { forbidden, invalid, type Caller, type Tx } from '../service.js';
import { isMismatch, judge, mismatchRecord, type CheckInput, type Keys, type Verdict } from './judge.js';

export type { CheckInput, EventKind, Keys };

/** Whose attendance this is: a user checks in as the employee linked to it; a kiosk key names the employee. */
export function subjectOf(c: Caller, requested: string | undefined): string {
  if (c.kind === 'apikey') {
    if (!requested) throw invalid('body.employeeId', 'required', 'employeeId is required with an API key');
    return requested;
  }
  if (!c.employeeId) throw forbidden('your user is not linked to an employee');
  if (requested && requested !== c.employeeId) throw forbidden('you can only check yourself in or out');
  return c.employeeId;
}

/**
 * The event's columns and its audit entry's fields (EventValues). Coordinates stay out of the audit log: the
 * event row holds them, under the same retention as attendance.
 */
export function eventValues(
  c: Caller,
  client: { ipHash: string | null; uaHash: string | null },
  employeeId: string,
  kind: EventKind,
  b: CheckInput,
  v: Verdict,
): EventValues {
  return [
    kind,
    b.position?.latitude ?? null,
    b.position?.longitude ?? null,
    b.position?.accuracy ?? null,
    v.geo.siteId,
    v.geo.verdict,
    v.geo.distanceM,
    v.method,
    v.faceScore,
    b.deviceId ?? null,
    v.flagged,
    c.actor,
    `attendance.${kind}`,
    client.ipHash,
    client.uaHash,
    JSON.stringify(auditDetails(employeeId, v)),
  ];
}

function auditDetails(employeeId: string, v: Verdict) {
  const base = {
    employeeId,
    geofence: v.geo.verdict,
    flagged: v.flagged,
    method: v.method,
    siteId: v.geo.siteId,
  };
  return v.deviceTime ? { ...base, offline: true, deviceTime: v.deviceTime.toISOString() } : base;
}

export interface CheckResult {
  id: number;
  employeeId: string;
  kind: EventKind;
  occurredAt: Date;
  geofence: string;
  siteId: string | null;
  distanceM: number | null;
  flagged: boolean;
  method: Verdict['method'];
  faceScore: number | null;
  /** Queued on the device while offline: occurredAt is the device's time, received later. */
  offline: boolean;
}

export function checkResult(
  ev: { id: number; occurredAt: Date },
  employeeId: string,
  kind: EventKind,
  v: Verdict,
): CheckResult {
  return {
    id: ev.id,
    employeeId,
    kind,
    occurredAt: ev.occurredAt,
    geofence: v.geo.verdict,
    siteId: v.geo.siteId,
    distanceM: v.geo.distanceM,
    flagged: v.flagged,
    method: v.method,
    faceScore: v.faceScore,
    offline: v.deviceTime !== undefined,
  };
}

/**
 * A check-in or check-out in the caller's transaction (a user's own, or a key off the fast path). A face
 * mismatch is audited and counted, and must be COMMITTED although the request fails: it comes back as
 * `refused` rather than thrown.
 */
export async function recordCheck(
  tx: Tx,
  keys: Keys,
  kind: EventKind,
  b: CheckInput,
): Promise<{ event?: CheckResult; refused?: Error }> {
  const { caller } = tx;
  const employeeId = subjectOf(caller, b.employeeId);
  const subject = await checkinSubject(tx.q, caller.tenantId, employeeId);
  let v: Verdict;
  try {
    v = await judge(
      keys,
      { tenantId: caller.tenantId, viaKey: caller.kind === 'apikey', now: tx.now() },
      employeeId,
      b,
      subject,
    );
  } catch (err) {
    if (!isMismatch(err)) throw err;
    const m = mismatchRecord(caller.tenantId, employeeId, err);
    await tx.audit('attendance.face_mismatch', 'employee', employeeId, m.details);
    return { refused: m.error };
  }
  // The event, then its audit entry (MAC'd by appendAudit), in the caller's transaction.
  const vals = eventValues(caller, { ipHash: null, uaHash: null }, employeeId, kind, b, v);
  const ev = await insertEvent(tx.q, caller.tenantId, employeeId, vals, v.deviceTime);
  await tx.audit(`attendance.${kind}`, 'attendance_event', String(ev.id), auditDetails(employeeId, v));
  return { event: checkResult(ev, employeeId, kind, v) };
}

/** Attendance events of the employees the caller may see, newest first. */
export function listEvents(tx: Tx, f: EventFilter): Promise<Row[]> {
  return queryEvents(tx.q, tx.caller, f);
}
