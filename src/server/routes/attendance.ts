import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import {
  FACE_MAX_ABS,
  FACE_MAX_DIMENSIONS,
  FACE_MIN_DIMENSIONS,
  faceVectorProblem,
} from '../../core/attendance/face.js';
import { listEvents, recordCheck } from '../../core/attendance/checkin.js';
import { kioskCheck, type KioskEnv } from '../../core/attendance/kiosk.js';
import { decide, listCorrections, requestCorrection } from '../../core/corrections/corrections.js';
import { IdParams, isoTime, latitude, longitude, uuid } from '../validate.js';
import { ALL_ROLES, auditHashes, created, defineRoute } from '../route.js';
import { touchKey } from '../auth.js';
import type { ServerDeps } from '../deps.js';

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
  // A check queued by the web page while offline, with the device's time (core/attendance/offline.ts).
  offline: z.boolean().optional(),
  deviceTime: isoTime.optional(),
});

const EventsQuery = z.strictObject({
  employeeId: uuid.optional(),
  from: isoTime.optional(),
  to: isoTime.optional(),
  flagged: z.enum(['true', 'false']).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(200),
});

export const CorrectionCreate = z
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
const CorrectionsQuery = z.strictObject({
  status: z.enum(['pending', 'approved', 'rejected']).optional(),
  employeeId: uuid.optional(),
});
// The body may be left out altogether.
const DecisionBody = z.strictObject({ note: z.string().trim().max(2000).optional() }).default({});

/** Check-in/out (the kiosk fast path included), events and corrections: core/attendance, core/corrections. */
export function attendanceRoutes(app: FastifyInstance, deps: ServerDeps) {
  const kiosk: KioskEnv = {
    pool: deps.pool,
    keys: deps,
    noteAppend: () => deps.audit.checkpointer?.noteAppend(),
  };
  const counted = (kind: 'check_in' | 'check_out') => () =>
    kind === 'check_in' ? deps.metrics.checkIns++ : deps.metrics.checkOuts++;

  for (const [url, kind] of [
    ['/api/v1/attendance/check-in', 'check_in'],
    ['/api/v1/attendance/check-out', 'check_out'],
  ] as const) {
    defineRoute(app, deps, {
      method: 'POST',
      url,
      roles: ALL_ROLES,
      scope: 'check-in',
      body: CheckBody,
      success: [201],
      async apiKeyFastPath({ req, reply, claim, p, body }) {
        const key = {
          caller: p,
          keyId: claim.keyId,
          touch: touchKey(claim.keyId),
          client: auditHashes(req, deps),
        };
        const event = await kioskCheck(kiosk, key, kind, body);
        counted(kind)();
        return created(reply, event);
      },
      async handler({ tx, body, reply, afterCommit, failAfterCommit }) {
        const r = await recordCheck(tx, deps, kind, body);
        // A face mismatch's audit entry and throttle count are committed although the request fails.
        if (r.refused) return failAfterCommit(r.refused);
        afterCommit(counted(kind));
        return created(reply, r.event);
      },
    });
  }

  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/attendance/events',
    roles: ALL_ROLES,
    scope: 'read',
    query: EventsQuery,
    async handler({ tx, query: q }) {
      const flagged = q.flagged === undefined ? undefined : q.flagged === 'true';
      return { events: await listEvents(tx, { ...q, flagged }) };
    },
  });

  defineRoute(app, deps, {
    method: 'POST',
    url: '/api/v1/corrections',
    roles: ALL_ROLES,
    body: CorrectionCreate,
    success: [201],
    handler: async ({ tx, body, reply }) => created(reply, await requestCorrection(tx, body)),
  });

  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/corrections',
    roles: ALL_ROLES,
    scope: 'read',
    query: CorrectionsQuery,
    handler: async ({ tx, query }) => ({ corrections: await listCorrections(tx, query) }),
  });

  for (const decision of ['approve', 'reject'] as const) {
    defineRoute(app, deps, {
      method: 'POST',
      url: `/api/v1/corrections/:id/${decision}`,
      roles: ['owner', 'admin', 'hr', 'manager'],
      params: IdParams,
      body: DecisionBody,
      handler: async ({ tx, params, body }) => decide(tx, params.id, decision, body.note),
    });
  }
}
