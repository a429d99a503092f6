import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import type { RateLimitOptions } from '@fastify/rate-limit';
import { withTenant, type PoolClient } from '../db/pool.js';
import { appendAudit } from '../db/queries/audit.js';
import { ROLES, type Role } from '../core/accounts/roles.js';
import type { Tx } from '../core/service.js';
import type { ApiKeyScope } from '../db/queries/api-keys.js';
import { pepperedHash } from '../crypto/random.js';
import {
  apiKeyPrincipal,
  checkCsrf,
  principalFrom,
  principalStatement,
  readClaim,
  refreshSession,
  type Claim,
  type Principal,
} from './auth.js';
import { forbidden, httpError } from './errors.js';
import {
  appendLedgerFile,
  ledgerPath,
  readTransactionLedger,
  type LedgerEntry,
} from '../core/ledger/index.js';
import type { ServerDeps } from './deps.js';
import { documented, type SuccessStatus } from './openapi.js';
import { parse } from './validate.js';

export const ALL_ROLES: readonly Role[] = ROLES;

/** Answer 201 with the created object. */
export function created<T>(reply: FastifyReply, body: T): T {
  reply.code(201);
  return body;
}

/** Answer 204 (the handler's result is the empty body). */
export function noContent(reply: FastifyReply): null {
  reply.code(204);
  return null;
}

export interface RequestContext {
  req: FastifyRequest;
  reply: FastifyReply;
  c: PoolClient;
  p: Principal;
  /** What the core services take: the transaction, the caller, its audit writer and the clock. */
  tx: Tx;
  deps: ServerDeps;
  /** Append an audit entry in the request's transaction: it commits or rolls back with the change. */
  audit: (
    action: string,
    entityType: string,
    entityId: string | null,
    details?: Record<string, unknown>,
  ) => Promise<void>;
  /** Run after the transaction committed (hooks, metrics); never on rollback. */
  afterCommit: (fn: () => void) => void;
  /**
   * Answer with this error but COMMIT what the handler wrote first (a failed attempt's counter and audit
   * entry must survive the refusal they cause).
   */
  failAfterCommit: (err: Error) => null;
}

/** What an API-key fast path gets: the key's claim, not yet confirmed by the database. */
export interface ApiKeyContext {
  req: FastifyRequest;
  reply: FastifyReply;
  claim: Extract<Claim, { kind: 'apikey' }>;
  /** The caller as it will be once the key is confirmed live (the handler's statements must confirm it). */
  p: Principal;
  deps: ServerDeps;
}

/** The request as the route's schemas parsed it (undefined where the route has no schema). */
export interface Input<B, Q, P> {
  body: B;
  query: Q;
  params: P;
}

export interface RouteSpec<B = undefined, Q = undefined, P = undefined> {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: string;
  /**
   * The request's schemas: parsed before the handler runs (after authentication and RBAC, as a handler's
   * own parse did), and published in the OpenAPI document, so the document is the validator. A body or
   * query that fails is a 400 VALIDATION_FAILED; path parameters that fail name nothing: 404.
   */
  body?: z.ZodType<B>;
  query?: z.ZodType<Q>;
  params?: z.ZodType<P>;
  /** The 2xx statuses the route answers (default [200]), for the OpenAPI document. */
  success?: readonly SuccessStatus[];
  /** Content types of a success body that is not only JSON (downloads). */
  produces?: readonly string[];
  /** User roles allowed to call the route at all (finer scoping, e.g. a manager's teams, is in the handler). */
  roles: readonly Role[];
  /** The API-key scope that allows the route; absent: API keys may not call it. admin covers every scope. */
  scope?: ApiKeyScope;
  /**
   * The hot path of API-key callers whose scope allows the route (kiosk check-ins): the handler runs without
   * the generic BEGIN ... COMMIT and owns what it otherwise provides, in single parameterised statements that
   * each set the company, confirm the key is live and write their audit entry atomically (migrations/0004).
   */
  apiKeyFastPath?: (ctx: ApiKeyContext & Input<B, Q, P>) => Promise<unknown>;
  /** The route ends the caller's session (logout, password change): never re-issue the cookie after it. */
  endsSession?: boolean;
  /**
   * The route may write security-ledger entries (revocations, epoch bumps, disablements, password and role
   * changes): they are read back in its transaction and appended to the ledger's mirror file after commit.
   */
  ledger?: boolean;
  /**
   * At most one request per key at a time (e.g. per user for password changes): a second one is refused with
   * 429 before any database or bcrypt work, so concurrent guesses cannot tie up connections and CPU.
   */
  exclusive?: (claim: Claim) => string | undefined;
  /** A limit of the route's own instead of the global per-IP one (@fastify/rate-limit's route config). */
  rateLimit?: RateLimitOptions;
  handler(ctx: RequestContext & Input<B, Q, P>): Promise<unknown>;
}

