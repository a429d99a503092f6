import type { Role } from '../../src/db/queries/users.js';
import type { Company } from './server.js';

export interface Ids {
  employeeId: string;
  teamId: string;
  userId: string;
  siteId: string;
  deletableSiteId: string;
  correctionId: string;
  apiKeyId: string;
}

export interface RouteCase {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** The route pattern as registered. */
  pattern: string;
  url(ids: Ids): string;
  body?(ids: Ids, n: number): unknown;
  /** Roles expected to be allowed (the product's RBAC table, written out independently of the code). */
  roles: Role[];
  /** API-key scopes expected to be allowed. */
  scopes: ('read' | 'check-in' | 'admin')[];
}

const ALL: Role[] = ['owner', 'admin', 'manager', 'hr', 'employee'];
const OA: Role[] = ['owner', 'admin'];
const OAH: Role[] = ['owner', 'admin', 'hr'];
const OAHM: Role[] = ['owner', 'admin', 'hr', 'manager'];
const READ = ['read', 'admin'] as RouteCase['scopes'];
const ADMIN = ['admin'] as RouteCase['scopes'];
const NONE = [] as RouteCase['scopes'];

const vector = Array.from({ length: 128 }, (_, i) => Math.sin(i + 1));

/** Every authenticated route, with a request that passes validation for an allowed caller. */
export const ROUTE_CASES: RouteCase[] = [
  { method: 'GET', pattern: '/api/v1/me', url: () => '/api/v1/me', roles: ALL, scopes: READ },
  {
    method: 'POST',
    pattern: '/api/v1/me/password',
    url: () => '/api/v1/me/password',
    // Passes RBAC, then fails the password policy: the matrix must not end the session it uses.
    body: () => ({ currentPassword: 'x', newPassword: 'short' }),
    roles: ALL,
    scopes: NONE,
  },
  { method: 'GET', pattern: '/api/v1/employees', url: () => '/api/v1/employees', roles: OAHM, scopes: READ },
  {
    method: 'GET',
    pattern: '/api/v1/employees/:id',
    url: (i) => `/api/v1/employees/${i.employeeId}`,
    roles: ALL,
    scopes: READ,
  },
  {
    method: 'POST',
    pattern: '/api/v1/employees',
    url: () => '/api/v1/employees',
    body: (i, n) => ({ fullName: `New Person ${n}`, teamId: i.teamId, hourlyRateMinor: 1500 }),
    roles: OA,
    scopes: ADMIN,
  },
  {
    method: 'PATCH',
    pattern: '/api/v1/employees/:id',
    url: (i) => `/api/v1/employees/${i.employeeId}`,
    body: () => ({ hourlyRateMinor: 2100 }),
    roles: OA,
    scopes: ADMIN,
  },
  {
    method: 'PUT',
    pattern: '/api/v1/employees/:id/face',
    url: (i) => `/api/v1/employees/${i.employeeId}/face`,
    body: () => ({ vector }),
    roles: OAH,
    scopes: ADMIN,
  },
  {
    method: 'DELETE',
    pattern: '/api/v1/employees/:id/face',
    url: (i) => `/api/v1/employees/${i.employeeId}/face`,
    roles: OAH,
    scopes: ADMIN,
  },
  { method: 'GET', pattern: '/api/v1/teams', url: () => '/api/v1/teams', roles: OAHM, scopes: READ },
  {
    method: 'POST',
    pattern: '/api/v1/teams',
    url: () => '/api/v1/teams',
    body: (_i, n) => ({ name: `Team ${n}` }),
    roles: OA,
    scopes: ADMIN,
  },
  {
    method: 'PATCH',
    pattern: '/api/v1/teams/:id',
    url: (i) => `/api/v1/teams/${i.teamId}`,
    body: (_i, n) => ({ name: `Alpha ${n}` }),
    roles: OA,
    scopes: ADMIN,
  },
  {
    method: 'PUT',
    pattern: '/api/v1/teams/:id/managers/:userId',
    url: (i) => `/api/v1/teams/${i.teamId}/managers/${i.userId}`,
    roles: OA,
    scopes: ADMIN,
  },
  {
    method: 'DELETE',
    pattern: '/api/v1/teams/:id/managers/:userId',
    url: (i) => `/api/v1/teams/${i.teamId}/managers/${i.userId}`,
    roles: OA,
    scopes: ADMIN,
  },
  { method: 'GET', pattern: '/api/v1/sites', url: () => '/api/v1/sites', roles: ALL, scopes: READ },
  {
    method: 'POST',
    pattern: '/api/v1/sites',
    url: () => '/api/v1/sites',
    body: (_i, n) => ({ name: `Site ${n}`, latitude: 48.1, longitude: 11.5, radiusM: 200 }),
    roles: OA,
    scopes: ADMIN,
  },
  {
    method: 'PATCH',
    pattern: '/api/v1/sites/:id',
    url: (i) => `/api/v1/sites/${i.siteId}`,
    body: () => ({ radiusM: 120 }),
    roles: OA,
    scopes: ADMIN,
  },
  {
    method: 'DELETE',
    pattern: '/api/v1/sites/:id',
    url: (i) => `/api/v1/sites/${i.deletableSiteId}`,
    roles: OA,
    scopes: ADMIN,
  },
  {
    method: 'POST',
    pattern: '/api/v1/attendance/check-in',
    url: () => '/api/v1/attendance/check-in',
    body: () => ({ position: { latitude: 52.52, longitude: 13.405, accuracy: 5 } }),
    roles: ALL,
    scopes: ['check-in', 'admin'],
  },
  {
    method: 'POST',
    pattern: '/api/v1/attendance/check-out',
    url: () => '/api/v1/attendance/check-out',
    body: () => ({ position: { latitude: 52.52, longitude: 13.405, accuracy: 5 } }),
    roles: ALL,
    scopes: ['check-in', 'admin'],
  },
  {
    method: 'GET',
    pattern: '/api/v1/attendance/events',
    url: () => '/api/v1/attendance/events',
    roles: ALL,
    scopes: READ,
  },
  {
    method: 'POST',
    pattern: '/api/v1/corrections',
    url: () => '/api/v1/corrections',
    body: () => ({
      action: 'add',
      proposedKind: 'check_in',
      proposedOccurredAt: '2026-01-05T08:00:00Z',
      reason: 'forgot',
    }),
    roles: ALL,
    scopes: NONE,
  },
  {
    method: 'GET',
    pattern: '/api/v1/corrections',
    url: () => '/api/v1/corrections',
    roles: ALL,
    scopes: READ,
  },
  {
    method: 'POST',
    pattern: '/api/v1/corrections/:id/approve',
    url: (i) => `/api/v1/corrections/${i.correctionId}/approve`,
    body: () => ({}),
    roles: OAHM,
    scopes: NONE,
  },
  {
    method: 'POST',
    pattern: '/api/v1/corrections/:id/reject',
    url: (i) => `/api/v1/corrections/${i.correctionId}/reject`,
    body: () => ({ note: 'no' }),
    roles: OAHM,
    scopes: NONE,
  },
  {
    method: 'GET',
    pattern: '/api/v1/timesheets',
    url: (i) => `/api/v1/timesheets?from=2026-01-01&to=2026-01-31&employeeId=${i.employeeId}`,
    roles: ALL,
    scopes: READ,
  },
  {
    method: 'GET',
    pattern: '/api/v1/payroll/export',
    url: () => '/api/v1/payroll/export?from=2026-01-01&to=2026-01-31',
    roles: OAH,
    scopes: READ,
  },
  { method: 'GET', pattern: '/api/v1/settings', url: () => '/api/v1/settings', roles: OAH, scopes: READ },
  {
    method: 'PATCH',
    pattern: '/api/v1/settings',
    url: () => '/api/v1/settings',
    body: () => ({ 'geofence.mode': 'flag' }),
    roles: OA,
    scopes: ADMIN,
  },
  { method: 'GET', pattern: '/api/v1/users', url: () => '/api/v1/users', roles: OA, scopes: ADMIN },
  {
    method: 'POST',
    pattern: '/api/v1/users',
    url: () => '/api/v1/users',
    body: (_i, n) => ({ email: `new${n}@example.org`, role: 'employee', password: 'a long enough password' }),
    roles: OA,
    scopes: NONE,
  },
  {
    method: 'PATCH',
    pattern: '/api/v1/users/:id',
    url: (i) => `/api/v1/users/${i.userId}`,
    body: (_i, n) => ({ displayName: `Target ${n}` }),
    roles: OA,
    scopes: NONE,
  },
  {
    method: 'POST',
    pattern: '/api/v1/users/:id/revoke-sessions',
    url: (i) => `/api/v1/users/${i.userId}/revoke-sessions`,
    roles: OA,
    scopes: NONE,
  },
  { method: 'GET', pattern: '/api/v1/api-keys', url: () => '/api/v1/api-keys', roles: OA, scopes: NONE },
  {
    method: 'POST',
    pattern: '/api/v1/api-keys',
    url: () => '/api/v1/api-keys',
    body: (_i, n) => ({ name: `key ${n}`, scopes: ['read'] }),
    roles: OA,
    scopes: NONE,
  },
  {
    method: 'DELETE',
    pattern: '/api/v1/api-keys/:id',
    url: (i) => `/api/v1/api-keys/${i.apiKeyId}`,
    roles: OA,
    scopes: NONE,
  },
  { method: 'GET', pattern: '/api/v1/audit', url: () => '/api/v1/audit', roles: OA, scopes: NONE },
  // Data subject requests: anyone may export their own data or file an erasure request (users not linked to
  // an employee get 404); the register is for owners and HR.
  { method: 'GET', pattern: '/api/v1/me/export', url: () => '/api/v1/me/export', roles: ALL, scopes: NONE },
  {
    method: 'POST',
    pattern: '/api/v1/me/erasure-request',
    url: () => '/api/v1/me/erasure-request',
    body: () => ({ reason: 'please erase my data' }),
    roles: ALL,
    scopes: NONE,
  },
  {
    method: 'GET',
    pattern: '/api/v1/dsar/requests',
    url: () => '/api/v1/dsar/requests',
    roles: ['owner', 'hr'],
    scopes: NONE,
  },
  // Last: it ends the session that made the request.
  {
    method: 'POST',
    pattern: '/api/v1/auth/logout',
    url: () => '/api/v1/auth/logout',
    roles: ALL,
    scopes: NONE,
  },
];

export function idsOf(
  c: Company,
  extra: { userId: string; deletableSiteId: string; correctionId: string; apiKeyId: string },
): Ids {
  return { employeeId: c.employeeId, teamId: c.teamId, siteId: c.siteId, ...extra };
}
