import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { bufferToVector, faceAad, open as openSealed } from '../../crypto/aead.js';
import {
  FACE_MAX_ABS,
  FACE_MAX_DIMENSIONS,
  FACE_MIN_DIMENSIONS,
  faceMatch,
  faceVectorProblem,
  FaceThrottle,
} from '../../core/attendance/face.js';
import { withTenant } from '../../db/pool.js';
import { appendAudit } from '../../db/queries/audit.js';
import { judgeGeofence, type GeofenceResult, type Site } from '../../core/attendance/geofence.js';
import { AttenduxError } from '../../errors.js';
import { forbidden, httpError, notFound } from '../errors.js';
import { idParam, isoTime, latitude, longitude, parse, uuid } from '../validate.js';
import {
  ALL_ROLES,
  auditHashes,
  defineRoute,
  type ApiKeyContext,
  type RequestContext,
  type Row,
} from '../route.js';
import { canSeeEmployee, employeeScope } from '../scope.js';
import { mergeSettings } from '../../core/settings/settings.js';
import type { ServerDeps } from '../deps.js';
import { keyNotLive, touchKey, type Principal } from '../auth.js';
import type { Queryable } from '../../db/pool.js';

const CheckBody = z.strictObject({
  employeeId: uuid.optional(),
  position: z.strictObject({ latitude, longitude, accuracy: z.number().min(0).max(100_000) }).optional(),
  face: z
    .array(z.number().min(-FACE_MAX_ABS).max(FACE_MAX_ABS))
    .min(FACE_MIN_DIMENSIONS)
    .max(FACE_MAX_DIMENSIONS)
    .refine((v) => faceVectorProblem(v) === undefined, 'must be a finite, non-zero vector within bounds')
    .optional(),
  deviceId: z.string().min(1).max(100).optional(),
});
type CheckBody = z.infer<typeof CheckBody>;
type Kind = 'check_in' | 'check_out';

/** The employee, the company's sites and settings: see attendux_checkin_subject in migrations/0002. */
interface Subject {
  id: string;
  status: string;
  face_template: Buffer | null;
  face_key_id: string | null;
  sites: Site[];
  settings: Record<string, unknown> | null;
}

interface Verdict {
  geo: GeofenceResult;
  flagged: boolean;
  method: 'face' | 'gps' | 'kiosk' | 'manual';
  faceScore: number | null;
}

/** Whose attendance this is: a user checks in as the employee linked to it; a kiosk key names the employee. */
function subjectOf(p: Principal, requested: string | undefined): string {
  if (p.kind === 'apikey') {
    if (!requested) {
      throw httpError('VALIDATION_FAILED', 'employeeId is required with an API key', {
        fields: [{ field: 'body.employeeId', problem: 'required' }],
      });
    }
    return requested;
  }
  if (!p.employeeId) throw forbidden('your user is not linked to an employee');
  if (requested && requested !== p.employeeId) throw forbidden('you can only check yourself in or out');
  return p.employeeId;
}

const faceThrottle = new FaceThrottle();
const throttleKey = (tenantId: string, employeeId: string) => `${tenantId}:${employeeId.toLowerCase()}`;

const isMismatch = (err: unknown) => err instanceof AttenduxError && err.code === 'FACE_MISMATCH';

/** What a face mismatch leaves: a count towards the employee's throttle and an audit entry. */
function mismatchRecord(p: Principal, employeeId: string, err: AttenduxError) {
  const count = faceThrottle.miss(throttleKey(p.tenantId, employeeId));
  const score = (err.details as { score?: number | null } | undefined)?.score ?? null;
  // The score stays out of the answer (it would guide a search of the template), in the audit entry only.
  return {
    details: { employeeId, score, mismatchesInWindow: count },
    error: httpError('FACE_MISMATCH', 'the face does not match'),
  };
}

