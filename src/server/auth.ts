import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Statement } from '../db/pool.js';
import type { Role } from '../db/queries/users.js';
import type { ApiKeyScope } from '../db/queries/api-keys.js';
import { apiKeySecretMatches, parseApiKey } from '../crypto/apikey.js';
import { httpError } from './errors.js';
import { keyNotLive } from '../core/keys/api-keys.js';
import { apiKeyByPrefix, enterApiKey, enterSession } from '../db/queries/sessions.js';
import type { ServerDeps } from './deps.js';
import { UUID_PATTERN } from '../lib/uuid.js';

export const SESSION_COOKIE = 'atx_session';
/** A session lives at most this long whatever the activity; idle expiry is server.sessionIdleMinutes. */
export const SESSION_MAX_SECONDS = 24 * 3600;
/** Re-issue the cookie (sliding idle expiry) at most this often, not on every request. */
const REFRESH_AFTER_SECONDS = 60;

/** What the credentials claim before the database confirmed them. */
export type Claim =
  | { kind: 'session'; tenantId: string; userId: string; epoch: number; iat: number; seen: number }
  | { kind: 'apikey'; tenantId: string; keyId: string; prefix: string; scopes: ApiKeyScope[] };

/** The confirmed caller, resolved inside the request's tenant transaction. */
export interface Principal {
  kind: 'user' | 'apikey';
  tenantId: string;
  /** As recorded in the audit log: user:<id> or apikey:<prefix>. */
  actor: string;
  role: Role | null;
  userId: string | null;
  employeeId: string | null;
  scopes: ApiKeyScope[];
}

const UUID = UUID_PATTERN;
const SESSION_RE = new RegExp(`^(${UUID})\\.(${UUID})\\.(\\d{1,9})\\.(\\d{10})\\.(\\d{10})$`);

export const nowSeconds = () => Math.floor(Date.now() / 1000);

export function encodeSession(c: {
  tenantId: string;
  userId: string;
  epoch: number;
  iat: number;
  seen: number;
}) {
  return `${c.tenantId}.${c.userId}.${c.epoch}.${c.iat}.${c.seen}`;
}

export function setSessionCookie(
  req: FastifyRequest,
  reply: FastifyReply,
  deps: ServerDeps,
  c: { tenantId: string; userId: string; epoch: number; iat: number; seen: number },
): void {
  reply.setCookie(SESSION_COOKIE, encodeSession(c), {
    signed: true,
    httpOnly: true,
    sameSite: 'strict',
    secure: req.protocol === 'https',
    path: '/',
    maxAge: deps.server.sessionIdleMinutes * 60,
  });
}

export function clearSessionCookie(req: FastifyRequest, reply: FastifyReply): void {
  reply.clearCookie(SESSION_COOKIE, {
    path: '/',
    httpOnly: true,
    sameSite: 'strict',
    secure: req.protocol === 'https',
  });
}

interface CachedKey {
  tenantId: string;
  id: string;
  secretHmac: Buffer;
  scopes: ApiKeyScope[];
  at: number;
}

/**
 * Routing data of API keys by prefix, cached briefly to save a round trip per kiosk request. It is only
 * routing: revocation and expiry are checked against the database inside every request's transaction.
 */
const KEY_CACHE_MS = 30_000;
const keyCache = new Map<string, CachedKey>();
const TOUCH_MS = 60_000;
const touchedAt = new Map<string, number>();

/**
 * Prefixes recently looked up and not found: a flood of made-up keys costs one database lookup per prefix per
 * NEGATIVE_CACHE_MS, not one per request. Prefixes are random, so a key created meanwhile is not delayed in
 * practice; the cache is only ever consulted for prefixes someone already sent.
 */
export const NEGATIVE_CACHE_MS = 10_000;
const unknownPrefixes = new Map<string, number>();

async function lookupKey(deps: ServerDeps, prefix: string): Promise<CachedKey | undefined> {
  const hit = keyCache.get(prefix);
  if (hit && Date.now() - hit.at < KEY_CACHE_MS) return hit;
  const missed = unknownPrefixes.get(prefix);
  if (missed !== undefined && Date.now() - missed < NEGATIVE_CACHE_MS) return undefined;
  const r = await apiKeyByPrefix(deps.pool, prefix);
  if (!r) {
    keyCache.delete(prefix);
    if (unknownPrefixes.size > 10_000) unknownPrefixes.clear();
    unknownPrefixes.set(prefix, Date.now());
    return undefined;
  }
  unknownPrefixes.delete(prefix);
  if (keyCache.size > 10_000) keyCache.clear();
  const entry = {
    tenantId: r.tenant_id,
    id: r.id,
    secretHmac: r.secret_hmac,
    scopes: r.scopes,
    at: Date.now(),
  };
  keyCache.set(prefix, entry);
  return entry;
}

