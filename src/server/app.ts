import Fastify, { type FastifyInstance, type FastifyReply, type FastifyServerOptions } from 'fastify';
import cookie from '@fastify/cookie';
import rateLimit from '@fastify/rate-limit';
import { stat } from 'node:fs/promises';
import type { Install } from '../core/install.js';
import { loadSecrets } from '../core/config/load.js';
import { maintenanceWatcher } from '../core/maintenance.js';
import { createPool, type Pool } from '../db/pool.js';
import { appliedMigrationNames, migrationFiles } from '../db/migrate.js';
import { BCRYPT_COST } from '../crypto/password.js';
import { publicKeyOf } from '../crypto/signing.js';
import { registerAuditKey } from '../core/audit/mac.js';
import { startCheckpointer } from '../core/audit/checkpoints.js';
import type { DataKeyring } from '../crypto/aead.js';
import { installErrorHandler, sendError } from './errors.js';
import { Metrics } from './metrics.js';
import { metricsAllowed } from './metrics-access.js';
import { httpError } from './errors.js';
import { pepperedHash } from '../crypto/random.js';
import { PasswordWork } from './password-work.js';
import { registerSecurityHeaders, securityTxt, STATIC_SECURITY_HEADERS } from './security.js';
import { registerPages } from './pages/index.js';
import { rateLimitStore } from './rate-limit-store.js';
import { databaseOf } from '../lib/db-url.js';
import type { AppHooks, ServerDeps } from './deps.js';
import { authRoutes } from './routes/auth.js';
import { peopleRoutes } from './routes/people.js';
import { attendanceRoutes } from './routes/attendance.js';
import { reportRoutes } from './routes/reports.js';
import { adminRoutes } from './routes/admin.js';
import { dsarRoutes } from './routes/dsar.js';
import { registerOpenApi } from './openapi.js';
import { warnSwallowed } from '../lib/log.js';

export type { AppHooks } from './deps.js';

export interface AppOptions {
  install: Install;
  hooks?: AppHooks;
  /** Built-in HTTPS (TLS 1.2 minimum); PEM contents. */
  https?: { cert: string | Buffer; key: string | Buffer };
  /** Where JSON logs go (default stdout); false for none. */
  logger?: { stream?: NodeJS.WritableStream; level?: string } | false;
  /** Per-IP limit on login (default server.loginRateLimitPerMinute per minute). */
  loginRateLimit?: { max: number; timeWindow: number };
  /** Per-IP limit on the other unauthenticated endpoints (default server.publicRateLimitPerMinute). */
  publicRateLimit?: { max: number; timeWindow: number };
  /** bcrypt cost for passwords set through the API (default 12; tests lower it). */
  bcryptCost?: number;
  /** How often the secrets file is checked for a rotated data key (default 5000 ms). */
  keyringCheckMs?: number;
  /** How long a maintenance-file check is reused (default 1000 ms). */
  maintenanceTtlMs?: number;
  /** Per-IP limit on every route (default server.rateLimitPerMinute per minute). */
  globalRateLimit?: { max: number; timeWindow: number };
  /** Whole-request and idle-socket timeouts (default REQUEST_TIMEOUT_MS / CONNECTION_TIMEOUT_MS). */
  timeouts?: { requestMs?: number; connectionMs?: number };
  /** Sign audit checkpoints into the data dir (default true). */
  auditCheckpoints?: boolean;
}

/** A request (headers and body) must arrive within this; a trickled body is cut off. */
export const REQUEST_TIMEOUT_MS = 30_000;
/** A socket with no traffic for this long is closed. */
export const CONNECTION_TIMEOUT_MS = 60_000;

/**
 * Mozilla's "intermediate" TLS 1.2 suites restricted to ECDHE + AEAD (forward secrecy, no CBC, no CCM8);
 * TLS 1.3's suites are all AEAD with forward secrecy and are configured separately by OpenSSL.
 */
export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** Query strings can hold personal data (an email, an employee id): request logs carry the path only. */
export function logPath(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/** NUL bytes (PostgreSQL text cannot hold them) and lone UTF-16 surrogates (not text at all). */
const BAD_TEXT = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** The first string (value or key) in a parsed body, query or path parameters that is not valid text. */
export function badTextIn(v: unknown, path: string, depth = 0): string | undefined {
  if (typeof v === 'string') return BAD_TEXT.test(v) ? path : undefined;
  if (depth > 32 || v === null || typeof v !== 'object') return undefined;
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if (BAD_TEXT.test(k)) return `${path}.<key>`;
    const hit = badTextIn(x, Array.isArray(v) ? `${path}[${k}]` : `${path}.${k}`, depth + 1);
    if (hit) return hit;
  }
  return undefined;
}

export const BODY_LIMIT = 64 * 1024;

/** Paths of request logs never carry credentials; these are belt and braces for anything logged by hand. */
export const LOG_REDACT = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  '*.password',
  '*.currentPassword',
  '*.newPassword',
  '*.key',
  '*.vector',
  '*.face',
  '*.secret',
];