/** Face and geofence verdicts, computed here rather than in SQL; throws when the company's settings refuse. */
async function judge(
  deps: ServerDeps,
  p: Principal,
  employeeId: string,
  b: CheckBody,
  emp: Subject | undefined,
): Promise<Verdict> {
  if (!emp) throw notFound('employee');
  if (emp.status !== 'active') throw httpError('CONFLICT', 'the employee is inactive');
  const settings = mergeSettings(emp.settings);

  let faceScore: number | null = null;
  if (b.face || settings['face.required']) {
    if (!b.face) throw httpError('FACE_NOT_ENROLLED', 'this company requires a face vector on every check');
    if (!emp.face_template || !emp.face_key_id)
      throw httpError('FACE_NOT_ENROLLED', 'no face template is enrolled');
    let ring = await deps.keyring();
    if (!ring.keys[emp.face_key_id]) ring = await deps.reloadKeyring();
    let template: number[];
    try {
      template = bufferToVector(
        openSealed(ring, emp.face_key_id, emp.face_template, faceAad(p.tenantId, employeeId)),
      );
    } catch (err) {
      // A template that does not open is a server-side problem, never the client's: log it, answer 500.
      throw new AttenduxError('INTERNAL', 'face template cannot be opened', { cause: err });
    }
    if (faceThrottle.blocked(throttleKey(p.tenantId, employeeId)))
      throw httpError('RATE_LIMITED', 'too many face mismatches for this employee; retry later');
    const m = faceMatch(template, b.face, settings['face.threshold']);
    if (m.invalidTemplate)
      throw httpError(
        'FACE_NOT_ENROLLED',
        'the enrolled face template is not a valid vector; enrol it again',
      );
    if (!m.ok) throw httpError('FACE_MISMATCH', 'the face does not match', { score: m.score });
    faceScore = m.score;
  }

  let geo: GeofenceResult;
  if (settings['geofence.mode'] === 'off') geo = { verdict: 'not_required', siteId: null, distanceM: null };
  else {
    if (!b.position && emp.sites.length && settings['geofence.requirePosition']) {
      throw httpError('POSITION_REQUIRED', 'this company requires a GPS position to check in or out');
    }
    geo = judgeGeofence(b.position, emp.sites);
    if (geo.verdict === 'outside' && settings['geofence.mode'] === 'reject') {
      throw httpError(
        'OUTSIDE_GEOFENCE',
        `the position is ${Math.round(geo.distanceM ?? 0)} m from the nearest site, outside its radius`,
      );
    }
  }
  const flagged = geo.verdict === 'outside' || geo.verdict === 'unknown';
  const method = faceScore !== null ? 'face' : b.position ? 'gps' : p.kind === 'apikey' ? 'kiosk' : 'manual';
  return { geo, flagged, method, faceScore };
}

/**
 * The event's columns after the tenant and employee, then the audit entry's actor, action, hashes and details,
 * in the order both insert statements take them. Coordinates stay out of the audit log: the event row holds
 * them, under the same retention as attendance.
 */
function eventValues(
  req: RequestContext['req'],
  deps: ServerDeps,
  p: Principal,
  employeeId: string,
  kind: Kind,
  b: CheckBody,
  v: Verdict,
): unknown[] {
  const hashes = auditHashes(req, deps);
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
    p.actor,
    `attendance.${kind}`,
    hashes.ipHash,
    hashes.uaHash,
    JSON.stringify({
      employeeId,
      geofence: v.geo.verdict,
      flagged: v.flagged,
      method: v.method,
      siteId: v.geo.siteId,
    }),
  ];
}

/** The audit entry of a check-in/out, from eventValues' tail (actor, action, hashes, details). */
async function appendEventAudit(
  c: Queryable,
  deps: ServerDeps,
  tenantId: string,
  eventId: number,
  vals: unknown[],
) {
  const [actor, action, ipHash, uaHash, details] = vals.slice(11) as [string, string, string, string, string];
  await appendAudit(c, {
    tenantId,
    actor,
    action,
    entityType: 'attendance_event',
    entityId: String(eventId),
    ipHash,
    uaHash,
    details: JSON.parse(details) as Record<string, unknown>,
  });
  deps.audit.checkpointer?.noteAppend();
}

function checkResponse(ev: { id: number; occurredAt: Date }, employeeId: string, kind: Kind, v: Verdict) {
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
  };
}

