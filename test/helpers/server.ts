import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { openInstall, type Install } from '../../src/core/install.js';
import { randomKey } from '../../src/crypto/random.js';
import { hashPassword } from '../../src/crypto/password.js';
import { generateApiKey } from '../../src/crypto/apikey.js';
import { buildApp, type AppOptions } from '../../src/server/app.js';
import { createPool, type Pool } from '../../src/db/pool.js';
import type { Role } from '../../src/db/queries/users.js';
import type { ConfigInput, Secrets } from '../../src/core/config/schema.js';
import { auditKeyFor, createTestDatabase, type TestDatabase } from './db.js';

export const PASSWORD = 'correct horse battery staple';

export interface TestInstall {
  dir: string;
  dataDir: string;
  configPath: string;
  secretsPath: string;
  secrets: Secrets;
  install: Install;
  cleanup(): Promise<void>;
}

/** A real config + 0600 secrets file in a temp dir pointing at the test database, opened like `serve` does. */
export async function createTestInstall(
  db: TestDatabase,
  server: ConfigInput['server'] = {},
): Promise<TestInstall> {
  const dir = await mkdtemp(join(tmpdir(), 'attendux-srv-'));
  const dataDir = join(dir, 'data');
  await mkdir(dataDir, { recursive: true });
  const configPath = join(dir, 'attendux.json');
  const secretsPath = join(dir, 'attendux.secrets.json');
  const secrets: Secrets = {
    sessionKey: randomKey(),
    apiKeyHmacKey: randomKey(),
    auditPepper: randomKey(),
    auditKey: auditKeyFor(db),
    dataKeys: { k1: randomKey() },
    activeDataKeyId: 'k1',
    database: {},
  };
  const config: ConfigInput = {
    dataDir: 'data',
    database: { url: db.appUrl, adminUrl: db.adminUrl, appRole: db.appRole, poolSize: 4 },
    server: { logLevel: 'silent', ...server },
  };
  await writeFile(secretsPath, JSON.stringify(secrets), { mode: 0o600 });
  await writeFile(configPath, JSON.stringify(config));
  const install = await openInstall({ configPath });
  return {
    dir,
    dataDir,
    configPath,
    secretsPath,
    secrets,
    install,
    cleanup: async () => {
      await install.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export async function testApp(ti: TestInstall, opts: Partial<AppOptions> = {}): Promise<FastifyInstance> {
  return buildApp({
    install: ti.install,
    logger: false,
    bcryptCost: 4,
    loginRateLimit: { max: 1000, timeWindow: 60_000 },
    globalRateLimit: { max: 1_000_000, timeWindow: 60_000 },
    ...opts,
  });
}

export interface Company {
  id: string;
  slug: string;
  teamId: string;
  otherTeamId: string;
  /** In teamId, linked to the employee user. */
  employeeId: string;
  /** In otherTeamId, linked to nobody. */
  otherEmployeeId: string;
  siteId: string;
  users: Record<Role, { id: string; email: string }>;
  keys: { read: string; checkIn: string; admin: string };
  keyIds: { read: string; checkIn: string; admin: string };
}

export const ROLES: Role[] = ['owner', 'admin', 'manager', 'hr', 'employee'];

/** A company with two teams, a manager of the first, an employee user linked to an employee of it, a site. */
export async function seedCompany(admin: Pool, hmacKey: string, slug: string): Promise<Company> {
  const hash = await hashPassword(PASSWORD, 4);
  const t = await admin.query<{ id: string }>(
    `INSERT INTO tenants (slug, name, time_zone, currency) VALUES ($1, $1, 'Europe/Berlin', 'EUR') RETURNING id`,
    [slug],
  );
  const id = t.rows[0]!.id;
  const teams = await admin.query<{ id: string }>(
    `INSERT INTO teams (tenant_id, name) VALUES ($1, 'Alpha'), ($1, 'Beta') RETURNING id`,
    [id],
  );
  const [teamId, otherTeamId] = [teams.rows[0]!.id, teams.rows[1]!.id];
  const emps = await admin.query<{ id: string }>(
    `INSERT INTO employees (tenant_id, full_name, employee_number, team_id, hourly_rate_minor)
     VALUES ($1, 'Alex Example', 'E1', $2, 2000), ($1, 'Sam Sample', 'E2', $3, 1800) RETURNING id`,
    [id, teamId, otherTeamId],
  );
  const [employeeId, otherEmployeeId] = [emps.rows[0]!.id, emps.rows[1]!.id];
  const site = await admin.query<{ id: string }>(
    `INSERT INTO sites (tenant_id, name, latitude, longitude, radius_m) VALUES ($1, 'HQ', 52.52, 13.405, 100) RETURNING id`,
    [id],
  );
  const users = {} as Company['users'];
  for (const role of ROLES) {
    const email = `${role}@${slug}.example`;
    const u = await admin.query<{ id: string }>(
      `INSERT INTO users (tenant_id, email, role, password_hash, employee_id) VALUES ($1, $2, $3, $4, $5) RETURNING id`,
      [id, email, role, hash, role === 'employee' ? employeeId : null],
    );
    users[role] = { id: u.rows[0]!.id, email };
  }
  await admin.query(`INSERT INTO team_managers (tenant_id, team_id, user_id) VALUES ($1, $2, $3)`, [
    id,
    teamId,
    users.manager.id,
  ]);
  const keys = {} as Company['keys'];
  const keyIds = {} as Company['keyIds'];
  for (const [name, scope] of [
    ['read', 'read'],
    ['checkIn', 'check-in'],
    ['admin', 'admin'],
  ] as const) {
    const k = generateApiKey(hmacKey);
    const r = await admin.query<{ id: string }>(
      `INSERT INTO api_keys (tenant_id, name, prefix, secret_hmac, scopes, created_by) VALUES ($1, $2, $3, $4, $5, 'test') RETURNING id`,
      [id, name, k.prefix, k.secretHmac, [scope]],
    );
    keys[name] = k.key;
    keyIds[name] = r.rows[0]!.id;
  }
  return {
    id,
    slug,
    teamId,
    otherTeamId,
    employeeId,
    otherEmployeeId,
    siteId: site.rows[0]!.id,
    users,
    keys,
    keyIds,
  };
}

export const ORIGIN = 'http://localhost:80';

/** Log in through the API and return the Cookie header value. */
export async function login(app: FastifyInstance, company: Company, role: Role): Promise<string> {
  const res = await app.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    payload: { company: company.slug, email: company.users[role].email, password: PASSWORD },
  });
  if (res.statusCode !== 200)
    throw new Error(`login ${role}@${company.slug} failed: ${res.statusCode} ${res.body}`);
  const c = res.cookies.find((x) => x.name === 'atx_session');
  if (!c) throw new Error('no session cookie');
  return `atx_session=${c.value}`;
}

export function adminPool(db: TestDatabase): Pool {
  return createPool(db.adminUrl, 2);
}

/** What every server test file starts from: its own database and install, company `acme`, and the app. */
export interface ServerFixture {
  db: TestDatabase;
  ti: TestInstall;
  admin: Pool;
  app: FastifyInstance;
  a: Company;
  close(): Promise<void>;
}

export async function serverFixture(
  label: string,
  opts: { server?: ConfigInput['server']; app?: Partial<AppOptions>; company?: string } = {},
): Promise<ServerFixture> {
  const db = await createTestDatabase(label);
  const ti = await createTestInstall(db, opts.server);
  const admin = adminPool(db);
  const a = await seedCompany(admin, ti.secrets.apiKeyHmacKey, opts.company ?? 'acme');
  const app = await testApp(ti, opts.app);
  return {
    db,
    ti,
    admin,
    app,
    a,
    close: async () => {
      await app.close();
      await admin.end();
      await ti.cleanup();
      await db.drop();
    },
  };
}
