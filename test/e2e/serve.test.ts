import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { request } from 'node:https';
import { connect } from 'node:tls';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import {
  adminPool,
  createTestInstall,
  PASSWORD,
  seedCompany,
  type Company,
  type TestInstall,
} from '../helpers/server.js';
import { freePort } from '../helpers/global-setup.js';
import { hashPassword } from '../../src/crypto/password.js';
import { enterMaintenance, leaveMaintenance } from '../../src/core/maintenance.js';
import type { Pool } from '../../src/db/pool.js';

const BIN = new URL('../../bin/attendux.js', import.meta.url).pathname;
const run = promisify(execFile);

let db: TestDatabase;
let ti: TestInstall;
let admin: Pool;
let a: Company;

beforeAll(async () => {
  db = await createTestDatabase('e2eserve');
  ti = await createTestInstall(db);
  admin = adminPool(db);
  a = await seedCompany(admin, ti.secrets.apiKeyHmacKey, 'acme');
  // A real-cost hash, so a login is in flight long enough to be interrupted by SIGTERM.
  await admin.query('UPDATE users SET password_hash = $2 WHERE id = $1', [
    a.users.owner.id,
    await hashPassword(PASSWORD, 12),
  ]);
});
afterAll(async () => {
  await admin?.end();
  await ti?.cleanup();
  await db?.drop();
});

interface Server {
  proc: ChildProcess;
  url: string;
  exit: Promise<number | null>;
  stderr: () => string;
  /** Resolves once the server's stdout (its log) matches. */
  logged: (re: RegExp) => Promise<void>;
}