/** A user's own check-in (or a key taking the generic path): inside the request's tenant transaction. */
async function check(ctx: RequestContext, kind: Kind) {
  const { c, p, req, reply, deps } = ctx;
  const b = parse(CheckBody, req.body, 'body');
  const employeeId = subjectOf(p, b.employeeId);
  const { rows } = await c.query<Subject & Row>({
    name: 'attendux_checkin_subject',
    text: 'SELECT * FROM attendux_checkin_subject($1, $2)',
    values: [p.tenantId, employeeId],
  });
  let v: Verdict;
  try {
    v = await judge(deps, p, employeeId, b, rows[0]);
  } catch (err) {
    if (!isMismatch(err)) throw err;
    const m = mismatchRecord(p, employeeId, err as AttenduxError);
    await ctx.audit('attendance.face_mismatch', 'employee', employeeId, m.details);
    return ctx.failAfterCommit(m.error);
  }
  // The event, then its audit entry (MAC'd by appendAudit), in the request's transaction.
  const vals = eventValues(req, deps, p, employeeId, kind, b, v);
  const ins = await c.query<{ id: number; occurredAt: Date }>({
    name: 'attendux_checkin_insert_event',
    text: `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, latitude, longitude, accuracy_m,
                                          site_id, geofence, distance_m, method, face_score, device_id, flagged)
           VALUES ($1, $2, $3, now(), $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
           RETURNING id, occurred_at AS "occurredAt"`,
    values: [p.tenantId, employeeId, ...vals.slice(0, 11)],
  });
  await appendEventAudit(c, deps, p.tenantId, ins.rows[0]!.id, vals);
  ctx.afterCommit(() => (kind === 'check_in' ? deps.metrics.checkIns++ : deps.metrics.checkOuts++));
  reply.code(201);
  return checkResponse(ins.rows[0]!, employeeId, kind, v);
}

/** A kiosk's view of an employee: the subject and its fingerprint (attendux_checkin_version, migrations/0004). */
interface KioskContext {
  subject: Subject;
  version: string;
}

/**
 * Contexts of recently checked-in employees, by company and employee. Only a shortcut: every insert compares
 * the fingerprint with the database in the inserting statement, and a refusal is only ever given from a
 * context just loaded, so a stale entry costs a round trip, never a wrong verdict.
 */
const kioskContexts = new Map<string, KioskContext>();
const KIOSK_CONTEXTS_MAX = 20_000;
const KIOSK_ATTEMPTS = 3;

async function loadKioskContext(deps: ServerDeps, claim: ApiKeyContext['claim'], employeeId: string) {
  const { rows } = await deps.pool.query<Subject & { key_live: boolean; version: string }>({
    name: 'attendux_checkin_context',
    text: 'SELECT * FROM attendux_checkin_context($1, $2, $3, $4)',
    values: [claim.tenantId, claim.keyId, false, employeeId],
  });
  const row = rows[0];
  if (!row?.key_live) throw keyNotLive();
  if (!row.id) throw notFound('employee');
  return { subject: row, version: row.version };
}

/**
 * The kiosk hot path, without BEGIN and COMMIT: usually ONE statement (attendux_record_checkin: company set
 * inside it, key confirmed live, context fingerprint compared, event and audit entry inserted atomically),
 * judged from a cached context; two when the context must be loaded first (attendux_checkin_context).
 */
