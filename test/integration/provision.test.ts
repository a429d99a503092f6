import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHmac, randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it, inject } from 'vitest';
import { initInstall, type InitOptions } from '../../src/core/init.js';
import { connectClient } from '../../src/db/pool.js';
import { provisionDatabase } from '../../src/db/provision.js';
import { scramSha256Verifier } from '../../src/crypto/scram.js';
import { dropInstall, urlFor } from '../helpers/db.js';

const { superuserUrl } = inject('pg');
const created: string[] = [];
afterAll(async () => {
  for (const d of created) await dropInstall(superuserUrl, d);
});

function newName(): string {
  const d = `attendux_prov_${randomBytes(3).toString('hex')}`;
  created.push(d);
  return d;
}

/** Every statement text and bound value this process sends while fn runs. */
async function sentDuring(fn: () => Promise<unknown>): Promise<string> {
  const seen: string[] = [];
  // eslint-disable-next-line @typescript-eslint/unbound-method -- re-bound with apply below
  const original = pg.Client.prototype.query;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const [q, values] = args as [unknown, unknown];
    seen.push(typeof q === 'string' ? q : JSON.stringify(q));
    if (Array.isArray(values)) seen.push(JSON.stringify(values));
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof original;
  try {
    await fn();
  } finally {
    pg.Client.prototype.query = original;
  }
  return seen.join('\n');
}

async function rolpassword(role: string): Promise<string> {
  const c = await connectClient(superuserUrl);
  try {
    const { rows } = await c.query<{ p: string }>(
      'SELECT rolpassword AS p FROM pg_authid WHERE rolname = $1',
      [role],
    );
    return rows[0]!.p;
  } finally {
    await c.end();
  }
}

describe('provisioning roles and the database', () => {
  it('stores SCRAM-SHA-256 verifiers computed here: the password is in no statement or value sent', async () => {
    const database = newName();
    const ownerPassword = `owner-${randomBytes(8).toString('hex')}`;
    const appPassword = `app-${randomBytes(8).toString('hex')}`;
    const sent = await sentDuring(() =>
      provisionDatabase({
        superuserUrl,
        database,
        ownerRole: `${database}_owner`,
        ownerPassword,
        appRole: `${database}_app`,
        appPassword,
      }),
    );
    expect(sent).toContain('SCRAM-SHA-256$4096:');
    expect(sent).not.toContain(ownerPassword);
    expect(sent).not.toContain(appPassword);
    expect(await rolpassword(`${database}_owner`)).toMatch(/^SCRAM-SHA-256\$4096:/);
    expect(await rolpassword(`${database}_app`)).toMatch(/^SCRAM-SHA-256\$4096:/);
    // The verifier is the one PostgreSQL itself would compute: the roles log in with the passwords.
    const c = await connectClient(urlFor(superuserUrl, `${database}_app`, appPassword, database));
    await c.end();
  });

  it('the app role may connect but not create temporary tables', async () => {
    const database = newName();
    await provisionDatabase({
      superuserUrl,
      database,
      ownerRole: `${database}_owner`,
      ownerPassword: 'owner-pass-1',
      appRole: `${database}_app`,
      appPassword: 'app-pass-1',
    });
    const app = await connectClient(urlFor(superuserUrl, `${database}_app`, 'app-pass-1', database));
    try {
      await expect(app.query('CREATE TEMP TABLE t (x int)')).rejects.toMatchObject({ code: '42501' });
    } finally {
      await app.end();
    }
  });

  it('refuses to reset the passwords of roles that already exist unless told they are its own', async () => {
    const database = newName();
    const base = {
      superuserUrl,
      database,
      ownerRole: `${database}_owner`,
      ownerPassword: 'first-owner',
      appRole: `${database}_app`,
      appPassword: 'first-app',
    };
    await provisionDatabase(base);
    const before = await rolpassword(`${database}_owner`);
    await expect(provisionDatabase({ ...base, ownerPassword: 'second' })).rejects.toMatchObject({
      code: 'ALREADY_EXISTS',
    });
    expect(await rolpassword(`${database}_owner`)).toBe(before);
    const r = await provisionDatabase({ ...base, ownerPassword: 'second', existingRoles: 'reset' });
    expect(r.resetRoles).toEqual([`${database}_owner`, `${database}_app`]);
    expect(await rolpassword(`${database}_owner`)).not.toBe(before);
  });

  it('computes the verifier of RFC 7677 test vector form', () => {
    const v = scramSha256Verifier('pencil', 4096, Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'));
    // RFC 7677 section 3: salt W22ZaJ0SNY7soEsUEjb6gQ==, i=4096, password "pencil".
    const [, rest] = v.split('$4096:');
    const [salt, keys] = rest!.split('$');
    expect(salt).toBe('W22ZaJ0SNY7soEsUEjb6gQ==');
    const [, serverKey] = keys!.split(':');
    // ServerSignature in the RFC is HMAC(ServerKey, AuthMessage); check ServerKey through it.
    const authMessage =
      'n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';
    expect(createHmac('sha256', Buffer.from(serverKey!, 'base64')).update(authMessage).digest('base64')).toBe(
      '6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
    );
  });
});

async function options(database: string, extra: Partial<InitOptions> = {}): Promise<InitOptions> {
  const dir = await mkdtemp(join(tmpdir(), 'attendux-prov-init-'));
  return {
    configPath: join(dir, 'attendux.json'),
    dataDir: join(dir, 'data'),
    superuserUrl,
    databaseName: database,
    tenantSlug: 'acme',
    tenantName: 'Acme',
    adminEmail: 'owner@acme.example',
    adminPassword: 'a-long-owner-password',
    actor: 'cli:test@host',
    bcryptCost: 4,
    ...extra,
  };
}

describe('init on a shared PostgreSQL', () => {
  it("refuses another install's roles without --force; with --force it takes them over", async () => {
    const database = newName();
    await initInstall(await options(database));
    const other = await options(database);
    await expect(initInstall(other)).rejects.toMatchObject({ code: 'ALREADY_EXISTS', exitCode: 1 });
    const forced = await initInstall({ ...other, force: true });
    expect(forced.alreadyInstalled).toBe(false);
  });

  it('a run that failed after creating its roles is finished by a re-run (its own roles)', async () => {
    const database = newName();
    const opts = await options(database, { tenantSlug: 'Not A Slug!' });
    await expect(initInstall(opts)).rejects.toThrow(/install stopped at step "company"/);
    const state = JSON.parse(await readFile(join(opts.dataDir, 'install-state.json'), 'utf8'));
    expect(state.ownRoles.sort()).toEqual([`${database}_app`, `${database}_owner`]);
    expect(state.done.migrations).toBeTruthy();
    const again = await initInstall({ ...opts, tenantSlug: 'acme' });
    expect(again).toMatchObject({ alreadyInstalled: false, resumed: true, tenant: { slug: 'acme' } });
    const third = await initInstall({ ...opts, tenantSlug: undefined, adminEmail: undefined });
    expect(third.alreadyInstalled).toBe(true);
  });
});
