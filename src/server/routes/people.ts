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
import { idParam, latitude, longitude, name200, parse, uuid } from '../validate.js';
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
// The web pages validate their forms with the same schemas.
export { EmployeeCreate, EmployeePatch, FaceBody, SiteBody };

/** Employees, teams and sites: each handler parses, calls one core/people service, shapes the answer. */
export function peopleRoutes(app: FastifyInstance, deps: ServerDeps) {
  const r = router(app, deps);
  const read = (roles: Access['roles']): Access => ({ roles, scope: 'read' });
  const admin = (roles: Access['roles']): Access => ({ roles, scope: 'admin' });

  r.get('/api/v1/employees', read(OAHM), async ({ tx, req }) => ({
    employees: await listEmployees(tx, parse(ListQuery, req.query, 'query')),
  }));
  r.get('/api/v1/employees/:id', read(ALL_ROLES), ({ tx, req }) => getEmployee(tx, idParam(req.params)));
  r.post('/api/v1/employees', admin(OA), async ({ tx, req, reply }) =>
    created(reply, await createEmployee(tx, parse(EmployeeCreate, req.body, 'body'))),
  );
  r.patch('/api/v1/employees/:id', admin(OA), ({ tx, req }) =>
    updateEmployee(tx, idParam(req.params), parse(EmployeePatch, req.body, 'body')),
  );
  r.put('/api/v1/employees/:id/face', admin(OAH), async ({ tx, req, reply }) => {
    const { vector } = parse(FaceBody, req.body, 'body');
    await enrollFace(tx, idParam(req.params), vector, await deps.keyring());
    return noContent(reply);
  });
  r.delete('/api/v1/employees/:id/face', admin(OAH), async ({ tx, req, reply }) => {
    await deleteFace(tx, idParam(req.params));
    return noContent(reply);
  });

  r.get('/api/v1/teams', read(OAHM), async ({ tx }) => ({ teams: await listTeams(tx) }));
  r.post('/api/v1/teams', admin(OA), async ({ tx, req, reply }) =>
    created(reply, await createTeam(tx, parse(TeamBody, req.body, 'body').name)),
  );
  r.patch('/api/v1/teams/:id', admin(OA), ({ tx, req }) =>
    renameTeam(tx, idParam(req.params), parse(TeamBody, req.body, 'body').name),
  );
  for (const add of [true, false]) {
    r[add ? 'put' : 'delete']('/api/v1/teams/:id/managers/:userId', admin(OA), async ({ tx, req, reply }) => {
      await setTeamManager(tx, idParam(req.params), idParam(req.params, 'userId'), add);
      return noContent(reply);
    });
  }

  r.get('/api/v1/sites', read(ALL_ROLES), async ({ tx }) => ({ sites: await listSites(tx) }));
  r.post('/api/v1/sites', admin(OA), async ({ tx, req, reply }) =>
    created(reply, await createSite(tx, parse(SiteBody, req.body, 'body'))),
  );
  r.patch('/api/v1/sites/:id', admin(OA), ({ tx, req }) =>
    updateSite(tx, idParam(req.params), parse(SiteBody.partial(), req.body, 'body')),
  );
  r.delete('/api/v1/sites/:id', admin(OA), async ({ tx, req, reply }) => {
    await deleteSite(tx, idParam(req.params));
    return noContent(reply);
  });
}
