import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { ROLES } from '../../core/accounts/roles.js';
import {
  addUser,
  changeUser,
  EmailSchema,
  listCompanyUsers,
  publicUser,
  revokeUserSessions,
} from '../../core/accounts/users.js';
import {
  API_KEY_SCOPES,
  issueApiKey,
  listCompanyKeys,
  publicKey,
  revokeCompanyKey,
} from '../../core/keys/api-keys.js';
import { loadSettings, SettingsPatchSchema, updateSettings } from '../../core/settings/settings.js';
import { readAuditPage } from '../../core/audit/page.js';
import { idParam, isoTime, parse, uuid } from '../validate.js';
import { created, defineRoute, noContent } from '../route.js';
import type { ServerDeps } from '../deps.js';

const UserCreate = z.strictObject({
  email: EmailSchema,
  role: z.enum(ROLES),
  displayName: z.string().trim().max(200).optional(),
  employeeId: uuid.nullable().optional(),
  password: z.string().min(1).max(200).optional(),
});
const UserPatch = z.strictObject({
  role: z.enum(ROLES).optional(),
  displayName: z.string().trim().max(200).optional(),
  employeeId: uuid.nullable().optional(),
  disabled: z.boolean().optional(),
});
const KeyCreate = z.strictObject({
  name: z.string().trim().min(1).max(200),
  scopes: z.array(z.enum(API_KEY_SCOPES)).min(1).max(3),
  // An already-expired key is refused by the service (400), with the same rule as the command line's.
  expiresAt: isoTime.optional(),
});
const AuditQuery = z.strictObject({
  action: z.string().max(64).optional(),
  actor: z.string().max(200).optional(),
  entity: z.string().max(200).optional(),
  since: isoTime.optional(),
  until: isoTime.optional(),
  beforeSeq: z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

const OA = ['owner', 'admin'] as const;

/** Settings, users, API keys and the audit log: each handler calls one core service. */
export function adminRoutes(app: FastifyInstance, deps: ServerDeps) {
  const route = (spec: Parameters<typeof defineRoute>[2]) => defineRoute(app, deps, spec);

  route({
    method: 'GET',
    url: '/api/v1/settings',
    roles: ['owner', 'admin', 'hr'],
    scope: 'read',
    handler: async ({ tx }) => ({ settings: await loadSettings(tx.q, tx.caller.tenantId) }),
  });
  route({
    method: 'PATCH',
    url: '/api/v1/settings',
    roles: OA,
    scope: 'admin',
    async handler({ tx, req, afterCommit }) {
      const settings = await updateSettings(tx, parse(SettingsPatchSchema, req.body, 'body'));
      afterCommit(() => deps.hooks.onTenantSettingsChanged?.(tx.caller.tenantId));
      return { settings };
    },
  });

  route({
    method: 'GET',
    url: '/api/v1/users',
    roles: OA,
    scope: 'admin',
    handler: async ({ tx }) => ({ users: (await listCompanyUsers(tx)).map(publicUser) }),
  });
  route({
    method: 'POST',
    url: '/api/v1/users',
    roles: OA,
    async handler({ tx, req, reply }) {
      const r = await addUser(tx, parse(UserCreate, req.body, 'body'), (plain) => deps.passwords.hash(plain));
      const extra = r.generatedPassword ? { generatedPassword: r.generatedPassword } : {};
      return created(reply, { ...publicUser(r.user), ...extra });
    },
  });
  route({
    method: 'PATCH',
    url: '/api/v1/users/:id',
    roles: OA,
    ledger: true,
    handler: async ({ tx, req }) =>
      publicUser(await changeUser(tx, idParam(req.params), parse(UserPatch, req.body, 'body'))),
  });
  route({
    method: 'POST',
    url: '/api/v1/users/:id/revoke-sessions',
    roles: OA,
    ledger: true,
    async handler({ tx, req, reply }) {
      await revokeUserSessions(tx, idParam(req.params));
      return noContent(reply);
    },
  });

  route({
    method: 'GET',
    url: '/api/v1/api-keys',
    roles: OA,
    handler: async ({ tx }) => ({ apiKeys: (await listCompanyKeys(tx)).map(publicKey) }),
  });
  route({
    method: 'POST',
    url: '/api/v1/api-keys',
    roles: OA,
    async handler({ tx, req, reply }) {
      const r = await issueApiKey(tx, deps.secrets.apiKeyHmacKey, parse(KeyCreate, req.body, 'body'));
      // The only time the key is shown; only its HMAC is stored.
      return created(reply, { ...publicKey(r.apiKey), key: r.key });
    },
  });
  route({
    method: 'DELETE',
    url: '/api/v1/api-keys/:id',
    roles: OA,
    ledger: true,
    async handler({ tx, req, reply }) {
      await revokeCompanyKey(tx, idParam(req.params));
      return noContent(reply);
    },
  });

  route({
    method: 'GET',
    url: '/api/v1/audit',
    roles: OA,
    async handler({ tx, req }) {
      const { limit, ...filter } = parse(AuditQuery, req.query, 'query');
      return readAuditPage(tx, filter, limit);
    },
  });
}