/** The user of a validly signed session cookie, without any database work (per-user rate-limit keys). */
export function sessionUserOf(req: FastifyRequest): string | undefined {
  const raw = req.cookies[SESSION_COOKIE];
  if (!raw || req.headers.authorization !== undefined) return undefined;
  const unsigned = req.unsignCookie(raw);
  const m = unsigned.valid && unsigned.value ? SESSION_RE.exec(unsigned.value) : null;
  return m ? `user:${m[2]!}` : undefined;
}

/** Read the credentials of a request (cheap checks only: signature, format, idle time, HMAC). */
export async function readClaim(req: FastifyRequest, deps: ServerDeps): Promise<Claim> {
  const authz = req.headers.authorization;
  if (authz !== undefined) {
    const m = /^Bearer\s+(\S+)$/i.exec(authz);
    const parsed = m ? parseApiKey(m[1]!) : undefined;
    if (!parsed)
      throw httpError('UNAUTHENTICATED', 'malformed Authorization header (expected Bearer atx_...)');
    const key = await lookupKey(deps, parsed.prefix);
    if (!key || !apiKeySecretMatches(deps.secrets.apiKeyHmacKey, parsed.secret, key.secretHmac)) {
      throw httpError('UNAUTHENTICATED', 'invalid API key');
    }
    return {
      kind: 'apikey',
      tenantId: key.tenantId,
      keyId: key.id,
      prefix: parsed.prefix,
      scopes: key.scopes,
    };
  }
  const raw = req.cookies[SESSION_COOKIE];
  if (!raw) throw httpError('UNAUTHENTICATED', 'log in first (no session cookie or API key)');
  const unsigned = req.unsignCookie(raw);
  const m = unsigned.valid && unsigned.value ? SESSION_RE.exec(unsigned.value) : null;
  if (!m) throw httpError('UNAUTHENTICATED', 'invalid session cookie');
  const claim = {
    kind: 'session' as const,
    tenantId: m[1]!,
    userId: m[2]!,
    epoch: Number(m[3]),
    iat: Number(m[4]),
    seen: Number(m[5]),
  };
  const now = nowSeconds();
  if (now - claim.seen > deps.server.sessionIdleMinutes * 60 || now - claim.iat > SESSION_MAX_SECONDS) {
    throw httpError('SESSION_EXPIRED', 'the session expired; log in again');
  }
  return claim;
}

/**
 * Should this request record the key's use? last_used_at is written at most once a minute per key and
 * process, so a busy kiosk does not turn every check-in into an extra row update; revocation and expiry are
 * checked on every request all the same.
 */
export function touchKey(keyId: string): boolean {
  const now = Date.now();
  if (now - (touchedAt.get(keyId) ?? 0) <= TOUCH_MS) return false;
  if (touchedAt.size > 10_000) touchedAt.clear();
  touchedAt.set(keyId, now);
  return true;
}

/**
 * The statement that enters the request's transaction: it sets the claim's company for row-level security
 * and confirms the claim (migrations/0004, PL/pgSQL functions whose plans are cached), all parameters bound.
 */
export function principalStatement(claim: Claim): Statement {
  return claim.kind === 'apikey'
    ? enterApiKey(claim.tenantId, claim.keyId, touchKey(claim.keyId))
    : enterSession(claim.tenantId, claim.userId);
}

/** The caller an API-key claim names; confirmed only once the database said the key is live. */
export function apiKeyPrincipal(claim: Extract<Claim, { kind: 'apikey' }>): Principal {
  return {
    kind: 'apikey',
    tenantId: claim.tenantId,
    actor: `apikey:${claim.prefix}`,
    role: null,
    userId: null,
    employeeId: null,
    scopes: claim.scopes,
  };
}

