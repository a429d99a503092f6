import type { FastifyInstance } from 'fastify';
import helmet from '@fastify/helmet';
import type { ServerDeps } from './deps.js';

export const PERMISSIONS_POLICY =
  'geolocation=(self), camera=(self), microphone=(), payment=(), usb=(), interest-cohort=()';

/**
 * Headers on every response: a nonce-based CSP that forbids framing, nosniff, DENY, no referrer, a
 * Permissions-Policy; HSTS only when the request really arrived over TLS (directly, or as a trusted proxy
 * says), because HSTS on plain HTTP is ignored at best and locks out a misconfigured host at worst.
 */
const CSP_DIRECTIVES = {
  'default-src': ["'none'"],
  'script-src': ["'self'"],
  'style-src': ["'self'"],
  'img-src': ["'self'"],
  'connect-src': ["'self'"],
  'form-action': ["'self'"],
  'base-uri': ["'none'"],
  'frame-ancestors': ["'none'"],
};

/** The headers helmet would set, computed once: API responses carry no script, so they need no nonce. */
export const STATIC_SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': Object.entries(CSP_DIRECTIVES)
    .map(([k, v]) => `${k} ${v.join(' ')}`)
    .join(';'),
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'origin-agent-cluster': '?1',
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'x-dns-prefetch-control': 'off',
  'x-download-options': 'noopen',
  'x-frame-options': 'DENY',
  'x-permitted-cross-domain-policies': 'none',
  'x-xss-protection': '0',
  'permissions-policy': PERMISSIONS_POLICY,
};

/**
 * Headers on every response: a CSP that forbids framing and everything else, nosniff, DENY, no referrer, a
 * Permissions-Policy; HSTS only when the request really arrived over TLS (directly, or as a trusted proxy
 * says), because HSTS on plain HTTP is ignored at best and locks out a misconfigured host at worst.
 * HTML pages (routes with a `helmet` config) get @fastify/helmet with a fresh CSP nonce per response;
 * @fastify/helmet rebuilds its middleware on every request, so the JSON API gets the same headers from a
 * table computed once instead.
 */
export async function registerSecurityHeaders(app: FastifyInstance): Promise<void> {
  await app.register(helmet, {
    global: false,
    enableCSPNonces: true,
    contentSecurityPolicy: { useDefaults: false, directives: CSP_DIRECTIVES },
    hsts: false,
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
  });
  app.addHook('onRequest', async (req, reply) => {
    const cfg = req.routeOptions.config as { helmet?: unknown } | undefined;
    if (cfg?.helmet === undefined) reply.headers(STATIC_SECURITY_HEADERS);
    else reply.header('permissions-policy', PERMISSIONS_POLICY);
  });
  app.addHook('onSend', async (req, reply, payload) => {
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
    if (req.protocol === 'https')
      reply.header('strict-transport-security', 'max-age=31536000; includeSubDomains');
    return payload;
  });
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** @fastify/helmet's per-route options (it reads them from the route config). */
    helmet?: { enableCSPNonces?: boolean; referrerPolicy?: { policy: 'same-origin' | 'no-referrer' } };
  }
}

/**
 * Route options of an HTML page: helmet with a per-response CSP nonce. Pages send the referrer to their own origin
 * only ("same-origin", still nothing to another site): under "no-referrer" browsers send `Origin: null` with a
 * form post, and the CSRF check could not tell the page's own forms from a foreign one.
 */
export const HTML_PAGE = {
  helmet: { enableCSPNonces: true, referrerPolicy: { policy: 'same-origin' } },
} as const;

export function securityTxt(deps: ServerDeps): string {
  const expires = new Date(Date.now() + 365 * 86_400_000);
  expires.setUTCHours(0, 0, 0, 0);
  return [
    `Contact: ${deps.server.securityContact}`,
    `Expires: ${expires.toISOString()}`,
    'Preferred-Languages: en',
    // RFC 9116: where this file is authoritative. Only from the configured public URL, never the Host header.
    ...(deps.server.publicUrl
      ? [`Canonical: ${new URL('/.well-known/security.txt', deps.server.publicUrl).toString()}`]
      : []),
    '',
  ].join('\n');
}