export type RouteInfo = Pick<RouteSpec, 'method' | 'url' | 'roles' | 'scope'>;
/** A spec whose schema types are not known here (the table, the generic request path). */
type AnySpec = RouteSpec<unknown, unknown, unknown>;
const tables = new WeakMap<FastifyInstance, RouteInfo[]>();

/** The authenticated routes of an app with their roles and API-key scope (README table, RBAC tests). */
export function routeTable(app: FastifyInstance): RouteInfo[] {
  return [...(tables.get(app) ?? [])];
}

export function auditHashes(req: FastifyRequest, deps: ServerDeps) {
  return {
    ipHash: pepperedHash(deps.secrets.auditPepper, req.ip),
    uaHash: pepperedHash(deps.secrets.auditPepper, req.headers['user-agent']),
  };
}

export function allowed(spec: Pick<RouteSpec, 'roles' | 'scope'>, p: Principal): boolean {
  if (p.kind === 'user') return p.role !== null && spec.roles.includes(p.role);
  if (!spec.scope) return false;
  return p.scopes.includes(spec.scope) || p.scopes.includes('admin');
}

/**
 * Register an authenticated route: credentials are read before any database work, then everything (confirming
 * the session or key, RBAC, the handler's queries, its audit entries) runs in ONE transaction as the app role
 * with the caller's company set for row-level security.
 */
export function defineRoute<B = undefined, Q = undefined, P = undefined>(
  app: FastifyInstance,
  deps: ServerDeps,
  typed: RouteSpec<B, Q, P>,
): void {
  const spec = typed as unknown as AnySpec;
  let list = tables.get(app);
  if (!list) tables.set(app, (list = []));
  list.push({ method: spec.method, url: spec.url, roles: spec.roles, scope: spec.scope });
  app.route({
    method: spec.method,
    url: spec.url,
    // The API is documented; pages (server-rendered HTML under other paths) are not part of it.
    config: {
      ...(spec.url.startsWith('/api/') ? { swaggerTransform: documented(spec.url, spec) } : {}),
      ...(spec.rateLimit ? { rateLimit: spec.rateLimit } : {}),
    },
    handler: async (req, reply) => {
      const claim = await readClaim(req, deps);
      checkCsrf(req, deps, claim);
      if (spec.apiKeyFastPath && claim.kind === 'apikey') {
        const p = apiKeyPrincipal(claim);
        // A key without the scope takes the generic path, which refuses it (401 when revoked, else 403).
        if (allowed(spec, p))
          return spec.apiKeyFastPath({ req, reply, claim, p, deps, ...parseInput(spec, req) });
      }
      const exclusiveKey = spec.exclusive?.(claim);
      if (exclusiveKey !== undefined) {
        if (inFlight.has(exclusiveKey))
          throw httpError('RATE_LIMITED', 'the same request is already in progress; retry when it finished');
        inFlight.add(exclusiveKey);
      }
      try {
        return await runRoute(deps, spec, req, reply, claim);
      } finally {
        if (exclusiveKey !== undefined) inFlight.delete(exclusiveKey);
      }
    },
  });
}

