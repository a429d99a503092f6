import type { Queryable, Statement } from '../pool.js';
import { employeeScope, type Viewer } from './scope.js';
import type { Row } from './people.js';

export interface SubjectSite {
  id: string;
  latitude: number;
  longitude: number;
  radiusM: number;
}

/** The employee, the company's sites and settings: see attendux_checkin_subject in migrations/0002. */
export interface CheckinSubject {
  id: string;
  status: string;
  face_template: Buffer | null;
  face_key_id: string | null;
  sites: SubjectSite[];
  settings: Record<string, unknown> | null;
}

export type EventKind = 'check_in' | 'check_out';

/**
 * An event's columns after the tenant and employee, then its audit entry's actor, action, hashes and details
 * (JSON text), in the order attendux_record_checkin takes them.
 */
export type EventValues = [
  kind: EventKind,
  latitude: number | null,
  longitude: number | null,
  accuracyM: number | null,
  siteId: string | null,
  geofence: string,
  distanceM: number | null,
  method: string,
  faceScore: number | null,
  deviceId: string | null,
  flagged: boolean,
  actor: string,
  action: string,
  ipHash: string | null,
  uaHash: string | null,
  details: string,
];

export async function checkinSubject(
  q: Queryable,
  tenantId: string,
  employeeId: string,
): Promise<CheckinSubject | undefined> {
  const { rows } = await q.query<CheckinSubject>({
    name: 'attendux_checkin_subject',
    text: 'SELECT * FROM attendux_checkin_subject($1, $2)',
    values: [tenantId, employeeId],
  });
  return rows[0];
}

export async function insertEvent(
  q: Queryable,
  tenantId: string,
  employeeId: string,
  v: EventValues,
  /** A check queued offline: the device's time as occurred_at (recorded_at stays the server's), flagged offline. */
  deviceTime?: Date,
): Promise<{ id: number; occurredAt: Date }> {
  const { rows } = await q.query<{ id: number; occurredAt: Date }>({
    name: 'attendux_checkin_insert_event',
    text: `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, latitude, longitude, accuracy_m,
                                          site_id, geofence, distance_m, method, face_score, device_id, flagged,
                                          offline)
           VALUES ($1, $2, $3, coalesce($14, now()), $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 IS NOT NULL)
           RETURNING id, occurred_at AS "occurredAt"`,
    values: [tenantId, employeeId, ...v.slice(0, 11), deviceTime ?? null],
  });
  return rows[0]!;
}

/** The kiosk's context: the subject, whether the key is live, and the fingerprint (migrations/0004). */
export async function checkinContext(
  q: Queryable,
  tenantId: string,
  keyId: string,
  employeeId: string,
): Promise<(CheckinSubject & { key_live: boolean; version: string }) | undefined> {
  const { rows } = await q.query<CheckinSubject & { key_live: boolean; version: string }>({
    name: 'attendux_checkin_context',
    text: 'SELECT * FROM attendux_checkin_context($1, $2, $3, $4)',
    values: [tenantId, keyId, false, employeeId],
  });
  return rows[0];
}

export interface RecordedCheckin {
  key_live: boolean;
  fresh: boolean | null;
  id: number | null;
  occurredAt: Date | null;
  /** Its audit entry's first half (attendux_audit_next), when the event was inserted. */
  seq: number | null;
  at_us: number | null;
  prev_hash: Buffer | null;
  details: string | null;
}

/**
 * The kiosk's one statement: sets the company, confirms the key is live, compares the context fingerprint,
 * inserts the event and opens its audit entry (attendux_record_checkin_next, migrations/0010). The first
 * statement of a transaction (src/core/attendance/kiosk.ts).
 */
export function recordCheckinStatement(
  k: { tenantId: string; keyId: string; touch: boolean; employeeId: string; version: string },
  v: EventValues,
): Statement {
  return {
    name: 'attendux_record_checkin_next',
    text: `SELECT key_live, fresh, id, occurred_at AS "occurredAt", seq, at_us, prev_hash, details
             FROM attendux_record_checkin_next($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                                               $16, $17, $18, $19, $20, $21)`,
    values: [k.tenantId, k.keyId, k.touch, k.employeeId, k.version, ...v],
  };
}