/** Build the HTTP app without listening, so tests can drive it with app.inject(). */
export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const { install } = opts;
  const server = install.loaded.config.server;
  const logger = loggerOptions(opts);
  const app = Fastify(serverOptions(opts, logger)) as unknown as FastifyInstance;

  const deps = await buildDeps(opts, app);

  installErrorHandler(app);
  // JSON only: a text/plain body is refused with 415 rather than parsed as a string.
  app.removeContentTypeParser('text/plain');

  // First of all: maintenance (a restore is swapping the database) answers 503 to everything but liveness.
  app.addHook('onRequest', async (req, reply) => {
    if (req.url === '/healthz') return;
    const m = await deps.maintenance();
    if (m) {
      // Answered before the security-headers hook runs: the same headers by hand, and nothing of the
      // reason (backup id, operator user@host) for whoever asks.
      reply.headers(STATIC_SECURITY_HEADERS);
      reply.header('retry-after', String(m.retryAfterSeconds));
      return sendError(reply, 503, {
        error: { code: 'MAINTENANCE', message: 'the server is in maintenance; retry later' },
      });
    }
  });
  app.addHook('onResponse', async (req, reply) => {
    deps.metrics.observe(
      req.method,
      req.routeOptions.url ?? 'unmatched',
      reply.statusCode,
      reply.elapsedTime / 1000,
    );
  });

  await registerSecurityHeaders(app);
  await app.register(cookie, { secret: install.secrets.sessionKey, hook: 'onRequest' });
  // Bad text is a 400 wherever it appears, before any handler or query sees it.
  app.addHook('preValidation', (req, _reply, done) => {
    const where =
      badTextIn(req.params, 'params') ?? badTextIn(req.query, 'query') ?? badTextIn(req.body, 'body');
    if (where)
      return done(
        httpError('VALIDATION_FAILED', 'text may not contain NUL bytes or lone surrogates', {
          fields: [{ field: where, problem: 'NUL byte or lone surrogate' }],
        }),
      );
    done();
  });
  await app.register(rateLimit, {
    ...(await rateLimitStore(app, server.redisUrl, databaseOf(install.db.appUrl))),
    // Every route, authenticated ones included; login and the public endpoints have their own, lower limits.
    global: true,
    max: opts.globalRateLimit?.max ?? server.rateLimitPerMinute,
    timeWindow: opts.globalRateLimit?.timeWindow ?? 60_000,
    errorResponseBuilder: (_req, ctx) => ({
      statusCode: 429,
      code: 'RATE_LIMITED',
      message: `too many requests; retry in ${Math.ceil(ctx.ttl / 1000)} s`,
    }),
  });
  // Before any route: the document collects the routes registered after it.
  await registerOpenApi(
    app,
    opts.publicRateLimit ?? { max: server.publicRateLimitPerMinute, timeWindow: 60_000 },
  );
  publicRoutes(app, deps, opts);

  const loginLimit = opts.loginRateLimit ?? { max: server.loginRateLimitPerMinute, timeWindow: 60_000 };
  authRoutes(app, deps, loginLimit);
  peopleRoutes(app, deps);
  attendanceRoutes(app, deps);
  reportRoutes(app, deps);
  adminRoutes(app, deps);
  dsarRoutes(app, deps);
  await registerPages(app, deps, loginLimit);

  await app.ready();
  return app;
}

function loggerOptions(opts: AppOptions): FastifyServerOptions['logger'] {
  const { install } = opts;
  const server = install.loaded.config.server;
  return opts.logger === false
    ? false
    : {
        level: opts.logger?.level ?? server.logLevel,
        redact: { paths: LOG_REDACT, censor: '[redacted]' },
        // No raw client addresses and no query strings in the logs: the address as the audit log keeps
        // it (SHA-256 with the audit pepper), the path without its query.
        serializers: {
          req: (req: { method: string; url: string; ip?: string; socket?: { remoteAddress?: string } }) => ({
            method: req.method,
            url: logPath(req.url),
            ipHash: pepperedHash(install.secrets.auditPepper, req.ip ?? req.socket?.remoteAddress),
          }),
        },
        ...(opts.logger?.stream ? { stream: opts.logger.stream } : {}),
      };
}

function serverOptions(opts: AppOptions, logger: FastifyServerOptions['logger']): FastifyServerOptions {
  const server = opts.install.loaded.config.server;
  return {
    logger,
    trustProxy: server.trustProxy,
    bodyLimit: BODY_LIMIT,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    return503OnClosing: true,
    requestTimeout: opts.timeouts?.requestMs ?? REQUEST_TIMEOUT_MS,
    connectionTimeout: opts.timeouts?.connectionMs ?? CONNECTION_TIMEOUT_MS,
    // Router-level errors (an overlong or undecodable path) answer in the same error shape as the rest.
    frameworkErrors: (_err: Error, _req: unknown, reply: FastifyReply) => {
      void sendError(reply, 400, {
        error: { code: 'VALIDATION_FAILED', message: 'the URL is malformed or too long' },
      });
    },
    ...(opts.https
      ? {
          https: {
            cert: opts.https.cert,
            key: opts.https.key,
            minVersion: 'TLSv1.2' as const,
            ciphers: TLS12_CIPHERS,
          },
        }
      : {}),
  };
}

