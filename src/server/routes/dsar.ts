import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { findSubject } from '../../db/queries/dsar.js';
import { insertRequest, listRequests, openRequestFor } from '../../db/queries/dsar-requests.js';
import { dsarSettings, markOf } from '../../core/dsar/service.js';
import { writeExportFile } from '../../core/dsar/zip.js';
import { httpError, notFound } from '../errors.js';
import { parse } from '../validate.js';
import { ALL_ROLES, defineRoute } from '../route.js';
import type { ServerDeps } from '../deps.js';

/** Exports per user per hour: a zip of a whole employment history is expensive, and each one is audited. */
const EXPORTS_PER_HOUR = 3;

/**
 * The employee's side of data subject requests: download their own data (the same zip `dsar export` makes,
 * unencrypted over TLS), file an erasure request for compliance staff; and the register for owners and HR.
 */
export function dsarRoutes(app: FastifyInstance, deps: ServerDeps) {
  const recent = new Map<string, number[]>();
  const takeExportSlot = (userId: string) => {
    const now = Date.now();
    const list = (recent.get(userId) ?? []).filter((t) => now - t < 3_600_000);
    if (list.length >= EXPORTS_PER_HOUR)
      throw httpError('RATE_LIMITED', `at most ${EXPORTS_PER_HOUR} exports per hour; retry later`);
    list.push(now);
    recent.set(userId, list);
  };

  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/me/export',
    roles: ALL_ROLES,
    exclusive: (claim) => (claim.kind === 'session' ? `me-export:${claim.userId}` : undefined),
    async handler({ c, p, reply, audit }) {
      if (!p.employeeId || !p.userId) throw notFound('employee record of your user');
      const [subject] = await findSubject(c, p.tenantId, { employeeId: p.employeeId });
      if (!subject) throw notFound('employee record of your user');
      takeExportSlot(p.userId);
      const { rows } = await c.query<{ slug: string }>('SELECT slug FROM tenants WHERE id = $1', [
        p.tenantId,
      ]);
      const now = new Date();
      const requestId = randomUUID();
      const dir = await mkdtemp(join(tmpdir(), 'attendux-me-export-'));
      const file = join(dir, 'export.zip');
      try {
        const m = await writeExportFile(c, subject, file, {
          requestId,
          tenantSlug: rows[0]!.slug,
          ...(await dsarSettings(c, p.tenantId)),
          generatedAt: now,
        });
        await insertRequest(c, {
          id: requestId,
          tenantId: p.tenantId,
          kind: 'export',
          employeeId: subject.employeeId,
          source: 'api',
          handledBy: p.actor,
          done: true,
          now,
        });
        await audit('dsar.export', 'employee', subject.employeeId, {
          requestId,
          source: 'api',
          encrypted: null,
          files: m.files.length,
          bytes: m.bytes,
        });
      } catch (err) {
        await rm(dir, { recursive: true, force: true });
        throw err;
      }
      const stream = createReadStream(file);
      // Removed once sent (or when the client went away); the transaction commits before sending starts.
      stream.on('close', () => void rm(dir, { recursive: true, force: true }));
      reply
        .type('application/zip')
        .header('content-disposition', `attachment; filename="my-data-${now.toISOString().slice(0, 10)}.zip"`)
        .header('cache-control', 'no-store');
      return stream;
    },
  });

  defineRoute(app, deps, {
    method: 'POST',
    url: '/api/v1/me/erasure-request',
    roles: ALL_ROLES,
    async handler({ c, p, req, reply, audit }) {
      const b = parse(z.strictObject({ reason: z.string().max(2000).optional() }), req.body ?? {}, 'body');
      if (!p.employeeId) throw notFound('employee record of your user');
      // Files a request in the register for compliance staff; it erases nothing by itself.
      const open = await openRequestFor(c, p.tenantId, p.employeeId, 'erasure', false);
      if (open) return { id: open, status: 'open', note: 'an erasure request of yours is already open' };
      const r = await insertRequest(c, {
        tenantId: p.tenantId,
        kind: 'erasure',
        employeeId: p.employeeId,
        source: 'api',
        reason: b.reason ?? null,
        now: new Date(),
      });
      await audit('dsar.erasure_request', 'dsar_request', r.id, { employeeId: p.employeeId });
      reply.code(201);
      return { id: r.id, status: r.status, receivedAt: r.receivedAt, dueAt: r.dueAt };
    },
  });

  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/dsar/requests',
    roles: ['owner', 'hr'],
    async handler({ c, p, req }) {
      const q = parse(
        z.strictObject({ status: z.enum(['open', 'done', 'overdue']).optional() }),
        req.query,
        'query',
      );
      const now = new Date();
      const rows = await listRequests(c, { tenantId: p.tenantId, status: q.status, now });
      return { requests: rows.map((r) => ({ ...r, mark: markOf(r, now) })) };
    },
  });
}
