import type { FastifyInstance } from 'fastify';
import type { Row } from '../route.js';
import type { Queryable } from '../../db/pool.js';
import { z } from 'zod';
import { faceAad, seal, vectorToBuffer } from '../../crypto/aead.js';
import {
  FACE_MAX_ABS,
  FACE_MAX_DIMENSIONS,
  FACE_MIN_DIMENSIONS,
  faceVectorProblem,
} from '../../core/attendance/face.js';
import { httpError, notFound } from '../errors.js';
import { idParam, latitude, longitude, name200, parse, uuid } from '../validate.js';
import { ALL_ROLES, defineRoute } from '../route.js';
import { employeeScope } from '../scope.js';
import type { ServerDeps } from '../deps.js';

/** Never the face template: only whether one is enrolled. */
const EMPLOYEE_COLUMNS = `e.id, e.employee_number AS "employeeNumber", e.full_name AS "fullName", e.email,
  e.team_id AS "teamId", e.hourly_rate_minor AS "hourlyRateMinor", e.currency, e.time_zone AS "timeZone",
  e.status, e.face_template IS NOT NULL AS "faceEnrolled", e.face_enrolled_at AS "faceEnrolledAt",
  e.created_at AS "createdAt", e.updated_at AS "updatedAt"`;

const currency = z.string().regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code like EUR');
const timeZone = z
  .string()
  .max(64)
  .refine((tz) => {
    try {
      new Intl.DateTimeFormat('en', { timeZone: tz });
      return true;
    } catch {
      return false;
    }
  }, 'unknown time zone');

const EmployeeCreate = z.strictObject({
  fullName: name200,
  employeeNumber: z.string().trim().min(1).max(64).optional(),
  email: z.email().max(254).optional(),
  teamId: uuid.nullable().optional(),
  hourlyRateMinor: z.number().int().min(0).max(100_000_000).optional(),
  currency: currency.optional(),
  timeZone: timeZone.optional(),
});
const EmployeePatch = EmployeeCreate.partial().extend({ status: z.enum(['active', 'inactive']).optional() });
const ListQuery = z.strictObject({
  teamId: uuid.optional(),
  status: z.enum(['active', 'inactive']).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(200),
  offset: z.coerce.number().int().min(0).max(10_000_000).default(0),
});
const FaceBody = z.strictObject({
  vector: z
    .array(z.number().min(-FACE_MAX_ABS).max(FACE_MAX_ABS))
    .min(FACE_MIN_DIMENSIONS)
    .max(FACE_MAX_DIMENSIONS)
    .refine((v) => faceVectorProblem(v) === undefined, 'must be a finite, non-zero vector within bounds'),
});

