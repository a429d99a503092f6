import type { Queryable } from '../pool.js';

export const API_KEY_SCOPES = ['read', 'check-in', 'admin'] as const;
export type ApiKeyScope = (typeof API_KEY_SCOPES)[number];

export interface ApiKey {
  tenantId: string;
  id: string;
  name: string;
  prefix: string;
  scopes: ApiKeyScope[];
  createdBy: string;
  createdAt: Date;
  expiresAt: Date | null;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

const COLUMNS = `tenant_id AS "tenantId", id, name, prefix, scopes, created_by AS "createdBy",
  created_at AS "createdAt", expires_at AS "expiresAt", last_used_at AS "lastUsedAt", revoked_at AS "revokedAt"`;

export async function insertApiKey(
  q: Queryable,
  k: {
    tenantId: string;
    name: string;
    prefix: string;
    secretHmac: Buffer;
    scopes: ApiKeyScope[];
    createdBy: string;
    expiresAt?: Date | null;
  },
): Promise<ApiKey> {
  const { rows } = await q.query<ApiKey>(
    `INSERT INTO api_keys (tenant_id, name, prefix, secret_hmac, scopes, created_by, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ${COLUMNS}`,
    [k.tenantId, k.name, k.prefix, k.secretHmac, k.scopes, k.createdBy, k.expiresAt ?? null],
  );
  return rows[0]!;
}

export async function listApiKeys(q: Queryable, tenantId: string): Promise<ApiKey[]> {
  const { rows } = await q.query<ApiKey>(
    `SELECT ${COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at`,
    [tenantId],
  );
  return rows;
}

/** Revoke by id or prefix; returns the key, or undefined when the company has no such key. */
export async function revokeApiKey(q: Queryable, tenantId: string, ref: string): Promise<ApiKey | undefined> {
  const { rows } = await q.query<ApiKey>(
    `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
      WHERE tenant_id = $1 AND (prefix = $2 OR id::text = $2) RETURNING ${COLUMNS}`,
    [tenantId, ref],
  );
  return rows[0];
}
