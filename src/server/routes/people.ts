import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import {
  FACE_MAX_ABS,
  FACE_MAX_DIMENSIONS,
  FACE_MIN_DIMENSIONS,
  faceVectorProblem,
} from '../../core/attendance/face.js';
import { isTimeZone } from '../../core/accounts/tenants.js';
import {
  createEmployee,
  deleteFace,
  enrollFace,
  getEmployee,
  listEmployees,
  updateEmployee,
} from '../../core/people/employees.js';
import { createTeam, listTeams, renameTeam, setTeamManager } from '../../core/people/teams.js';
import { createSite, deleteSite, listSites, updateSite } from '../../core/people/sites.js';
import { IdParams, IdUserIdParams, latitude, longitude, name200, uuid } from '../validate.js';
import { ALL_ROLES, created, noContent, router, type Access } from '../route.js';
import type { ServerDeps } from '../deps.js';

const currency = z.string().regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code like EUR');
const timeZone = z.string().max(64).refine(isTimeZone, 'unknown time zone');

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
const TeamBody = z.strictObject({ name: name200 });
const SiteBody = z.strictObject({
  name: name200,
  latitude,
  longitude,
  radiusM: z.number().int().min(1).max(100_000),
});

const OA = ['owner', 'admin'] as const;
const OAH = ['owner', 'admin', 'hr'] as const;
const OAHM = ['owner', 'admin', 'hr', 'manager'] as const;
const SitePatch = SiteBody.partial();
// The web pages validate their forms with the same schemas.
export { EmployeeCreate, EmployeePatch, FaceBody, SiteBody };

/** Employees, teams and sites: each handler parses, calls one core/people service, shapes the answer. */
export function peopleRoutes(app: FastifyInstance, deps: ServerDeps) {
  const r = router(app, deps);
  const read = (roles: Access['roles']) => ({ roles, scope: 'read' }) as const;
  const admin = (roles: Access['roles']) => ({ roles, scope: 'admin' }) as const;
  const id = { params: IdParams };
  const made = { success: [201] } as const;
  const none = { success: [204] } as const;

  r.get('/api/v1/employees', { ...read(OAHM), query: ListQuery }, async ({ tx, query }) => ({
    employees: await listEmployees(tx, query),
  }));
  r.get('/api/v1/employees/:id', { ...read(ALL_ROLES), ...id }, ({ tx, params }) =>
    getEmployee(tx, params.id),
  );
  r.post('/api/v1/employees', { ...admin(OA), body: EmployeeCreate, ...made }, async ({ tx, body, reply }) =>
    created(reply, await createEmployee(tx, body)),
  );
  r.patch('/api/v1/employees/:id', { ...admin(OA), ...id, body: EmployeePatch }, ({ tx, params, body }) =>
    updateEmployee(tx, params.id, body),
  );
  const face = { ...admin(OAH), ...id, body: FaceBody, ...none };
  r.put('/api/v1/employees/:id/face', face, async ({ tx, params, body, reply }) => {
    await enrollFace(tx, params.id, body.vector, await deps.keyring());
    return noContent(reply);
  });
  r.delete('/api/v1/employees/:id/face', { ...admin(OAH), ...id, ...none }, async ({ tx, params, reply }) => {
    await deleteFace(tx, params.id);
    return noContent(reply);
  });

  r.get('/api/v1/teams', read(OAHM), async ({ tx }) => ({ teams: await listTeams(tx) }));
  r.post('/api/v1/teams', { ...admin(OA), body: TeamBody, ...made }, async ({ tx, body, reply }) =>
    created(reply, await createTeam(tx, body.name)),
  );
  r.patch('/api/v1/teams/:id', { ...admin(OA), ...id, body: TeamBody }, ({ tx, params, body }) =>
    renameTeam(tx, params.id, body.name),
  );
  const manager = { ...admin(OA), params: IdUserIdParams, ...none };
  for (const add of [true, false]) {
    r[add ? 'put' : 'delete'](
      '/api/v1/teams/:id/managers/:userId',
      manager,
      async ({ tx, params, reply }) => {
        await setTeamManager(tx, params.id, params.userId, add);
        return noContent(reply);
      },
    );
  }

  r.get('/api/v1/sites', read(ALL_ROLES), async ({ tx }) => ({ sites: await listSites(tx) }));
  r.post('/api/v1/sites', { ...admin(OA), body: SiteBody, ...made }, async ({ tx, body, reply }) =>
    created(reply, await createSite(tx, body)),
  );
  r.patch('/api/v1/sites/:id', { ...admin(OA), ...id, body: SitePatch }, ({ tx, params, body }) =>
    updateSite(tx, params.id, body),
  );
  r.delete('/api/v1/sites/:id', { ...admin(OA), ...id, ...none }, async ({ tx, params, reply }) => {
    await deleteSite(tx, params.id);
    return noContent(reply);
  });
}
