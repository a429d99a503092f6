import { AttenduxError } from '../errors.js';
import { inTransaction, type Pool } from '../db/pool.js';
import { appendAudit } from '../db/queries/audit.js';
import {
  API_KEY_SCOPES,
  insertApiKey,
  listApiKeys as queryKeys,
  revokeApiKey as revokeKey,
  type ApiKey,
  type ApiKeyScope,
} from '../db/queries/api-keys.js';
import { generateApiKey } from '../crypto/apikey.js';
import { requireTenant } from './tenants.js';

export function parseScopes(list: string[]): ApiKeyScope[] {
  if (!list.length)
    throw new AttenduxError('USAGE', 'an API key needs at least one scope', {
      hint: `scopes: ${API_KEY_SCOPES.join(', ')}`,
    });
  for (const s of list) {
    if (!(API_KEY_SCOPES as readonly string[]).includes(s)) {
      throw new AttenduxError('USAGE', `unknown scope "${s}"`, {
        hint: `scopes: ${API_KEY_SCOPES.join(', ')}`,
      });
    }
  }
  return [...new Set(list)] as ApiKeyScope[];
}

export async function createApiKey(
  pool: Pool,
  hmacKey: string,
  opts: { tenant: string; name: string; scopes: ApiKeyScope[]; actor: string; expiresAt?: Date },
): Promise<{ apiKey: ApiKey; key: string }> {
  if (!opts.name.trim()) throw new AttenduxError('USAGE', 'an API key needs a name');
  // A key that is dead on arrival is a typo in --expires, not an intent: refuse it.
  if (opts.expiresAt && opts.expiresAt.getTime() <= Date.now())
    throw new AttenduxError('USAGE', `the expiry ${opts.expiresAt.toISOString()} is in the past`, {
      hint: 'give a future --expires date',
    });
  const generated = generateApiKey(hmacKey);
  return inTransaction(pool, async (c) => {
    const tenant = await requireTenant(c, opts.tenant);
    const apiKey = await insertApiKey(c, {
      tenantId: tenant.id,
      name: opts.name,
      prefix: generated.prefix,
      secretHmac: generated.secretHmac,
      scopes: opts.scopes,
      createdBy: opts.actor,
      expiresAt: opts.expiresAt ?? null,
    });
    await appendAudit(c, {
      tenantId: tenant.id,
      actor: opts.actor,
      action: 'apikey.create',
      entityType: 'api_key',
      entityId: apiKey.id,
      details: { name: opts.name, prefix: apiKey.prefix, scopes: opts.scopes },
    });
    return { apiKey, key: generated.key };
  });
}

export async function listApiKeys(pool: Pool, tenantRef: string): Promise<ApiKey[]> {
  const tenant = await requireTenant(pool, tenantRef);
  return queryKeys(pool, tenant.id);
}

export async function revokeApiKey(
  pool: Pool,
  opts: { tenant: string; key: string; actor: string },
): Promise<ApiKey> {
  return inTransaction(pool, async (c) => {
    const tenant = await requireTenant(c, opts.tenant);
    const key = await revokeKey(c, tenant.id, opts.key);
    if (!key) throw new AttenduxError('NOT_FOUND', `no API key "${opts.key}" in company "${tenant.slug}"`);
    await appendAudit(c, {
      tenantId: tenant.id,
      actor: opts.actor,
      action: 'apikey.revoke',
      entityType: 'api_key',
      entityId: key.id,
      details: { prefix: key.prefix },
    });
    return key;
  });
}
