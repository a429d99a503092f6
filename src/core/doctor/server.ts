import { readFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { connectClient } from '../../db/pool.js';
import { fail, isLoopback, pass, skip, warn, type Check } from './types.js';

const needConfig = skip('no valid config (see config.valid)');
export const SECURITY_HEADERS = ['content-security-policy', 'x-content-type-options', 'referrer-policy'];

export const serverProbe: Check = {
  id: 'server.probe',
  async run(env) {
    if (!env.loaded) return needConfig;
    const s = env.loaded.config.server;
    const host = s.host === '0.0.0.0' || s.host === '::' ? '127.0.0.1' : s.host;
    const url = `${s.tlsCert ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${s.port}/readyz`;
    let res: Response;
    try {
      res = await (env.fetch ?? fetch)(url, { signal: AbortSignal.timeout(3000) });
    } catch {
      // the error is this check's answer: a skip
      return skip(`the server is not running at ${url}`);
    }
    if (res.status !== 200)
      return fail(`${url} answers ${res.status}`, 'see the server log (journalctl -u attendux)');
    const missing = SECURITY_HEADERS.filter((h) => !res.headers.get(h));
    if (missing.length)
      return fail(
        `${url} lacks security headers: ${missing.join(', ')}`,
        'upgrade attendux; a proxy must not strip them',
      );
    return pass(`${url} is ready and sends the security headers`);
  },
};

export const serverTls: Check = {
  id: 'server.tls',
  async run(env) {
    if (!env.loaded) return needConfig;
    const s = env.loaded.config.server;
    if (!s.tlsCert) {
      if (isLoopback(s.host))
        return skip('no built-in TLS: the server listens on loopback (a proxy terminates TLS)');
      return warn(
        `the server listens on ${s.host} without TLS`,
        'set server.tlsCert/tlsKey, or listen on 127.0.0.1 behind a TLS proxy',
      );
    }
    try {
      const cert = new X509Certificate(await readFile(s.tlsCert));
      const days = (Date.parse(cert.validTo) - env.now.getTime()) / 86_400_000;
      if (days < 0) return fail(`the TLS certificate expired ${cert.validTo}`, 'renew it');
      if (days < 14) return warn(`the TLS certificate expires in ${days.toFixed(0)} days`, 'renew it');
      // minVersion is fixed in the code (server/app.ts) at TLS 1.2, with Node's default cipher list.
      return pass(`TLS 1.2 minimum, Node's default ciphers; certificate valid until ${cert.validTo}`);
    } catch (err) {
      return fail(
        `cannot read the TLS certificate ${s.tlsCert}: ${(err as Error).message}`,
        'point server.tlsCert at a PEM certificate',
      );
    }
  },
};

export const serverTrustProxy: Check = {
  id: 'server.trust-proxy',
  run(env) {
    if (!env.loaded) return needConfig;
    const s = env.loaded.config.server;
    if (s.trustProxy && !isLoopback(s.host))
      return fail(
        `trustProxy is on while the server listens on ${s.host}: any client can forge X-Forwarded-For`,
        'listen on 127.0.0.1 behind the proxy, or unset server.trustProxy',
      );
    return pass(s.trustProxy ? 'trustProxy on, listening on loopback behind a proxy' : 'trustProxy off');
  },
};

export function listenVerdict(listenAddresses: string) {
  const addrs = listenAddresses.split(',').map((x) => x.trim());
  if (addrs.every((a) => isLoopback(a))) return pass(`embedded PostgreSQL listens on ${addrs.join(', ')}`);
  return fail(
    `embedded PostgreSQL listens on ${addrs.join(', ')}`,
    // attendux starts its cluster with listen_addresses=127.0.0.1 itself: a wider one was started by hand
    "stop that postmaster and let attendux start the cluster (it listens on 127.0.0.1 only), or set listen_addresses = '127.0.0.1' in <dataDir>/pg/postgresql.conf",
  );
}

export const serverEmbeddedLoopback: Check = {
  id: 'server.embedded-loopback',
  async run(env) {
    if (!env.install) return skip('the database is not reachable');
    if (!env.install.db.embedded) return skip('not the embedded PostgreSQL');
    const c = await connectClient(env.install.db.adminUrl, 'attendux-doctor');
    try {
      const { rows } = await c.query<{ v: string }>("SELECT current_setting('listen_addresses') AS v");
      return listenVerdict(rows[0]!.v);
    } finally {
      await c.end();
    }
  },
};

export const serverChecks = [serverProbe, serverTls, serverTrustProxy, serverEmbeddedLoopback];
