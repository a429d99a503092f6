import type { FastifyInstance } from 'fastify';
import type { RateLimitPluginOptions } from '@fastify/rate-limit';

/**
 * The shared store of the rate limits when server.redisUrl is set: every serve instance (workers, hosts)
 * counts in the same Redis, so N instances do not allow N times the limit. Without it, in-memory per process.
 *
 * A dead or unreachable Redis fails OPEN: requests are served without rate limiting (skipOnError) rather
 * than refused, and nothing waits for Redis to come back (no offline queue, one try, 500 ms to connect).
 * What stays enforced meanwhile: login lock-outs (in the database), bcrypt's own cost, and the per-process
 * `exclusive` guards of routes. The choice and a test are in the README (Scale-out) and serve-scale tests.
 */
export async function rateLimitStore(
  app: FastifyInstance,
  redisUrl: string | undefined,
  /** Keys are prefixed with it: installs (databases) sharing one Redis count apart. */
  database: string,
): Promise<Pick<RateLimitPluginOptions, 'redis' | 'nameSpace' | 'skipOnError'>> {
  if (!redisUrl) return {};
  // Loaded only when configured: a single-process install never pays for ioredis.
  const { Redis } = await import('ioredis');
  const redis = new Redis(redisUrl, {
    connectTimeout: 500,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    connectionName: 'attendux-serve',
    // Reconnect forever, at most every 2 s: Redis coming back restores the limits without a restart.
    retryStrategy: (times) => Math.min(times * 200, 2000),
  });
  let down = false;
  redis.on('error', (err: Error) => {
    if (down) return; // said once per outage, not at every reconnect attempt
    down = true;
    app.log.warn({ err: err.message }, 'redis (rate limits) unreachable: serving without rate limits');
  });
  redis.on('ready', () => {
    if (down) app.log.warn('redis (rate limits) is back');
    down = false;
  });
  app.addHook('onClose', (_app, done) => {
    redis.disconnect();
    done();
  });
  return { redis, nameSpace: `attendux-rl:${database}:`, skipOnError: true };
}
