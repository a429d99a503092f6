import { connect } from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { enterMaintenance, leaveMaintenance } from '../../src/core/maintenance.js';
import { generateApiKey } from '../../src/crypto/apikey.js';
import {
  createTestInstall,
  login,
  ORIGIN,
  seedCompany,
  testApp,
  type Company,
  type TestInstall,
} from '../helpers/server.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createPool, type Pool } from '../../src/db/pool.js';
import { freePort } from '../helpers/global-setup.js';

const PUBLIC = 'https://attendance.example.com';
const TOKEN = 'a-metrics-token-of-some-length';
let db: TestDatabase;
let ti: TestInstall;
let admin: Pool;
let app: FastifyInstance;
let a: Company;

beforeAll(async () => {
  db = await createTestDatabase('hardlow');
  ti = await createTestInstall(db, { publicUrl: PUBLIC, metricsToken: TOKEN });
  admin = createPool(db.adminUrl, 2);
  a = await seedCompany(admin, ti.secrets.apiKeyHmacKey, 'acme');
  app = await testApp(ti, { maintenanceTtlMs: 0 });
});
afterAll(async () => {
  await app?.close();
  await admin?.end();
  await ti?.cleanup();
  await db?.drop();
});

describe('CSRF origin', () => {
  it('takes the server’s own origin from server.publicUrl, never from the Host header (DNS rebinding)', async () => {
    const cookie = await login(app, a, 'owner');
    const post = (headers: Record<string, string>) =>
      app.inject({
        method: 'POST',
        url: '/api/v1/teams',
        headers: { cookie, ...headers },
        payload: { name: `t${Math.random()}` },
      });
    expect((await post({ host: 'evil:18443', origin: 'http://evil:18443' })).statusCode).toBe(403);
    expect((await post({ origin: PUBLIC })).statusCode).toBe(201);
    expect((await post({ origin: ORIGIN })).statusCode).toBe(201); // loopback names at the connection's port
  });

  it('refuses Origin: null, on login too', async () => {
    const cookie = await login(app, a, 'owner');
    const r = await app.inject({
      method: 'POST',
      url: '/api/v1/teams',
      headers: { cookie, origin: 'null', referer: `${PUBLIC}/` },
      payload: { name: 'nullteam' },
    });
    expect(r.statusCode).toBe(403);
    const l = await app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      headers: { origin: 'null' },
      payload: { company: a.slug, email: a.users.owner.email, password: 'x' },
    });
    expect(l.statusCode).toBe(403);
    expect(l.json().error.code).toBe('CSRF_REJECTED');
  });
});

describe('maintenance', () => {
  it('answers 503 with the same security headers and a generic message', async () => {
    await enterMaintenance(ti.dataDir, { reason: 'restore of full-x by root@db1 in progress' });
    try {
      const r = await app.inject({ url: '/api/v1/me', headers: { authorization: `Bearer ${a.keys.read}` } });
      expect(r.statusCode).toBe(503);
      for (const h of [
        'content-security-policy',
        'x-frame-options',
        'x-content-type-options',
        'referrer-policy',
        'permissions-policy',
      ])
        expect(r.headers[h], h).toBeDefined();
      expect(r.body).not.toMatch(/full-x|root@db1/);
    } finally {
      await leaveMaintenance(ti.dataDir);
    }
  });
});

