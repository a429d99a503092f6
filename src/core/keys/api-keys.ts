import { AttenduxError } from '../../errors.js';
import type { Pool } from '../../db/pool.js';
import {
  API_KEY_SCOPES,
  insertApiKey,
  listApiKeys as queryKeys,
  revokeApiKey as revokeKey,
  type ApiKey,
  type ApiKeyScope,
} from '../../db/queries/api-keys.js';
import { generateApiKey } from '../../crypto/apikey.js';
import { inCompany } from '../accounts/tenants.js';
import { failure, invalid, notFound, type Tx } from '../service.js';

export { API_KEY_SCOPES, type ApiKey, type ApiKeyScope };

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

/** A key that authenticated but is revoked or expired by the time the database is asked. */
export const keyNotLive = () => failure('UNAUTHENTICATED', 'the API key is revoked or expired');

export interface NewApiKey {
  name: string;
  scopes: ApiKeyScope[];
  expiresAt?: Date;
}

/** Create a key in the caller's company; the secret is returned once, only its HMAC is stored. */
export async function issueApiKey(
  tx: Tx,
  hmacKey: string,
  input: NewApiKey,
): Promise<{ apiKey: ApiKey; key: string }> {
  const name = input.name.trim();
  if (!name) throw invalid('name', 'empty', 'an API key needs a name');
  // A key that is dead on arrival is a typo in the year, not an intent: refuse it.
  if (input.expiresAt && input.expiresAt.getTime() <= tx.now().getTime())
    throw invalid(
      'expiresAt',
      'must be in the future',
      `the expiry ${input.expiresAt.toISOString()} is in the past; give a future date`,
    );
  const scopes = [...new Set(input.scopes)];
  const generated = generateApiKey(hmacKey);
  const apiKey = await insertApiKey(tx.q, {
    tenantId: tx.caller.tenantId,
    name,
    prefix: generated.prefix,
    secretHmac: generated.secretHmac,
    scopes,
    createdBy: tx.caller.actor,
    expiresAt: input.expiresAt ?? null,
  });
  await tx.audit('apikey.create', 'api_key', apiKey.id, { name, prefix: apiKey.prefix, scopes });
  return { apiKey, key: generated.key };
}

export function listCompanyKeys(tx: Tx): Promise<ApiKey[]> {
  return queryKeys(tx.q, tx.caller.tenantId);
}

/** Revoke by id or prefix (idempotent: a revoked key keeps its first revocation time). */
export async function revokeCompanyKey(tx: Tx, ref: string): Promise<ApiKey> {
  const key = await revokeKey(tx.q, tx.caller.tenantId, ref);
  if (!key) throw notFound('API key');
  await tx.audit('apikey.revoke', 'api_key', key.id, { prefix: key.prefix });
  return key;
}

/** What the API shows of a key (the company is the caller's). */
export function publicKey(k: ApiKey): Omit<ApiKey, 'tenantId'> {
  return {
    id: k.id,
    name: k.name,
    prefix: k.prefix,
    scopes: k.scopes,
    createdBy: k.createdBy,
    createdAt: k.createdAt,
    expiresAt: k.expiresAt,
    lastUsedAt: k.lastUsedAt,
    revokedAt: k.revokedAt,
  };
}

// ---- The command line's entry points: the company named by slug or id. ----

export async function createApiKey(
  pool: Pool,
  hmacKey: string,
  opts: NewApiKey & { tenant: string; actor: string },
): Promise<{ apiKey: ApiKey; key: string }> {
  return inCompany(pool, opts.tenant, opts.actor, (tx) => issueApiKey(tx, hmacKey, opts));
}

export async function listApiKeys(pool: Pool, tenantRef: string): Promise<ApiKey[]> {
  return inCompany(pool, tenantRef, 'cli', listCompanyKeys);
}

export async function revokeApiKey(
  pool: Pool,
  opts: { tenant: string; key: string; actor: string },
): Promise<ApiKey> {
  return inCompany(pool, opts.tenant, opts.actor, async (tx, tenant) => {
    try {
      return await revokeCompanyKey(tx, opts.key);
    } catch (err) {
      if (err instanceof AttenduxError && err.code === 'NOT_FOUND')
        throw new AttenduxError('NOT_FOUND', `no API key "${opts.key}" in company "${tenant.slug}"`);
      throw err;
    }
  });
}