async function startServer(extra: string[] = [], logLevel = 'silent'): Promise<Server> {
  const port = await freePort();
  const proc = spawn(
    process.execPath,
    [BIN, 'serve', '--config', ti.configPath, '--port', String(port), ...extra],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ATTENDUX_SERVER_LOG_LEVEL: logLevel },
    },
  );
  let stdout = '';
  const waiting: { re: RegExp; resolve: () => void }[] = [];
  proc.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    for (const w of waiting.filter((x) => x.re.test(stdout))) {
      waiting.splice(waiting.indexOf(w), 1);
      w.resolve();
    }
  });
  const logged = (re: RegExp) =>
    re.test(stdout) ? Promise.resolve() : new Promise<void>((resolve) => waiting.push({ re, resolve }));
  const exit = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}`)), 30_000);
    proc.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /serving on (\S+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exit.then((code) => reject(new Error(`server exited ${code}: ${stderr}`)));
  });
  return { proc, url, exit, stderr: () => stderr, logged };
}

/** Ask until the answer is the awaited one (the server notices maintenance-file changes within its TTL). */
async function until(ask: () => Promise<Response>, done: (r: Response) => boolean): Promise<Response> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const r = await ask();
    if (done(r) || Date.now() > deadline) return r;
    await r.arrayBuffer();
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function stop(s: Server): Promise<number | null> {
  s.proc.kill('SIGTERM');
  return s.exit;
}

describe('attendux serve (real binary, real port)', () => {
  it('logs in with a cookie and checks in with an API key over HTTP', async () => {
    const s = await startServer();
    try {
      const login = await fetch(`${s.url}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ company: 'acme', email: a.users.employee.email, password: PASSWORD }),
      });
      expect(login.status).toBe(200);
      const setCookie = login.headers.get('set-cookie')!;
      expect(setCookie).toMatch(/atx_session=.*HttpOnly/);
      expect(setCookie).toMatch(/SameSite=Strict/);
      const cookie = setCookie.split(';')[0]!;
      const me = await fetch(`${s.url}/api/v1/me`, { headers: { cookie } });
      expect((await me.json()) as object).toMatchObject({ user: { role: 'employee' } });
      const checkIn = await fetch(`${s.url}/api/v1/attendance/check-in`, {
        method: 'POST',
        headers: { authorization: `Bearer ${a.keys.checkIn}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          employeeId: a.employeeId,
          position: { latitude: 52.52, longitude: 13.405, accuracy: 8 },
        }),
      });
      expect(checkIn.status).toBe(201);
      expect(await stop(s)).toBe(0);
    } finally {
      s.proc.kill('SIGKILL');
    }
  });

  it('answers 503 with Retry-After once another process switches maintenance mode on', async () => {
    const s = await startServer();
    try {
      expect((await fetch(`${s.url}/readyz`)).status).toBe(200);
      const me = () => fetch(`${s.url}/api/v1/me`, { headers: { authorization: `Bearer ${a.keys.read}` } });
      await enterMaintenance(ti.dataDir, { reason: 'restore --in-place', retryAfterSeconds: 45 });
      const res = await until(me, (r) => r.status !== 200);
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('45');
      expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
      await leaveMaintenance(ti.dataDir);
      expect((await until(me, (r) => r.status !== 503)).status).toBe(200);
      expect(await stop(s)).toBe(0);
    } finally {
      await leaveMaintenance(ti.dataDir);
      s.proc.kill('SIGKILL');
    }
  });

  it('finishes an in-flight request on SIGTERM, then exits 0', async () => {
    // Logging at info: the server's "incoming request" line says the login is in flight.
    const s = await startServer([], 'info');
    try {
      const pending = fetch(`${s.url}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ company: 'acme', email: a.users.owner.email, password: PASSWORD }),
      });
      await s.logged(/"url":"\/api\/v1\/auth\/login"[^\n]*"msg":"incoming request"/);
      s.proc.kill('SIGTERM');
      const res = await pending;
      expect(res.status).toBe(200);
      expect(await s.exit).toBe(0);
    } finally {
      s.proc.kill('SIGKILL');
    }
  });

  it('serves HTTPS with TLS 1.2 minimum and HSTS when given a certificate', async () => {
    const cert = join(ti.dir, 'cert.pem');
    const key = join(ti.dir, 'key.pem');
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
    ]);
    const s = await startServer(['--tls-cert', cert, '--tls-key', key, '--host', '127.0.0.1']);
    try {
      expect(s.url).toMatch(/^https:/);
      const { port } = new URL(s.url);
      const headers = await new Promise<Record<string, unknown>>((resolve, reject) => {
        request({ host: '127.0.0.1', port, path: '/healthz', rejectUnauthorized: false }, (res) => {
          res.resume();
          resolve(res.headers);
        })
          .on('error', reject)
          .end();
      });
      expect(headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
      const old = await new Promise<string>((resolve) => {
        const sock = connect({
          host: '127.0.0.1',
          port: Number(port),
          rejectUnauthorized: false,
          maxVersion: 'TLSv1.1',
          minVersion: 'TLSv1',
        });
        sock.on('secureConnect', () => {
          sock.destroy();
          resolve('connected');
        });
        sock.on('error', (e: Error) => resolve(e.message));
      });
      expect(old).not.toBe('connected');
      // TLS 1.2 with anything but ECDHE + AEAD (Mozilla "intermediate"): no RSA key exchange, no CBC.
      const tls12 = (ciphers: string) =>
        new Promise<string>((resolve) => {
          const sock = connect({
            host: '127.0.0.1',
            port: Number(port),
            rejectUnauthorized: false,
            minVersion: 'TLSv1.2',
            maxVersion: 'TLSv1.2',
            ciphers,
          });
          sock.on('secureConnect', () => {
            const name = sock.getCipher().standardName;
            sock.destroy();
            resolve(name);
          });
          sock.on('error', (e: Error) => resolve(`error: ${e.message}`));
        });
      for (const weak of [
        'AES128-SHA',
        'AES256-GCM-SHA384',
        'ECDHE-RSA-AES128-SHA',
        'ECDHE-RSA-AES256-SHA384',
      ])
        expect(await tls12(weak), weak).toMatch(/^error: /);
      expect(await tls12('ECDHE-RSA-AES128-GCM-SHA256')).toBe('TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256');
      expect(await stop(s)).toBe(0);
    } finally {
      s.proc.kill('SIGKILL');
    }
  });

  it('warns at start while server.securityContact is the placeholder', async () => {
    const s = await startServer();
    try {
      expect(s.stderr()).toMatch(/warning: server\.securityContact is still the placeholder/);
      expect(await stop(s)).toBe(0);
    } finally {
      s.proc.kill('SIGKILL');
    }
  });

  it('exits 2 on a bad --port', async () => {
    const r = await run(process.execPath, [BIN, 'serve', '--config', ti.configPath, '--port', 'abc']).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect((r as { code: number }).code).toBe(2);
    expect((r as { stderr: string }).stderr).toContain('--port');
  });

  it('shows data key ids without key material (keys show --json)', async () => {
    const { stdout } = await run(process.execPath, [
      BIN,
      'keys',
      'show',
      '--json',
      '--config',
      ti.configPath,
    ]);
    const r = JSON.parse(stdout) as { dataKeys: { id: string; active: boolean }[] };
    expect(r.dataKeys).toEqual([{ id: 'k1', active: true, templates: 0 }]);
    const secrets = await readFile(ti.secretsPath, 'utf8');
    expect(stdout).not.toContain((JSON.parse(secrets) as { dataKeys: { k1: string } }).dataKeys.k1);
  });
});
