import { timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|::ffff:127\.\d+\.\d+\.\d+)$/;

export const isLoopback = (ip: string | undefined) => !!ip && LOOPBACK.test(ip);

/**
 * /metrics is for the local Prometheus (or node_exporter) only: a loopback client (req.ip: behind a trusted
 * proxy, the real client's address, so proxied requests do not count as local), or a bearer token equal to
 * server.metricsToken (compared in constant time over SHA-256 digests, so the length leaks nothing either).
 */
export function metricsAllowed(req: FastifyRequest, token: string | undefined): boolean {
  if (isLoopback(req.ip)) return true;
  if (!token) return false;
  const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
  if (!m) return false;
  const d = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(d(m[1]!), d(token));
}
