/**
 * Can one user's password guesses starve everyone's logins? Logs in (bcrypt cost 12) one at a time on an idle
 * server, then again while one other user keeps 48 concurrent `POST /api/v1/me/password` guesses in flight
 * (the penetration test's scenario: 319 ms -> 4.8 s before the fix). Prints the medians and their ratio.
 *
 *   npm run build && npx tsx bench/login-starvation.ts [--url postgres://postgres@127.0.0.1:5432/postgres] [--logins 10]
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connectClient, createPool, ddl } from '../src/db/pool.js';
import { provisionDatabase } from '../src/db/provision.js';
import { runMigrations } from '../src/db/migrate.js';
import { hashPassword } from '../src/crypto/password.js';
import { randomKey } from '../src/crypto/random.js';
import { openInstall } from '../src/core/install.js';
import { buildApp } from '../src/server/app.js';

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/postgres' },
    logins: { type: 'string', default: '10' },
  },
});
const database = `attendux_bench_login_${process.pid}`;
const OWNER = `${database}_owner`;
const APP = `${database}_app`;
const PASSWORD = 'bench-password-1234';
const urlFor = (role: string) => {
  const u = new URL(values.url);
  u.username = role;
  u.password = PASSWORD;
  u.pathname = `/${database}`;
  return u.toString();
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const dir = await mkdtemp(join(tmpdir(), 'attendux-bench-login-'));
try {
  await provisionDatabase({
    superuserUrl: values.url,
    database,
    ownerRole: OWNER,
    ownerPassword: PASSWORD,
    appRole: APP,
    appPassword: PASSWORD,
  });
  await runMigrations({ adminUrl: urlFor(OWNER), appRole: APP, direction: 'up' });
  const admin = createPool(urlFor(OWNER), 2);
  const hash = await hashPassword('correct horse battery staple', 12);
  const t = await admin.query<{ id: string }>(
    `INSERT INTO tenants (slug, name) VALUES ('bench', 'Bench') RETURNING id`,
  );
  for (const email of ['a@bench.example', 'b@bench.example'])
    await admin.query(
      `INSERT INTO users (tenant_id, email, role, password_hash) VALUES ($1, $2, 'admin', $3)`,
      [t.rows[0]!.id, email, hash],
    );
  await admin.end();
  const secrets = {
    sessionKey: randomKey(),
    apiKeyHmacKey: randomKey(),
    auditPepper: randomKey(),
    dataKeys: { k1: randomKey() },
    activeDataKeyId: 'k1',
  };
  await writeFile(join(dir, 'attendux.secrets.json'), JSON.stringify(secrets), { mode: 0o600 });
  await writeFile(
    join(dir, 'attendux.json'),
    JSON.stringify({
      dataDir: 'data',
      database: { url: urlFor(APP), adminUrl: urlFor(OWNER), appRole: APP },
      server: {
        logLevel: 'silent',
        rateLimitPerMinute: Number(process.env.BENCH_RATE_LIMIT ?? 1_000_000),
        loginRateLimitPerMinute: 100_000,
      },
    }),
  );
  const install = await openInstall({ configPath: join(dir, 'attendux.json') });
  const app = await buildApp({ install, logger: false });
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  const login = async (email: string) => {
    const t0 = performance.now();
    const r = await fetch(`${base}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ company: 'bench', email, password: 'correct horse battery staple' }),
    });
    if (r.status !== 200) throw new Error(`login ${email}: ${r.status}`);
    return { ms: performance.now() - t0, cookie: r.headers.get('set-cookie')!.split(';')[0]! };
  };
  const n = Number(values.logins);
  const idle: number[] = [];
  for (let i = 0; i < n; i++) idle.push((await login('a@bench.example')).ms);
  const { cookie } = await login('b@bench.example');
  let stop = false;
  const codes = new Map<number, number>();
  const guesser = async () => {
    for (let i = 0; !stop; i++) {
      const r = await fetch(`${base}/api/v1/me/password`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', cookie, origin: base },
        body: JSON.stringify({ currentPassword: `guess ${i}`, newPassword: 'another long password' }),
      });
      codes.set(r.status, (codes.get(r.status) ?? 0) + 1);
      await r.arrayBuffer();
    }
  };
  const guessers = Array.from({ length: 48 }, guesser);
  const busy: number[] = [];
  for (let i = 0; i < n; i++) busy.push((await login('a@bench.example')).ms);
  stop = true;
  await Promise.all(guessers);
  await app.close();
  await install.close();
  console.log(`login median idle                        ${median(idle).toFixed(0)} ms`);
  console.log(`login median under 48 concurrent guesses ${median(busy).toFixed(0)} ms`);
  console.log(`  ratio busy / idle                      ${(median(busy) / median(idle)).toFixed(2)}`);
  console.log(`  /me/password answers: ${[...codes].map(([c, k]) => `${c} x${k}`).join(', ')}`);
} finally {
  await rm(dir, { recursive: true, force: true });
  const su = await connectClient(values.url);
  await ddl(su, 'DROP DATABASE IF EXISTS %I WITH (FORCE)', database);
  await ddl(su, 'DROP ROLE IF EXISTS %I', OWNER);
  await ddl(su, 'DROP ROLE IF EXISTS %I', APP);
  await su.end();
}