/** Parse the request with the route's schemas: path parameters first (a 404), then query and body (400). */
function parseInput(spec: AnySpec, req: FastifyRequest): Input<unknown, unknown, unknown> {
  let params: unknown;
  if (spec.params) {
    const r = spec.params.safeParse(req.params ?? {});
    // A path that is not an id cannot name anything: answered as for any other missing object.
    if (!r.success) throw httpError('NOT_FOUND', 'not found');
    params = r.data;
  }
  return {
    params,
    query: spec.query ? parse(spec.query, req.query, 'query') : undefined,
    body: spec.body ? parse(spec.body, req.body, 'body') : undefined,
  };
}

/** The audit writer of a request: the caller, the client's hashed address, in the request's transaction. */
function requestAudit(c: PoolClient, p: Principal, req: FastifyRequest, deps: ServerDeps) {
  const hashes = auditHashes(req, deps);
  const audit: RequestContext['audit'] = async (action, entityType, entityId, details) => {
    await appendAudit(c, {
      tenantId: p.tenantId,
      actor: p.actor,
      action,
      entityType,
      entityId: entityId ?? undefined,
      ...hashes,
      details,
    });
    deps.audit.checkpointer?.noteAppend();
  };
  return audit;
}

/** One authenticated request in its tenant transaction; after commit: ledger mirror, hooks, cookie refresh. */
export async function runRoute(
  deps: ServerDeps,
  spec: AnySpec,
  req: FastifyRequest,
  reply: FastifyReply,
  claim: Claim,
): Promise<unknown> {
  const after: (() => void)[] = [];
  let ledger: LedgerEntry[] = [];
  let failure: Error | undefined;
  const result = await withTenant(
    deps.pool,
    claim.tenantId,
    async (c, entered) => {
      const p = principalFrom(claim, entered);
      if (!allowed(spec, p)) {
        throw forbidden(
          p.kind === 'apikey' ? 'the API key lacks the scope for this' : 'your role does not allow this',
        );
      }
      const audit = requestAudit(c, p, req, deps);
      const ctx: RequestContext = {
        req,
        reply,
        c,
        p,
        tx: { q: c, caller: p, audit, now: () => new Date() },
        deps,
        audit,
        afterCommit: (fn) => after.push(fn),
        failAfterCommit: (err) => {
          failure = err;
          return null;
        },
      };
      const r = await spec.handler({ ...ctx, ...parseInput(spec, req) });
      if (spec.ledger) ledger = await readTransactionLedger(c, p.tenantId);
      return r;
    },
    principalStatement(claim),
  );
  if (ledger.length)
    await appendLedgerFile(ledgerPath(deps.dataDir), ledger).catch((err: unknown) =>
      // The database holds the entries; the next backup or sync brings the mirror up to date.
      req.log.error({ err }, 'could not append to the security ledger mirror'),
    );
  if (failure) throw failure;
  for (const fn of after) {
    try {
      fn();
    } catch (err) {
      req.log.error({ err }, 'after-commit hook failed');
    }
  }
  if (!spec.endsSession) refreshSession(req, reply, deps, claim);
  return result;
}

/** Who may call a route, and how it behaves (everything of a RouteSpec but its method, URL and handler). */
export type Access<B = undefined, Q = undefined, P = undefined> = Omit<
  RouteSpec<B, Q, P>,
  'method' | 'url' | 'handler'
>;
type Add = <B = undefined, Q = undefined, P = undefined>(
  url: string,
  access: Access<B, Q, P>,
  handler: RouteSpec<B, Q, P>['handler'],
) => void;

/**
 * defineRoute by method, one call per route: route files read as a table of URL, access and the one service
 * call, instead of a repeated object shape per route.
 */
export function router(
  app: FastifyInstance,
  deps: ServerDeps,
): Record<'get' | 'post' | 'put' | 'patch' | 'delete', Add> {
  const add =
    (method: RouteSpec['method']): Add =>
    (url, access, handler) =>
      defineRoute(app, deps, { method, url, ...access, handler } as RouteSpec<unknown, unknown, unknown>);
  return { get: add('GET'), post: add('POST'), put: add('PUT'), patch: add('PATCH'), delete: add('DELETE') };
}

/** Keys of `exclusive` routes with a request in progress (per process). */
const inFlight = new Set<string>();
