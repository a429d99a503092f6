import Fastify, { type FastifyInstance } from 'fastify';
import type { Install } from '../core/install.js';

export interface AppOptions {
  install: Install;
}

/** Build the HTTP app without listening, so tests can drive it with app.inject(). */
export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  app.get('/healthz', () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    try {
      await opts.install.admin.query('SELECT 1');
      return { status: 'ready' };
    } catch {
      return reply.code(503).send({ status: 'unavailable' });
    }
  });
  await app.ready();
  return app;
}