export interface EventFilter {
  employeeId?: string;
  from?: Date;
  to?: Date;
  flagged?: boolean;
  limit: number;
}

export async function listEvents(q: Queryable, v: Viewer, f: EventFilter): Promise<Row[]> {
  const s = employeeScope(v, 'e', 7);
  const { rows } = await q.query<Row>(
    `SELECT a.id, a.employee_id AS "employeeId", a.kind, a.occurred_at AS "occurredAt", a.latitude, a.longitude,
            a.accuracy_m AS "accuracyM", a.site_id AS "siteId", a.geofence, a.distance_m AS "distanceM", a.method,
            a.face_score AS "faceScore", a.device_id AS "deviceId", a.flagged, a.correction_id AS "correctionId",
            a.offline, a.recorded_at AS "recordedAt"
       FROM attendance_events a JOIN employees e ON e.tenant_id = a.tenant_id AND e.id = a.employee_id
      WHERE a.tenant_id = $1 AND ($2::uuid IS NULL OR a.employee_id = $2)
        AND ($3::timestamptz IS NULL OR a.occurred_at >= $3) AND ($4::timestamptz IS NULL OR a.occurred_at < $4)
        AND ($5::boolean IS NULL OR a.flagged = $5) AND ${s.sql}
      ORDER BY a.occurred_at DESC, a.id DESC LIMIT $6`,
    [v.tenantId, f.employeeId ?? null, f.from ?? null, f.to ?? null, f.flagged ?? null, f.limit, ...s.params],
  );
  return rows;
}

export async function eventOfEmployee(
  q: Queryable,
  tenantId: string,
  eventId: number,
  employeeId: string,
): Promise<boolean> {
  const r = await q.query(
    'SELECT 1 FROM attendance_events WHERE tenant_id = $1 AND id = $2 AND employee_id = $3',
    [tenantId, eventId, employeeId],
  );
  return Boolean(r.rowCount);
}

/** A manual event added by an approved correction. */
export async function insertCorrectedEvent(
  q: Queryable,
  tenantId: string,
  e: { employeeId: string; kind: string | null; occurredAt: Date | null; correctionId: string },
): Promise<number> {
  const { rows } = await q.query<{ id: number }>(
    `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, geofence, method, correction_id)
     VALUES ($1, $2, $3, $4, 'not_required', 'manual', $5) RETURNING id`,
    [tenantId, e.employeeId, e.kind, e.occurredAt, e.correctionId],
  );
  return rows[0]!.id;
}

export async function lockEvent(
  q: Queryable,
  tenantId: string,
  id: number,
): Promise<{ kind: string; occurredAt: Date } | undefined> {
  const { rows } = await q.query<{ kind: string; occurredAt: Date }>(
    'SELECT kind, occurred_at AS "occurredAt" FROM attendance_events WHERE tenant_id = $1 AND id = $2 FOR UPDATE',
    [tenantId, id],
  );
  return rows[0];
}

export async function correctEvent(
  q: Queryable,
  tenantId: string,
  id: number,
  e: { kind: string | null; occurredAt: Date | null; correctionId: string },
): Promise<void> {
  await q.query(
    `UPDATE attendance_events SET kind = coalesce($3, kind), occurred_at = coalesce($4, occurred_at), correction_id = $5
      WHERE tenant_id = $1 AND id = $2`,
    [tenantId, id, e.kind, e.occurredAt, e.correctionId],
  );
}

/** Remove an event, unlinking every correction request that points at it first. */
export async function deleteEvent(q: Queryable, tenantId: string, id: number): Promise<void> {
  await q.query('UPDATE correction_requests SET event_id = NULL WHERE tenant_id = $1 AND event_id = $2', [
    tenantId,
    id,
  ]);
  await q.query('DELETE FROM attendance_events WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
}
