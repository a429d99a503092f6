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
export async function registerSecurityHeaders(app: FastifyInstance): Promise<void> {
  await app.register(helmet, {
    enableCSPNonces: true,
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        'default-src': ["'none'"],
        'script-src': ["'self'"],
        'style-src': ["'self'"],
        'img-src': ["'self'"],
        'connect-src': ["'self'"],
        'form-action': ["'self'"],
        'base-uri': ["'none'"],
        'frame-ancestors': ["'none'"],
      },
    },
    hsts: false,
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
  });
  app.addHook('onSend', async (req, reply, payload) => {
    reply.header('permissions-policy', PERMISSIONS_POLICY);
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
    if (req.protocol === 'https')
      reply.header('strict-transport-security', 'max-age=31536000; includeSubDomains');
    return payload;
  });
}

export function securityTxt(deps: ServerDeps): string {
  const expires = new Date(Date.now() + 365 * 86_400_000);
  expires.setUTCHours(0, 0, 0, 0);
  return [
    `Contact: ${deps.server.securityContact}`,
    `Expires: ${expires.toISOString()}`,
    'Preferred-Languages: en',
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