describe('metrics and security.txt', () => {
  it('serves /metrics to loopback, to the bearer token, and to nobody else', async () => {
    expect((await app.inject({ url: '/metrics', remoteAddress: '127.0.0.1' })).statusCode).toBe(200);
    const far = await app.inject({ url: '/metrics', remoteAddress: '203.0.113.4' });
    expect(far.statusCode).toBe(403);
    expect(far.body).not.toContain('attendux_http_requests_total');
    const wrong = await app.inject({
      url: '/metrics',
      remoteAddress: '203.0.113.4',
      headers: { authorization: 'Bearer nope' },
    });
    expect(wrong.statusCode).toBe(403);
    const ok = await app.inject({
      url: '/metrics',
      remoteAddress: '203.0.113.4',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(ok.statusCode).toBe(200);
  });

  it('names a Canonical URL in security.txt', async () => {
    const r = await app.inject({ url: '/.well-known/security.txt' });
    expect(r.body).toContain(`Canonical: ${PUBLIC}/.well-known/security.txt`);
  });
});

describe('API keys', () => {
  it('refuses to create an already-expired key through the API', async () => {
    const cookie = await login(app, a, 'owner');
    const r = await app.inject({
      method: 'POST',
      url: '/api/v1/api-keys',
      headers: { cookie, origin: ORIGIN },
      payload: { name: 'old', scopes: ['read'], expiresAt: '2020-01-01T00:00:00Z' },
    });
    expect(r.statusCode).toBe(400);
  });

  it('remembers unknown prefixes for a while instead of asking the database each time', async () => {
    const k = generateApiKey(ti.secrets.apiKeyHmacKey);
    const first = await app.inject({ url: '/api/v1/me', headers: { authorization: `Bearer ${k.key}` } });
    expect(first.statusCode).toBe(401);
    // The key now exists, but its prefix was just found unknown: the server does not look again yet.
    await admin.query(
      `INSERT INTO api_keys (tenant_id, name, prefix, secret_hmac, scopes, created_by) VALUES ($1, 'late', $2, $3, '{read}', 'test')`,
      [a.id, k.prefix, k.secretHmac],
    );
    const second = await app.inject({ url: '/api/v1/me', headers: { authorization: `Bearer ${k.key}` } });
    expect(second.statusCode).toBe(401);
  });
});

describe('rate limit and timeouts', () => {
  it('limits every route per IP, authenticated ones included', async () => {
    const limited = await testApp(ti, { globalRateLimit: { max: 3, timeWindow: 60_000 } });
    try {
      const codes: number[] = [];
      for (let i = 0; i < 5; i++)
        codes.push(
          (
            await limited.inject({
              url: '/api/v1/me',
              remoteAddress: '198.51.100.9',
              headers: { authorization: `Bearer ${a.keys.read}` },
            })
          ).statusCode,
        );
      expect(codes).toEqual([200, 200, 200, 429, 429]);
      // Another address is not affected; /healthz never limited.
      const other = await limited.inject({
        url: '/api/v1/me',
        remoteAddress: '198.51.100.10',
        headers: { authorization: `Bearer ${a.keys.read}` },
      });
      expect(other.statusCode).toBe(200);
      for (let i = 0; i < 5; i++)
        expect((await limited.inject({ url: '/healthz', remoteAddress: '198.51.100.9' })).statusCode).toBe(
          200,
        );
    } finally {
      await limited.close();
    }
  });

  it('closes a connection whose body trickles in', async () => {
    const slow = await testApp(ti, { timeouts: { requestMs: 1000, connectionMs: 300 } });
    try {
      const port = await freePort();
      await slow.listen({ host: '127.0.0.1', port });
      const closed = await new Promise<boolean>((resolve) => {
        const s = connect(port, '127.0.0.1', () => {
          s.write(
            'POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{',
          );
        });
        s.on('data', () => undefined);
        s.on('close', () => resolve(true));
        s.on('error', () => undefined);
        // Safety net only: the server's own timeout closes the socket long before this.
        setTimeout(() => {
          s.destroy();
          resolve(false);
        }, 20_000);
      });
      expect(closed).toBe(true);
    } finally {
      await slow.close();
    }
  });
});

describe('request logs', () => {
  it('hash the client address with the audit pepper and drop query strings', async () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString());
        cb();
      },
    });
    const logged = await testApp(ti, { logger: { stream, level: 'info' } });
    try {
      await logged.inject({
        url: '/api/v1/employees?email=alex%40example.com&status=active',
        remoteAddress: '203.0.113.77',
        headers: { authorization: `Bearer ${a.keys.read}` },
      });
    } finally {
      await logged.close();
    }
    const text = lines.join('');
    expect(text).toContain('/api/v1/employees');
    expect(text).not.toContain('203.0.113.77');
    expect(text).not.toContain('alex');
    expect(text).not.toContain('email=');
    expect(text).toMatch(/"ipHash":"[0-9a-f]{64}"/);
  });
});