async function kioskCheck(ctx: ApiKeyContext, kind: Kind) {
  const { req, reply, deps, claim, p } = ctx;
  const b = parse(CheckBody, req.body, 'body');
  const employeeId = subjectOf(p, b.employeeId).toLowerCase();
  const cacheKey = `${claim.tenantId}:${employeeId}`;
  for (let attempt = 0; attempt < KIOSK_ATTEMPTS; attempt++) {
    let context = kioskContexts.get(cacheKey);
    let v: Verdict | undefined;
    if (context) {
      try {
        v = await judge(deps, p, employeeId, b, context.subject);
      } catch {
        // Refuse only on what the database holds now, never on a cached context.
        context = undefined;
      }
    }
    if (!context || !v) {
      context = await loadKioskContext(deps, claim, employeeId);
      if (kioskContexts.size >= KIOSK_CONTEXTS_MAX) kioskContexts.clear();
      kioskContexts.set(cacheKey, context);
      try {
        v = await judge(deps, p, employeeId, b, context.subject);
      } catch (err) {
        if (isMismatch(err)) {
          const m = mismatchRecord(p, employeeId, err as AttenduxError);
          await withTenant(deps.pool, claim.tenantId, (c) =>
            appendAudit(c, {
              tenantId: claim.tenantId,
              actor: p.actor,
              action: 'attendance.face_mismatch',
              entityType: 'employee',
              entityId: employeeId,
              ...auditHashes(req, deps),
              details: m.details,
            }),
          );
          throw m.error;
        }
        throw err;
      }
    }
    const vals = eventValues(req, deps, p, employeeId, kind, b, v);
    // The MAC of the audit entry is computed here (the database never has the key): the event and its entry
    // are written in one transaction, the entry right after the event.
    const c = await deps.pool.connect();
    let row:
      { key_live: boolean; fresh: boolean | null; id: number | null; occurredAt: Date | null } | undefined;
    try {
      await c.query('BEGIN');
      const rec = await c.query<{
        key_live: boolean;
        fresh: boolean | null;
        id: number | null;
        occurredAt: Date | null;
      }>({
        name: 'attendux_record_checkin',
        text: `SELECT key_live, fresh, id, occurred_at AS "occurredAt"
                 FROM attendux_record_checkin($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                                              $17, $18, $19, $20, $21)`,
        values: [claim.tenantId, claim.keyId, touchKey(claim.keyId), employeeId, context.version, ...vals],
      });
      row = rec.rows[0];
      if (row?.key_live && row.fresh && row.id !== null) {
        await appendEventAudit(c, deps, claim.tenantId, row.id, vals);
        await c.query('COMMIT');
      } else {
        await c.query('ROLLBACK');
      }
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
    if (!row?.key_live) throw keyNotLive();
    if (row.fresh && row.id !== null && row.occurredAt !== null) {
      if (kind === 'check_in') deps.metrics.checkIns++;
      else deps.metrics.checkOuts++;
      reply.code(201);
      return checkResponse({ id: row.id, occurredAt: row.occurredAt }, employeeId, kind, v);
    }
    // The employee, the sites or the settings changed since the context was loaded: judge again.
    kioskContexts.delete(cacheKey);
  }
  throw httpError('CONFLICT', 'the employee or the company settings keep changing; retry');
}

const EventsQuery = z.strictObject({
  employeeId: uuid.optional(),
  from: isoTime.optional(),
  to: isoTime.optional(),
  flagged: z.enum(['true', 'false']).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(200),
});

const CorrectionCreate = z
  .strictObject({
    employeeId: uuid.optional(),
    action: z.enum(['add', 'change', 'delete']),
    eventId: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional(),
    proposedKind: z.enum(['check_in', 'check_out']).optional(),
    proposedOccurredAt: isoTime.optional(),
    reason: z.string().trim().min(1).max(2000),
  })
  .superRefine((v, ctx) => {
    if (v.action === 'add' && (!v.proposedKind || !v.proposedOccurredAt))
      ctx.addIssue({
        code: 'custom',
        path: ['proposedOccurredAt'],
        message: 'add needs proposedKind and proposedOccurredAt',
      });
    if (v.action !== 'add' && v.eventId === undefined)
      ctx.addIssue({ code: 'custom', path: ['eventId'], message: `${v.action} needs eventId` });
    if (v.action === 'change' && !v.proposedKind && !v.proposedOccurredAt)
      ctx.addIssue({
        code: 'custom',
        path: ['proposedOccurredAt'],
        message: 'change needs proposedKind or proposedOccurredAt',
      });
  });

const CORRECTION_COLUMNS = `r.id, r.employee_id AS "employeeId", r.requested_by AS "requestedBy", r.action,
  r.event_id AS "eventId", r.proposed_kind AS "proposedKind", r.proposed_occurred_at AS "proposedOccurredAt",
  r.reason, r.status, r.decided_by AS "decidedBy", r.decided_at AS "decidedAt", r.decision_note AS "decisionNote",
  r.created_at AS "createdAt"`;

export function attendanceRoutes(app: FastifyInstance, deps: ServerDeps) {
  for (const [url, kind] of [
    ['/api/v1/attendance/check-in', 'check_in'],
    ['/api/v1/attendance/check-out', 'check_out'],
  ] as const) {
    defineRoute(app, deps, {
      method: 'POST',
      url,
      roles: ALL_ROLES,
      scope: 'check-in',
      apiKeyFastPath: (ctx) => kioskCheck(ctx, kind),
      handler: (ctx) => check(ctx, kind),
    });
  }

  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/attendance/events',
    roles: ALL_ROLES,
    scope: 'read',
    async handler({ c, p, req }) {
      const q = parse(EventsQuery, req.query, 'query');
      const s = employeeScope(p, 'e', 7);
      const { rows } = await c.query<Row>(
        `SELECT a.id, a.employee_id AS "employeeId", a.kind, a.occurred_at AS "occurredAt", a.latitude, a.longitude,
                a.accuracy_m AS "accuracyM", a.site_id AS "siteId", a.geofence, a.distance_m AS "distanceM", a.method,
                a.face_score AS "faceScore", a.device_id AS "deviceId", a.flagged, a.correction_id AS "correctionId"
           FROM attendance_events a JOIN employees e ON e.tenant_id = a.tenant_id AND e.id = a.employee_id
          WHERE a.tenant_id = $1 AND ($2::uuid IS NULL OR a.employee_id = $2)
            AND ($3::timestamptz IS NULL OR a.occurred_at >= $3) AND ($4::timestamptz IS NULL OR a.occurred_at < $4)
            AND ($5::boolean IS NULL OR a.flagged = $5) AND ${s.sql}
          ORDER BY a.occurred_at DESC, a.id DESC LIMIT $6`,
        [
          p.tenantId,
          q.employeeId ?? null,
          q.from ?? null,
          q.to ?? null,
          q.flagged === undefined ? null : q.flagged === 'true',
          q.limit,
          ...s.params,
        ],
      );
      return { events: rows };
    },
  });

  defineRoute(app, deps, {
    method: 'POST',
    url: '/api/v1/corrections',
    roles: ALL_ROLES,
    async handler({ c, p, req, reply, audit }) {
      const b = parse(CorrectionCreate, req.body, 'body');
      const employeeId = b.employeeId ?? p.employeeId;
      if (!employeeId) throw forbidden('your user is not linked to an employee; name employeeId');
      if (
        employeeId !== p.employeeId &&
        (p.role === 'employee' || !(await canSeeEmployee(c, p, employeeId)))
      ) {
        throw notFound('employee');
      }
      if (b.eventId !== undefined) {
        const ev = await c.query<Row>(
          'SELECT 1 FROM attendance_events WHERE tenant_id = $1 AND id = $2 AND employee_id = $3',
          [p.tenantId, b.eventId, employeeId],
        );
        if (!ev.rowCount) throw notFound('attendance event');
      }
      const { rows } = await c.query<{ id: string }>(
        `INSERT INTO correction_requests AS r (tenant_id, employee_id, requested_by, action, event_id, proposed_kind,
                                              proposed_occurred_at, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ${CORRECTION_COLUMNS}`,
        [
          p.tenantId,
          employeeId,
          p.userId,
          b.action,
          b.eventId ?? null,
          b.proposedKind ?? null,
          b.proposedOccurredAt ?? null,
          b.reason,
        ],
      );
      await audit('correction.request', 'correction_request', rows[0]!.id, {
        employeeId,
        action: b.action,
        eventId: b.eventId ?? null,
      });
      reply.code(201);
      return rows[0];
    },
  });

  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/corrections',
    roles: ALL_ROLES,
    scope: 'read',
    async handler({ c, p, req }) {
      const q = parse(
        z.strictObject({
          status: z.enum(['pending', 'approved', 'rejected']).optional(),
          employeeId: uuid.optional(),
        }),
        req.query,
        'query',
      );
      const s = employeeScope(p, 'e', 4);
      const { rows } = await c.query<Row>(
        `SELECT ${CORRECTION_COLUMNS} FROM correction_requests r
           JOIN employees e ON e.tenant_id = r.tenant_id AND e.id = r.employee_id
          WHERE r.tenant_id = $1 AND ($2::text IS NULL OR r.status = $2) AND ($3::uuid IS NULL OR r.employee_id = $3)
            AND ${s.sql}
          ORDER BY r.created_at DESC LIMIT 500`,
        [p.tenantId, q.status ?? null, q.employeeId ?? null, ...s.params],
      );
      return { corrections: rows };
    },
  });

  for (const decision of ['approve', 'reject'] as const) {
    defineRoute(app, deps, {
      method: 'POST',
      url: `/api/v1/corrections/:id/${decision}`,
      roles: ['owner', 'admin', 'hr', 'manager'],
      async handler({ c, p, req, audit }) {
        const id = idParam(req.params);
        const b = parse(
          z.strictObject({ note: z.string().trim().max(2000).optional() }),
          req.body ?? {},
          'body',
        );
        const s = employeeScope(p, 'e', 3);
        const { rows } = await c.query<{
          employeeId: string;
          requestedBy: string;
          action: 'add' | 'change' | 'delete';
          eventId: number | null;
          proposedKind: string | null;
          proposedOccurredAt: Date | null;
          status: string;
        }>(
          `SELECT ${CORRECTION_COLUMNS} FROM correction_requests r
             JOIN employees e ON e.tenant_id = r.tenant_id AND e.id = r.employee_id
            WHERE r.tenant_id = $1 AND r.id = $2 AND ${s.sql} FOR UPDATE OF r`,
          [p.tenantId, id, ...s.params],
        );
        const r = rows[0];
        if (!r) throw notFound('correction request');
        if (r.requestedBy === p.userId || r.employeeId === p.employeeId) {
          throw forbidden('you cannot decide on your own correction request');
        }
        if (r.status !== 'pending') throw httpError('CONFLICT', `the request is already ${r.status}`);
        let applied: Record<string, unknown> = {};
        if (decision === 'approve') applied = await applyCorrection(c, p.tenantId, id, r);
        const upd = await c.query<Row>(
          `UPDATE correction_requests AS r SET status = $3, decided_by = $4, decided_at = now(), decision_note = $5
            WHERE tenant_id = $1 AND id = $2 RETURNING ${CORRECTION_COLUMNS}`,
          [p.tenantId, id, decision === 'approve' ? 'approved' : 'rejected', p.userId, b.note ?? null],
        );
        await audit(`correction.${decision}`, 'correction_request', id, {
          employeeId: r.employeeId,
          action: r.action,
          ...applied,
        });
        return upd.rows[0];
      },
    });
  }
}

