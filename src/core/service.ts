import { AttenduxError, type ErrorCode } from '../errors.js';
import type { Queryable } from '../db/pool.js';
import { appendAudit } from '../db/queries/audit.js';
import type { Role } from '../db/queries/users.js';

/**
 * Who calls a service: a signed-in user, an API key (both from the HTTP layer), or the operator at the command
 * line. Authority checks (only an owner acts on owners, a manager sees their teams) read it.
 */
export interface Caller {
  kind: 'user' | 'apikey' | 'cli';
  tenantId: string;
  /** As recorded in the audit log: user:<id>, apikey:<prefix> or cli:<user>@<host>. */
  actor: string;
  role: Role | null;
  userId: string | null;
  employeeId: string | null;
}

/** Append an audit entry in the caller's transaction: it commits or rolls back with the change. */
export type AuditFn = (
  action: string,
  entityType: string,
  entityId: string | null,
  details?: Record<string, unknown>,
) => Promise<void>;

/**
 * What every tenant service takes: a connection inside a transaction scoped to the caller's company, the
 * caller, how to audit (the HTTP layer adds the client's address hashes), and the clock.
 */
export interface Tx {
  q: Queryable;
  caller: Caller;
  audit: AuditFn;
  now: () => Date;
}

/** A Tx for work done from the command line (no client address to hash). */
export function cliTx(q: Queryable, tenantId: string, actor: string): Tx {
  return {
    q,
    caller: { kind: 'cli', tenantId, actor, role: null, userId: null, employeeId: null },
    audit: async (action, entityType, entityId, details) => {
      await appendAudit(q, { tenantId, actor, action, entityType, entityId: entityId ?? undefined, details });
    },
    now: () => new Date(),
  };
}

/** The operator at the command line has an owner's authority over every company. */
export const actsAsOwner = (c: Caller) => c.kind === 'cli' || c.role === 'owner';

export function failure(code: ErrorCode, message: string, details?: Record<string, unknown>): AttenduxError {
  return new AttenduxError(code, message, { details });
}

/** A validation failure naming the offending field (HTTP 400, exit code 2). */
export function invalid(field: string, problem: string, message = `${field} ${problem}`): AttenduxError {
  return failure('VALIDATION_FAILED', message, { fields: [{ field, problem }] });
}

export const notFound = (what = 'object') => failure('NOT_FOUND', `${what} not found`);
export const forbidden = (why = 'your role does not allow this') => failure('FORBIDDEN', why);
export const conflict = (why: string) => failure('CONFLICT', why);
