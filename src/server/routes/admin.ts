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
import { IdParams, isoTime, uuid } from '../validate.js';
import { created, noContent, router } from '../route.js';
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
// The web pages validate their forms with the same schemas.
export { UserCreate, UserPatch, KeyCreate, AuditQuery };

/** Settings, users, API keys and the audit log: each handler calls one core service. */
export function adminRoutes(app: FastifyInstance, deps: ServerDeps) {
  const r = router(app, deps);
  const hash = (plain: string) => deps.passwords.hash(plain);

  r.get('/api/v1/settings', { roles: ['owner', 'admin', 'hr'], scope: 'read' }, async ({ tx }) => ({
    settings: await loadSettings(tx.q, tx.caller.tenantId),
  }));
  const settingsPatch = { roles: OA, scope: 'admin', body: SettingsPatchSchema } as const;
  r.patch('/api/v1/settings', settingsPatch, async ({ tx, body, afterCommit }) => {
    const settings = await updateSettings(tx, body);
    afterCommit(() => deps.hooks.onTenantSettingsChanged?.(tx.caller.tenantId, tx.caller.actor));
    return { settings };
  });

  r.get('/api/v1/users', { roles: OA, scope: 'admin' }, async ({ tx }) => ({
    users: (await listCompanyUsers(tx)).map(publicUser),
  }));
  r.post('/api/v1/users', { roles: OA, body: UserCreate, success: [201] }, async ({ tx, body, reply }) => {
    const { user, generatedPassword } = await addUser(tx, body, hash);
    return created(reply, { ...publicUser(user), ...(generatedPassword ? { generatedPassword } : {}) });
  });
  const userPatch = { roles: OA, ledger: true, params: IdParams, body: UserPatch };
  r.patch('/api/v1/users/:id', userPatch, async ({ tx, params, body }) =>
    publicUser(await changeUser(tx, params.id, body)),
  );
  const revoke = { roles: OA, ledger: true, params: IdParams, success: [204] } as const;
  r.post('/api/v1/users/:id/revoke-sessions', revoke, async ({ tx, params, reply }) => {
    await revokeUserSessions(tx, params.id);
    return noContent(reply);
  });

  r.get('/api/v1/api-keys', { roles: OA }, async ({ tx }) => ({
    apiKeys: (await listCompanyKeys(tx)).map(publicKey),
  }));
  r.post('/api/v1/api-keys', { roles: OA, body: KeyCreate, success: [201] }, async ({ tx, body, reply }) => {
    const k = await issueApiKey(tx, deps.secrets.apiKeyHmacKey, body);
    // The only time the key is shown; only its HMAC is stored.
    return created(reply, { ...publicKey(k.apiKey), key: k.key });
  });
  const keyDelete = { roles: OA, ledger: true, params: IdParams, success: [204] } as const;
  r.delete('/api/v1/api-keys/:id', keyDelete, async ({ tx, params, reply }) => {
    await revokeCompanyKey(tx, params.id);
    return noContent(reply);
  });

  r.get('/api/v1/audit', { roles: OA, query: AuditQuery }, async ({ tx, query }) => {
    const { limit, ...filter } = query;
    return readAuditPage(tx, filter, limit);
  });
}