export function peopleRoutes(app: FastifyInstance, deps: ServerDeps) {
  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/employees',
    roles: ['owner', 'admin', 'hr', 'manager'],
    scope: 'read',
    async handler({ c, p, req }) {
      const q = parse(ListQuery, req.query, 'query');
      const s = employeeScope(p, 'e', 6);
      const { rows } = await c.query<Row>(
        `SELECT ${EMPLOYEE_COLUMNS} FROM employees e
          WHERE e.tenant_id = $1 AND ($2::uuid IS NULL OR e.team_id = $2) AND ($3::text IS NULL OR e.status = $3)
            AND ${s.sql}
          ORDER BY e.full_name, e.id LIMIT $4 OFFSET $5`,
        [p.tenantId, q.teamId ?? null, q.status ?? null, q.limit, q.offset, ...s.params],
      );
      return { employees: rows };
    },
  });

  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/employees/:id',
    roles: ALL_ROLES,
    scope: 'read',
    async handler({ c, p, req }) {
      const id = idParam(req.params);
      const s = employeeScope(p, 'e', 3);
      const { rows } = await c.query<Row>(
        `SELECT ${EMPLOYEE_COLUMNS} FROM employees e WHERE e.tenant_id = $1 AND e.id = $2 AND ${s.sql}`,
        [p.tenantId, id, ...s.params],
      );
      if (!rows[0]) throw notFound('employee');
      return rows[0];
    },
  });

  defineRoute(app, deps, {
    method: 'POST',
    url: '/api/v1/employees',
    roles: ['owner', 'admin'],
    scope: 'admin',
    async handler({ c, p, req, reply, audit }) {
      const b = parse(EmployeeCreate, req.body, 'body');
      if (b.teamId) await requireTeam(c, p.tenantId, b.teamId);
      const { rows } = await c.query<{ id: string }>(
        `INSERT INTO employees AS e (tenant_id, full_name, employee_number, email, team_id, hourly_rate_minor, currency, time_zone)
         VALUES ($1, $2, $3, $4, $5, coalesce($6, 0), coalesce($7, (SELECT currency FROM tenants WHERE id = $1)),
                 coalesce($8, (SELECT time_zone FROM tenants WHERE id = $1)))
         RETURNING ${EMPLOYEE_COLUMNS}`,
        [
          p.tenantId,
          b.fullName,
          b.employeeNumber ?? null,
          b.email ?? null,
          b.teamId ?? null,
          b.hourlyRateMinor ?? null,
          b.currency ?? null,
          b.timeZone ?? null,
        ],
      );
      await audit('employee.create', 'employee', rows[0]!.id, {
        employeeNumber: b.employeeNumber ?? null,
        teamId: b.teamId ?? null,
      });
      reply.code(201);
      return rows[0];
    },
  });

  defineRoute(app, deps, {
    method: 'PATCH',
    url: '/api/v1/employees/:id',
    roles: ['owner', 'admin'],
    scope: 'admin',
    async handler({ c, p, req, audit }) {
      const id = idParam(req.params);
      const b = parse(EmployeePatch, req.body, 'body');
      if (b.teamId) await requireTeam(c, p.tenantId, b.teamId);
      const { rows } = await c.query<{ id: string }>(
        `UPDATE employees e SET
            full_name = coalesce($3, full_name),
            employee_number = CASE WHEN $4::boolean THEN $5 ELSE employee_number END,
            email = CASE WHEN $6::boolean THEN $7 ELSE email END,
            team_id = CASE WHEN $8::boolean THEN $9::uuid ELSE team_id END,
            hourly_rate_minor = coalesce($10, hourly_rate_minor),
            currency = coalesce($11, currency),
            time_zone = coalesce($12, time_zone),
            status = coalesce($13, status),
            updated_at = now()
          WHERE tenant_id = $1 AND id = $2
          RETURNING ${EMPLOYEE_COLUMNS}`,
        [
          p.tenantId,
          id,
          b.fullName ?? null,
          b.employeeNumber !== undefined,
          b.employeeNumber ?? null,
          b.email !== undefined,
          b.email ?? null,
          b.teamId !== undefined,
          b.teamId ?? null,
          b.hourlyRateMinor ?? null,
          b.currency ?? null,
          b.timeZone ?? null,
          b.status ?? null,
        ],
      );
      if (!rows[0]) throw notFound('employee');
      await audit('employee.update', 'employee', id, { fields: Object.keys(b) });
      return rows[0];
    },
  });

  defineRoute(app, deps, {
    method: 'PUT',
    url: '/api/v1/employees/:id/face',
    roles: ['owner', 'admin', 'hr'],
    scope: 'admin',
    async handler({ c, p, req, reply, audit }) {
      const id = idParam(req.params);
      const b = parse(FaceBody, req.body, 'body');
      const sealed = seal(await deps.keyring(), vectorToBuffer(b.vector), faceAad(p.tenantId, id));
      const { rowCount } = await c.query<Row>(
        `UPDATE employees SET face_template = $3, face_key_id = $4, face_enrolled_at = now(), updated_at = now()
          WHERE tenant_id = $1 AND id = $2`,
        [p.tenantId, id, sealed.data, sealed.keyId],
      );
      if (!rowCount) throw notFound('employee');
      await audit('employee.face_enroll', 'employee', id, {
        dimensions: b.vector.length,
        keyId: sealed.keyId,
      });
      reply.code(204);
      return null;
    },
  });

  defineRoute(app, deps, {
    method: 'DELETE',
    url: '/api/v1/employees/:id/face',
    roles: ['owner', 'admin', 'hr'],
    scope: 'admin',
    async handler({ c, p, req, reply, audit }) {
      const id = idParam(req.params);
      const { rowCount } = await c.query<Row>(
        `UPDATE employees SET face_template = NULL, face_key_id = NULL, face_enrolled_at = NULL, updated_at = now()
          WHERE tenant_id = $1 AND id = $2`,
        [p.tenantId, id],
      );
      if (!rowCount) throw notFound('employee');
      await audit('employee.face_delete', 'employee', id);
      reply.code(204);
      return null;
    },
  });

  // Teams
  const TeamBody = z.strictObject({ name: name200 });
  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/teams',
    roles: ['owner', 'admin', 'hr', 'manager'],
    scope: 'read',
    async handler({ c, p }) {
      const { rows } = await c.query<Row>(
        `SELECT t.id, t.name, t.created_at AS "createdAt",
                coalesce((SELECT json_agg(tm.user_id ORDER BY tm.user_id) FROM team_managers tm
                           WHERE tm.tenant_id = t.tenant_id AND tm.team_id = t.id), '[]') AS "managerIds"
           FROM teams t
          WHERE t.tenant_id = $1
            AND ($2::text IS DISTINCT FROM 'manager'
                 OR t.id IN (SELECT team_id FROM team_managers WHERE tenant_id = $1 AND user_id = $3::uuid))
          ORDER BY t.name`,
        [p.tenantId, p.role, p.userId],
      );
      return { teams: rows };
    },
  });

  defineRoute(app, deps, {
    method: 'POST',
    url: '/api/v1/teams',
    roles: ['owner', 'admin'],
    scope: 'admin',
    async handler({ c, p, req, reply, audit }) {
      const b = parse(TeamBody, req.body, 'body');
      const { rows } = await c.query<{ id: string }>(
        `INSERT INTO teams (tenant_id, name) VALUES ($1, $2) RETURNING id, name, created_at AS "createdAt"`,
        [p.tenantId, b.name],
      );
      await audit('team.create', 'team', rows[0]!.id, { name: b.name });
      reply.code(201);
      return rows[0];
    },
  });

  defineRoute(app, deps, {
    method: 'PATCH',
    url: '/api/v1/teams/:id',
    roles: ['owner', 'admin'],
    scope: 'admin',
    async handler({ c, p, req, audit }) {
      const id = idParam(req.params);
      const b = parse(TeamBody, req.body, 'body');
      const { rows } = await c.query<Row>(
        `UPDATE teams SET name = $3 WHERE tenant_id = $1 AND id = $2 RETURNING id, name, created_at AS "createdAt"`,
        [p.tenantId, id, b.name],
      );
      if (!rows[0]) throw notFound('team');
      await audit('team.update', 'team', id, { name: b.name });
      return rows[0];
    },
  });

  for (const method of ['PUT', 'DELETE'] as const) {
    defineRoute(app, deps, {
      method,
      url: '/api/v1/teams/:id/managers/:userId',
      roles: ['owner', 'admin'],
      scope: 'admin',
      async handler({ c, p, req, reply, audit }) {
        const teamId = idParam(req.params);
        const userId = idParam(req.params, 'userId');
        await requireTeam(c, p.tenantId, teamId);
        const u = await c.query<Row>('SELECT 1 FROM users WHERE tenant_id = $1 AND id = $2', [
          p.tenantId,
          userId,
        ]);
        if (!u.rowCount) throw notFound('user');
        if (method === 'PUT') {
          await c.query<Row>(
            `INSERT INTO team_managers (tenant_id, team_id, user_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
            [p.tenantId, teamId, userId],
          );
        } else {
          await c.query<Row>(
            `DELETE FROM team_managers WHERE tenant_id = $1 AND team_id = $2 AND user_id = $3`,
            [p.tenantId, teamId, userId],
          );
        }
        await audit(method === 'PUT' ? 'team.manager_add' : 'team.manager_remove', 'team', teamId, {
          userId,
        });
        reply.code(204);
        return null;
      },
    });
  }

  // Sites
  const SiteBody = z.strictObject({
    name: name200,
    latitude,
    longitude,
    radiusM: z.number().int().min(1).max(100_000),
  });
  const SITE_COLUMNS = `id, name, latitude, longitude, radius_m AS "radiusM", created_at AS "createdAt"`;
  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/sites',
    roles: ALL_ROLES,
    scope: 'read',
    async handler({ c, p }) {
      const { rows } = await c.query<Row>(
        `SELECT ${SITE_COLUMNS} FROM sites WHERE tenant_id = $1 ORDER BY name`,
        [p.tenantId],
      );
      return { sites: rows };
    },
  });
  defineRoute(app, deps, {
    method: 'POST',
    url: '/api/v1/sites',
    roles: ['owner', 'admin'],
    scope: 'admin',
    async handler({ c, p, req, reply, audit }) {
      const b = parse(SiteBody, req.body, 'body');
      const { rows } = await c.query<{ id: string }>(
        `INSERT INTO sites (tenant_id, name, latitude, longitude, radius_m) VALUES ($1, $2, $3, $4, $5) RETURNING ${SITE_COLUMNS}`,
        [p.tenantId, b.name, b.latitude, b.longitude, b.radiusM],
      );
      await audit('site.create', 'site', rows[0]!.id, b);
      reply.code(201);
      return rows[0];
    },
  });
  defineRoute(app, deps, {
    method: 'PATCH',
    url: '/api/v1/sites/:id',
    roles: ['owner', 'admin'],
    scope: 'admin',
    async handler({ c, p, req, audit }) {
      const id = idParam(req.params);
      const b = parse(SiteBody.partial(), req.body, 'body');
      const { rows } = await c.query<Row>(
        `UPDATE sites SET name = coalesce($3, name), latitude = coalesce($4, latitude),
                longitude = coalesce($5, longitude), radius_m = coalesce($6, radius_m)
          WHERE tenant_id = $1 AND id = $2 RETURNING ${SITE_COLUMNS}`,
        [p.tenantId, id, b.name ?? null, b.latitude ?? null, b.longitude ?? null, b.radiusM ?? null],
      );
      if (!rows[0]) throw notFound('site');
      await audit('site.update', 'site', id, b);
      return rows[0];
    },
  });
  defineRoute(app, deps, {
    method: 'DELETE',
    url: '/api/v1/sites/:id',
    roles: ['owner', 'admin'],
    scope: 'admin',
    async handler({ c, p, req, reply, audit }) {
      const id = idParam(req.params);
      const { rows } = await c.query<{ used: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM attendance_events a WHERE a.tenant_id = $1 AND a.site_id = $2) AS used
           FROM sites WHERE tenant_id = $1 AND id = $2`,
        [p.tenantId, id],
      );
      if (!rows[0]) throw notFound('site');
      if (rows[0].used) throw httpError('CONFLICT', 'the site has attendance events; it cannot be deleted');
      const { rowCount } = await c.query<Row>('DELETE FROM sites WHERE tenant_id = $1 AND id = $2', [
        p.tenantId,
        id,
      ]);
      if (!rowCount) throw notFound('site');
      await audit('site.delete', 'site', id);
      reply.code(204);
      return null;
    },
  });
}

async function requireTeam(c: Queryable, tenantId: string, teamId: string) {
  const r = await c.query('SELECT 1 FROM teams WHERE tenant_id = $1 AND id = $2', [tenantId, teamId]);
  if (!r.rowCount) throw notFound('team');
}