/** Turn the entering statement's result into the confirmed caller, or refuse. */
export function principalFrom(claim: Claim, result: { rows: unknown[] } | undefined): Principal {
  if (claim.kind === 'apikey') {
    const row = result?.rows[0] as { ok: boolean } | undefined;
    if (!row?.ok) throw keyNotLive();
    return apiKeyPrincipal(claim);
  }
  const u = result?.rows[0] as
    { role: Role; session_epoch: number; disabled: boolean; employee_id: string | null } | undefined;
  if (!u || u.disabled || u.session_epoch !== claim.epoch) {
    throw httpError('SESSION_EXPIRED', 'the session was ended; log in again');
  }
  return {
    kind: 'user',
    tenantId: claim.tenantId,
    actor: `user:${claim.userId}`,
    role: u.role,
    userId: claim.userId,
    employeeId: u.employee_id,
    scopes: [],
  };
}

/** Slide the idle expiry forward, without a Set-Cookie on every request. */
export function refreshSession(
  req: FastifyRequest,
  reply: FastifyReply,
  deps: ServerDeps,
  claim: Claim,
): void {
  if (claim.kind !== 'session') return;
  const now = nowSeconds();
  if (now - claim.seen < REFRESH_AFTER_SECONDS) return;
  setSessionCookie(req, reply, deps, { ...claim, seen: now });
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

function requestOrigin(req: FastifyRequest): string | undefined {
  const origin = req.headers.origin;
  // `Origin: null` (sandboxed frames, file: pages, some redirects) is returned as is: it is never allowed.
  if (typeof origin === 'string') return origin;
  const referer = req.headers.referer;
  if (typeof referer === 'string') {
    try {
      return new URL(referer).origin;
    } catch {
      // an unparseable Referer has no origin: the CSRF check rejects it
      return undefined;
    }
  }
  return undefined;
}

/** Origins compared in URL-normalised form (scheme and host lower case, default port dropped). */
function normalOrigin(s: string): string | undefined {
  try {
    return new URL(s).origin;
  } catch {
    // an unparseable origin is none: the CSRF check rejects it
    return undefined;
  }
}

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'];

/**
 * The server's own origins. Never from the Host header, which the client chooses (with DNS rebinding, a page
 * on http://evil:18443 reaches a loopback server and sends Host: evil:18443): server.publicUrl, and the
 * loopback names (and the configured host) at the port the connection actually arrived on.
 */
export function ownOrigins(req: FastifyRequest, deps: ServerDeps): string[] {
  const out: string[] = [];
  if (deps.server.publicUrl) out.push(new URL(deps.server.publicUrl).origin);
  const port = req.socket?.localPort;
  const names = new Set([...LOOPBACK_NAMES, deps.server.host]);
  names.delete('0.0.0.0');
  names.delete('::');
  for (const n of names) {
    const o = normalOrigin(
      `${req.protocol}://${n.includes(':') && !n.startsWith('[') ? `[${n}]` : n}${port ? `:${port}` : ''}`,
    );
    if (o) out.push(o);
  }
  return out;
}

export function originAllowed(req: FastifyRequest, deps: ServerDeps, origin: string): boolean {
  const o = origin === 'null' ? undefined : normalOrigin(origin);
  if (!o) return false;
  if (deps.server.allowedOrigins.some((a) => normalOrigin(a) === o)) return true;
  return ownOrigins(req, deps).includes(o);
}

/**
 * CSRF: a state-changing request authenticated by cookie must say where it comes from, and that must be this
 * server or an allowed origin (in addition to SameSite=Strict). API-key requests carry no ambient authority.
 */
export function checkCsrf(req: FastifyRequest, deps: ServerDeps, claim: Claim | undefined): void {
  if (SAFE_METHODS.has(req.method)) return;
  const origin = requestOrigin(req);
  if (claim && claim.kind === 'apikey') return;
  if (!claim) {
    // Login: no ambient authority yet, but refuse a cross-site form posting credentials (login CSRF).
    if (origin !== undefined && !originAllowed(req, deps, origin)) {
      throw httpError('CSRF_REJECTED', `origin ${origin} is not allowed`);
    }
    return;
  }
  if (origin === undefined)
    throw httpError('CSRF_REJECTED', 'state-changing request without Origin or Referer');
  if (!originAllowed(req, deps, origin)) throw httpError('CSRF_REJECTED', `origin ${origin} is not allowed`);
}
