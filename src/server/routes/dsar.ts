import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { companyRequests, exportOwnData, fileErasureRequest } from '../../core/dsar/self-service.js';
import { ALL_ROLES, defineRoute } from '../route.js';
import type { ServerDeps } from '../deps.js';
import { sessionUserOf } from '../auth.js';

/** Exports per user per hour: a zip of a whole employment history is expensive, and each one is audited. */
const EXPORTS_PER_HOUR = 3;

/**
 * The employee's side of data subject requests: download their own data (the same zip `dsar export` makes,
 * unencrypted over TLS), file an erasure request for compliance staff; and the register for owners and HR.
 */
export function dsarRoutes(app: FastifyInstance, deps: ServerDeps) {
  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/me/export',
    roles: ALL_ROLES,
    exclusive: (claim) => (claim.kind === 'session' ? `me-export:${claim.userId}` : undefined),
    produces: ['application/zip'],
    // @fastify/rate-limit keyed by the session's user (in Redis when server.redisUrl is set, so every serve
    // instance counts the same exports); it replaces the per-IP limit on this route.
    rateLimit: {
      max: EXPORTS_PER_HOUR,
      timeWindow: 3_600_000,
      keyGenerator: (req) => sessionUserOf(req) ?? `ip:${req.ip}`,
      errorResponseBuilder: () => ({
        statusCode: 429,
        code: 'RATE_LIMITED',
        message: `at most ${EXPORTS_PER_HOUR} exports per hour; retry later`,
      }),
    },
    async handler({ tx, reply }) {
      const dir = await mkdtemp(join(tmpdir(), 'attendux-me-export-'));
      let out: Awaited<ReturnType<typeof exportOwnData>>;
      try {
        out = await exportOwnData(tx, dir, () => undefined);
      } catch (err) {
        await rm(dir, { recursive: true, force: true });
        throw err;
      }
      const stream = createReadStream(out.file);
      // Removed once sent (or when the client went away); the transaction commits before sending starts.
      stream.on('close', () => void rm(dir, { recursive: true, force: true }));
      const day = out.generatedAt.toISOString().slice(0, 10);
      reply
        .type('application/zip')
        .header('content-disposition', `attachment; filename="my-data-${day}.zip"`)
        .header('cache-control', 'no-store');
      return stream;
    },
  });

  defineRoute(app, deps, {
    method: 'POST',
    url: '/api/v1/me/erasure-request',
    roles: ALL_ROLES,
    // The body may be left out altogether.
    body: z.strictObject({ reason: z.string().max(2000).optional() }).default({}),
    success: [200, 201],
    async handler({ tx, body, reply }) {
      const r = await fileErasureRequest(tx, body.reason);
      if (!r.created)
        return { id: r.id, status: 'open', note: 'an erasure request of yours is already open' };
      reply.code(201);
      return { id: r.id, status: r.status, receivedAt: r.receivedAt, dueAt: r.dueAt };
    },
  });

  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/dsar/requests',
    roles: ['owner', 'hr'],
    query: z.strictObject({ status: z.enum(['open', 'done', 'overdue']).optional() }),
    async handler({ tx, query }) {
      return { requests: await companyRequests(tx, query.status) };
    },
  });
}
