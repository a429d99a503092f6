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

/** Route options of an HTML page: helmet with a per-response CSP nonce. */
export const HTML_PAGE = { helmet: { enableCSPNonces: true } } as const;

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

/** The one HTML page: a login form whose only script carries the per-response CSP nonce. */
export function loginPage(nonce: { script: string; style: string }): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>attendux: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style nonce="${nonce.style}">body{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}
label{display:block;margin:.6rem 0}input{width:100%;padding:.4rem}button{margin-top:.8rem;padding:.5rem 1rem}</style>
</head><body>
<h1>attendux</h1>
<form id="login">
<label>Company <input name="company" autocomplete="organization" required></label>
<label>Email <input name="email" type="email" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Log in</button>
</form>
<pre id="out"></pre>
<script nonce="${nonce.script}">
document.getElementById('login').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const r = await fetch('/api/v1/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ company: f.get('company'), email: f.get('email'), password: f.get('password') }) });
  const body = await r.json();
  document.getElementById('out').textContent = r.ok ? 'Logged in as ' + body.user.email + ' (' + body.user.role + ')'
    : body.error.message;
});
</script>
</body></html>
`;
}
