import type { Queryable, Statement } from '../pool.js';
import type { ApiKeyScope } from './api-keys.js';

/**
 * The statements that authenticate a request, all SECURITY DEFINER functions of migrations/0004 (their plans
 * are cached, their parameters bound). They run before, or as the first statement of, the request's
 * transaction: no company is set yet when they start.
 */

export interface KeyRouting {
  tenant_id: string;
  id: string;
  secret_hmac: Buffer;
  scopes: ApiKeyScope[];
}

/** Where a key prefix belongs and its secret's HMAC; nothing else about the key (liveness is checked later). */
export async function apiKeyByPrefix(q: Queryable, prefix: string): Promise<KeyRouting | undefined> {
  const { rows } = await q.query<KeyRouting>(
    'SELECT tenant_id, id, secret_hmac, scopes FROM attendux_api_key_by_prefix($1)',
    [prefix],
  );
  return rows[0];
}

/** Sets the company and confirms the key is live (and records its use when `touch`): one row, `ok`. */
export function enterApiKey(tenantId: string, keyId: string, touch: boolean): Statement {
  return {
    name: 'attendux_enter_api_key',
    text: 'SELECT attendux_enter_api_key($1, $2, $3) AS ok',
    values: [tenantId, keyId, touch],
  };
}

/** Sets the company and reads what the session's user is now: role, epoch, disabled, employee. */
export function enterSession(tenantId: string, userId: string): Statement {
  return {
    name: 'attendux_enter_session',
    text: 'SELECT role, session_epoch, disabled, employee_id FROM attendux_enter_session($1, $2)',
    values: [tenantId, userId],
  };
}