/** The pool, the audit checkpointer, the data keys (re-read after a rotation) and the rest every route needs. */
async function buildDeps(opts: AppOptions, app: FastifyInstance): Promise<ServerDeps> {
  const { install } = opts;
  const server = install.loaded.config.server;
  const { poolSize, pgbouncer } = install.loaded.config.database;
  const pool: Pool = createPool(install.db.appUrl, poolSize, 'attendux-server', {
    unnamedStatements: pgbouncer,
  });
  // The server MACs its audit entries itself (the app role never sees the key) and signs checkpoints.
  registerAuditKey(pool, install.secrets.auditKey);
  const checkpointer =
    opts.auditCheckpoints === false
      ? undefined
      : startCheckpointer({
          q: pool,
          dataDir: install.loaded.config.dataDir,
          signingKey: install.secrets.signingKey,
          everyMinutes: install.loaded.config.audit.checkpointEveryMinutes,
          everyEntries: install.loaded.config.audit.checkpointEveryEntries,
          onError: (err) => app.log.error({ err }, 'audit checkpoint failed'),
        });
  let ring: DataKeyring = { keys: install.secrets.dataKeys, activeId: install.secrets.activeDataKeyId };
  const reloadKeyring = async () => {
    const s = await loadSecrets(install.loaded.secretsPath);
    ring = { keys: s.dataKeys, activeId: s.activeDataKeyId };
    return ring;
  };
  // `keys rotate-data-key` (another process) rewrites the secrets file: notice within a few seconds, so new
  // enrolments are sealed under the new active key without a restart.
  let checkedAt = Date.now();
  let secretsMtime = await stat(install.loaded.secretsPath).then(
    (st) => st.mtimeMs,
    () => 0,
  );
  const deps: ServerDeps = {
    pool,
    server,
    secrets: install.secrets,
    keyring: async () => {
      if (Date.now() - checkedAt >= (opts.keyringCheckMs ?? 5000)) {
        checkedAt = Date.now();
        const m = await stat(install.loaded.secretsPath).then(
          (st) => st.mtimeMs,
          () => secretsMtime,
        );
        if (m !== secretsMtime) {
          secretsMtime = m;
          await reloadKeyring().catch((err: unknown) =>
            warnSwallowed('the secrets file was not reloaded; the current keys stay in use', err),
          );
        }
      }
      return ring;
    },
    reloadKeyring,
    hooks: opts.hooks ?? {},
    metrics: new Metrics(),
    // The file (this host) and the row in the database (every host): see core/maintenance.ts.
    maintenance: maintenanceWatcher(install.loaded.config.dataDir, opts.maintenanceTtlMs ?? 1000, pool),
    bcryptCost: opts.bcryptCost ?? BCRYPT_COST,
    passwords: new PasswordWork(opts.bcryptCost ?? BCRYPT_COST),
    dataDir: install.loaded.config.dataDir,
    audit: { checkpointer, publicKey: publicKeyOf(install.secrets.signingKey) },
  };
  deps.passwords.onDone = () => deps.metrics.passwordHashes++;
  app.addHook('onClose', async () => {
    // A last checkpoint on shutdown: the heads the server leaves behind are anchored outside the database.
    await checkpointer?.run();
    await checkpointer?.stop();
    await pool.end();
  });
  return deps;
}

/** The unauthenticated endpoints: liveness, readiness, metrics and security.txt (the pages are in pages/). */
function publicRoutes(app: FastifyInstance, deps: ServerDeps, opts: AppOptions): void {
  const server = opts.install.loaded.config.server;
  const pool = deps.pool;
  const publicLimit = {
    config: {
      rateLimit: opts.publicRateLimit ?? { max: server.publicRateLimitPerMinute, timeWindow: 60_000 },
    },
  };
  app.get('/healthz', { config: { rateLimit: false } }, () => ({ status: 'ok' }));
  app.get('/readyz', publicLimit, async (_req, reply) => {
    try {
      const applied = new Set(await appliedMigrationNames(pool));
      const pending = (await migrationFiles()).filter((f) => !applied.has(f));
      if (pending.length) return reply.code(503).send({ status: 'schema_outdated', pending });
      return { status: 'ready' };
    } catch {
      // an unreachable database is readyz's answer (503), not an error
      return reply.code(503).send({ status: 'database_unavailable' });
    }
  });
  app.get('/metrics', publicLimit, async (req, reply) => {
    if (!metricsAllowed(req, server.metricsToken))
      return sendError(reply, 403, {
        error: {
          code: 'FORBIDDEN',
          message: '/metrics answers loopback clients, or a bearer token (server.metricsToken)',
        },
      });
    return reply.type(deps.metrics.contentType).send(await deps.metrics.render());
  });
  app.get('/.well-known/security.txt', publicLimit, (_req, reply) =>
    reply.type('text/plain; charset=utf-8').header('cache-control', 'max-age=86400').send(securityTxt(deps)),
  );
}