async function applyCorrection(
  c: RequestContext['c'],
  tenantId: string,
  correctionId: string,
  r: {
    employeeId: string;
    action: string;
    eventId: number | null;
    proposedKind: string | null;
    proposedOccurredAt: Date | null;
  },
): Promise<Record<string, unknown>> {
  if (r.action === 'add') {
    const { rows } = await c.query<{ id: number }>(
      `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, geofence, method, correction_id)
       VALUES ($1, $2, $3, $4, 'not_required', 'manual', $5) RETURNING id`,
      [tenantId, r.employeeId, r.proposedKind, r.proposedOccurredAt, correctionId],
    );
    return { eventId: rows[0]!.id };
  }
  const old = await c.query<{ kind: string; occurred_at: Date }>(
    'SELECT kind, occurred_at FROM attendance_events WHERE tenant_id = $1 AND id = $2 FOR UPDATE',
    [tenantId, r.eventId],
  );
  if (!old.rows[0]) throw httpError('CONFLICT', 'the event of this request no longer exists');
  const before = { kind: old.rows[0].kind, occurredAt: old.rows[0].occurred_at };
  if (r.action === 'change') {
    await c.query<Row>(
      `UPDATE attendance_events SET kind = coalesce($3, kind), occurred_at = coalesce($4, occurred_at), correction_id = $5
        WHERE tenant_id = $1 AND id = $2`,
      [tenantId, r.eventId, r.proposedKind, r.proposedOccurredAt, correctionId],
    );
    return { eventId: r.eventId, before };
  }
  // delete: unlink every request pointing at the event, then remove it; the audit entry keeps what it was.
  await c.query<Row>(
    'UPDATE correction_requests SET event_id = NULL WHERE tenant_id = $1 AND event_id = $2',
    [tenantId, r.eventId],
  );
  await c.query<Row>('DELETE FROM attendance_events WHERE tenant_id = $1 AND id = $2', [tenantId, r.eventId]);
  return { eventId: r.eventId, before };
}
