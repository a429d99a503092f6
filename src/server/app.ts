import Fastify, { type FastifyInstance, type FastifyReply, type FastifyServerOptions } from 'fastify';
import cookie from '@fastify/cookie';
import rateLimit from '@fastify/rate-limit';
import { stat } from 'node:fs/promises';
import type { Install } from '../core/install.js';
import { loadSecrets } from '../core/config/load.js';
import { maintenanceWatcher } from '../core/maintenance.js';
import { createPool, type Pool } from '../db/pool.js';
import { migrationFiles } from '../db/migrate.js';
import { BCRYPT_COST } from '../crypto/password.js';
import { publicKeyOf } from '../crypto/signing.js';
import { registerAuditKey } from '../core/audit/mac.js';
import { startCheckpointer } from '../core/audit/checkpoints.js';
import type { DataKeyring } from '../crypto/aead.js';
import { installErrorHandler, sendError } from './errors.js';
import { Metrics } from './metrics.js';
import { HTML_PAGE, loginPage, registerSecurityHeaders, securityTxt } from './security.js';
import type { AppHooks, ServerDeps } from './deps.js';
import { authRoutes } from './routes/auth.js';
import { peopleRoutes } from './routes/people.js';
import { attendanceRoutes } from './routes/attendance.js';
import { reportRoutes } from './routes/reports.js';
import { adminRoutes } from './routes/admin.js';

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
  /** Sign audit checkpoints into the data dir (default true). */
  auditCheckpoints?: boolean;
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
  const logger: FastifyServerOptions['logger'] =
    opts.logger === false
      ? false
      : {
          level: opts.logger?.level ?? server.logLevel,
          redact: { paths: LOG_REDACT, censor: '[redacted]' },
          ...(opts.logger?.stream ? { stream: opts.logger.stream } : {}),
        };
  const app = Fastify({
    logger,
    trustProxy: server.trustProxy,
    bodyLimit: BODY_LIMIT,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    return503OnClosing: true,
    // Router-level errors (an overlong or undecodable path) answer in the same error shape as the rest.
    frameworkErrors: (_err: Error, _req: unknown, reply: FastifyReply) => {
      void sendError(reply, 400, {
        error: { code: 'VALIDATION_FAILED', message: 'the URL is malformed or too long' },
      });
    },
    ...(opts.https
      ? { https: { cert: opts.https.cert, key: opts.https.key, minVersion: 'TLSv1.2' as const } }
      : {}),
  } as FastifyServerOptions) as unknown as FastifyInstance;

  const pool: Pool = createPool(
    install.db.appUrl,
    install.loaded.config.database.poolSize,
    'attendux-server',
  );
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
          await reloadKeyring().catch(() => ring);
        }
      }
      return ring;
    },
    reloadKeyring,
    hooks: opts.hooks ?? {},
    metrics: new Metrics(),
    maintenance: maintenanceWatcher(install.loaded.config.dataDir, opts.maintenanceTtlMs ?? 1000),
    bcryptCost: opts.bcryptCost ?? BCRYPT_COST,
    audit: { checkpointer, publicKey: publicKeyOf(install.secrets.signingKey) },
  };
  app.addHook('onClose', async () => {
    // A last checkpoint on shutdown: the heads the server leaves behind are anchored outside the database.
    await checkpointer?.run();
    await checkpointer?.stop();
    await pool.end();
  });

  installErrorHandler(app);
  // JSON only: a text/plain body is refused with 415 rather than parsed as a string.
  app.removeContentTypeParser('text/plain');

  // First of all: maintenance (a restore is swapping the database) answers 503 to everything but liveness.
  app.addHook('onRequest', async (req, reply) => {
    if (req.url === '/healthz') return;
    const m = await deps.maintenance();
    if (m) {
      reply.header('retry-after', String(m.retryAfterSeconds));
      return sendError(reply, 503, {
        error: { code: 'MAINTENANCE', message: `in maintenance: ${m.reason}` },
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
  await app.register(rateLimit, {
    global: false,
    errorResponseBuilder: (_req, ctx) => ({
      statusCode: 429,
      code: 'RATE_LIMITED',
      message: `too many requests; retry in ${Math.ceil(ctx.ttl / 1000)} s`,
    }),
  });
  const publicLimit = {
    config: {
      rateLimit: opts.publicRateLimit ?? { max: server.publicRateLimitPerMinute, timeWindow: 60_000 },
    },
  };

  app.get('/healthz', () => ({ status: 'ok' }));
  app.get('/readyz', publicLimit, async (_req, reply) => {
    try {
      const { rows } = await pool.query<{ name: string }>('SELECT attendux_applied_migrations() AS name');
      const applied = new Set(rows.map((r) => r.name));
      const pending = (await migrationFiles()).filter((f) => !applied.has(f));
      if (pending.length) return reply.code(503).send({ status: 'schema_outdated', pending });
      return { status: 'ready' };
    } catch {
      return reply.code(503).send({ status: 'database_unavailable' });
    }
  });
  app.get('/metrics', publicLimit, (_req, reply) =>
    reply.type('text/plain; version=0.0.4; charset=utf-8').send(deps.metrics.render()),
  );
  app.get('/.well-known/security.txt', publicLimit, (_req, reply) =>
    reply.type('text/plain; charset=utf-8').header('cache-control', 'max-age=86400').send(securityTxt(deps)),
  );
  app.get('/', { config: { ...publicLimit.config, ...HTML_PAGE } }, (_req, reply) =>
    reply.type('text/html; charset=utf-8').send(loginPage(reply.cspNonce)),
  );

  authRoutes(app, deps, opts.loginRateLimit ?? { max: server.loginRateLimitPerMinute, timeWindow: 60_000 });
  peopleRoutes(app, deps);
  attendanceRoutes(app, deps);
  reportRoutes(app, deps);
  adminRoutes(app, deps);

  await app.ready();
  return app;
}
