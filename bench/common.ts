/**
 * What the backup and restore benchmarks share: command-line flags, the kept reference databases on the
 * PostgreSQL at --url, installs pointing at them, and timing of real binaries under /usr/bin/time.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { seedReference } from './seed.js';
import { connectClient, createPool, ddl } from '../src/db/pool.js';
import { provisionDatabase } from '../src/db/provision.js';
import { runMigrations } from '../src/db/migrate.js';

export const ROOT = new URL('..', import.meta.url).pathname;
export const BIN = join(ROOT, 'bin/attendux.js');
export const PASSWORD = 'attendux-bench-password';

export const { values } = parseArgs({
  options: {
    url: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/postgres' },
    events: { type: 'string', default: '2000000' },
    companies: { type: 'string', default: '200' },
    employees: { type: 'string', default: '5000' },
    reseed: { type: 'boolean', default: false },
    rounds: { type: 'string', default: '3' },
  },
});

export const su = values.url;

export function urlFor(db: string, user: string): string {
  const u = new URL(su);
  u.username = user;
  u.password = PASSWORD;
  u.pathname = `/${db}`;
  return u.toString();
}

export async function dropDb(name: string): Promise<void> {
  const c = await connectClient(su);
  try {
    await ddl(c, 'DROP DATABASE IF EXISTS %I WITH (FORCE)', name);
  } finally {
    await c.end();
  }
}

/**
 * A seeded reference database, kept between runs (seeding 2M events with change capture takes a while):
 * reused when it has enough events (migrations brought up to date), else recreated; --reseed forces that.
 */
export async function ensureDatabase(
  name: string,
  events: number,
  companies: number,
  employees: number,
): Promise<void> {
  if (values.reseed) await dropDb(name);
  const c = await connectClient(su);
  let exists: boolean;
  try {
    exists = (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1;
  } finally {
    await c.end();
  }
  const owner = `${name}_owner`;
  if (exists) {
    const pool = createPool(urlFor(name, owner), 1);
    const { rows } = await pool
      .query<{ n: number }>('SELECT count(*)::int AS n FROM attendance_events')
      .catch(() => ({ rows: [{ n: 0 }] }));
    await pool.end();
    if (rows[0]!.n >= events) {
      await runMigrations({ adminUrl: urlFor(name, owner), appRole: `${name}_app`, direction: 'up' });
      return;
    }
    await dropDb(name);
  }
  await provisionDatabase({
    existingRoles: 'reset',
    superuserUrl: su,
    database: name,
    ownerRole: owner,
    ownerPassword: PASSWORD,
    appRole: `${name}_app`,
    appPassword: PASSWORD,
  });
  await runMigrations({ adminUrl: urlFor(name, owner), appRole: `${name}_app`, direction: 'up' });
  const pool = createPool(urlFor(name, owner), 2);
  const t0 = Date.now();
  process.stdout.write(`seeding ${name}: ${events} events over ${companies} companies... `);
  await seedReference(pool, { companies, employees, events });
  await pool.end();
  console.log(`${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

/** A config, a 0600 secrets file and an age-keygen identity in <work>/<name>, pointing at the database. */
export async function writeInstall(
  work: string,
  name: string,
): Promise<{ config: string; identity: string }> {
  const dir = join(work, name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const identity = join(dir, 'identity.txt');
  execFileSync('age-keygen', ['-o', identity], { stdio: 'pipe' });
  const recipient = /public key: (age1\S+)/.exec(await readFile(identity, 'utf8'))![1]!;
  const config = join(dir, 'attendux.json');
  await writeFile(
    config,
    JSON.stringify({
      dataDir: 'data',
      database: {
        url: urlFor(name, `${name}_app`),
        adminUrl: urlFor(name, `${name}_owner`),
        appRole: `${name}_app`,
      },
      backup: { recipients: [recipient] },
    }),
  );
  const key = () => randomBytes(32).toString('base64');
  await writeFile(
    join(dir, 'attendux.secrets.json'),
    JSON.stringify({
      sessionKey: key(),
      apiKeyHmacKey: key(),
      auditPepper: key(),
      dataKeys: { k1: key() },
      activeDataKeyId: 'k1',
    }),
    { mode: 0o600 },
  );
  return { config, identity };
}

export interface Timed {
  seconds: number;
  peakRssMb: number;
  stdout: string;
}

/** Run a command under /usr/bin/time -v: wall time and peak RSS of the process. */
export function timed(cmd: string, args: string[]): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn('/usr/bin/time', ['-v', cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (code !== 0)
        return reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.slice(-2000)}`));
      const kb = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(err)?.[1] ?? 0);
      resolve({ seconds, peakRssMb: kb / 1024, stdout: out });
    });
  });
}

export const attendux = (config: string, ...args: string[]) =>
  timed('node', [BIN, '--config', config, ...args]);
export const f = (n: number, d = 2) => n.toFixed(d);
