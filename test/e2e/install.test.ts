import { chmod, mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it, inject } from 'vitest';
import { dropInstall } from '../helpers/db.js';
import { pathExists } from '../../src/lib/fs.js';
import { freePort } from '../helpers/global-setup.js';
import { runCli, spawnCli } from '../helpers/cli.js';
import { generateAgeKeyPair } from '../../src/crypto/age.js';

const { superuserUrl } = inject('pg');
const databases: string[] = [];

afterAll(async () => {
  for (const d of databases) await dropInstall(superuserUrl, d);
});

async function waitFor(url: string, ms: number): Promise<Response> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      return await fetch(url);
    } catch (err) {
      if (Date.now() > until) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

describe('attendux init --yes against the PostgreSQL service', () => {
  it('provisions a second install in a temp dir, then reports it as installed on a re-run', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'attendux-e2e-init-'));
    const database = `attendux_e2e_${randomBytes(3).toString('hex')}`;
    databases.push(database);
    const args = [
      'init',
      '--yes',
      '--config-out',
      join(dir, 'attendux.json'),
      '--data-dir',
      join(dir, 'data'),
      '--database-url',
      superuserUrl,
      '--database-name',
      database,
      '--company',
      'acme',
      '--admin-email',
      'o@acme.example',
    ];
    const first = await runCli(['--json', ...args]);
    expect(first.exitCode).toBe(0);
    const result = JSON.parse(first.stdout);
    expect(result).toMatchObject({
      alreadyInstalled: false,
      tenant: { slug: 'acme' },
      database: { embedded: false, name: database },
    });
    expect(result.generatedPassword).toMatch(/^[A-Za-z0-9]{24}$/);

    const again = await runCli(args);
    expect(again.exitCode).toBe(0);
    expect(again.stdout).toContain('already installed');
    // Installed: no flags needed (the check comes before flag validation).
    const bare = await runCli(['init', '--yes', '--config-out', join(dir, 'attendux.json')]);
    expect(bare.exitCode, bare.stderr).toBe(0);
    expect(bare.stdout).toContain('already installed');

    const users = await runCli([
      '--json',
      '--config',
      join(dir, 'attendux.json'),
      'user',
      'list',
      '-t',
      'acme',
    ]);
    expect(JSON.parse(users.stdout)).toEqual([
      expect.objectContaining({ email: 'o@acme.example', role: 'owner' }),
    ]);
  });
});

describe('init --backup-recipient', () => {
  it('takes an existing age public key (the placeholder is not variadic) and writes no identity', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'attendux-e2e-recipient-'));
    const database = `attendux_e2e_${randomBytes(3).toString('hex')}`;
    databases.push(database);
    const { recipient } = await generateAgeKeyPair();
    const r = await runCli([
      '--json',
      'init',
      '--yes',
      '--config-out',
      join(dir, 'attendux.json'),
      '--data-dir',
      join(dir, 'data'),
      '--database-url',
      superuserUrl,
      '--database-name',
      database,
      '--backup-recipient',
      recipient,
      '--company',
      'acme',
      '--admin-email',
      'o@acme.example',
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ backupRecipient: recipient });
    expect(JSON.parse(await readFile(join(dir, 'attendux.json'), 'utf8')).backup.recipients).toEqual([
      recipient,
    ]);
    expect(await pathExists(join(dir, 'attendux-backup-identity.txt'))).toBe(false);
  });
});

describe('quickstart on the embedded default', () => {
  it('provisions on first run, serves, lets CLI commands attach to its cluster, and stops cleanly', async () => {
    const parent = await mkdtemp(join(tmpdir(), 'attendux-e2e-qs-'));
    // As root the embedded cluster runs as the postgres user, which must be able to enter the directory.
    await chmod(parent, 0o711);
    const dir = join(parent, 'attendux-data');
    const [httpPort, pgPort] = [await freePort(), await freePort()];
    const env = { ATTENDUX_SERVER_PORT: String(httpPort), ATTENDUX_DATABASE_EMBEDDED_PORT: String(pgPort) };
    const server = spawnCli(['quickstart', '--dir', dir], {
      env: { ...process.env, ...env },
    });
    try {
      const health = await waitFor(`http://127.0.0.1:${httpPort}/healthz`, 90_000).catch(
        async (err: unknown) => {
          server.kill('SIGTERM');
          throw new Error(`quickstart did not serve: ${String((await server).all)}`, { cause: err });
        },
      );
      expect(health.status).toBe(200);
      expect((await stat(join(dir, 'attendux.secrets.json'))).mode & 0o777).toBe(0o600);
      expect(await readFile(join(dir, 'initial-owner-password.txt'), 'utf8')).toMatch(
        /^owner@demo\.example\n[A-Za-z0-9]{24}\n$/,
      );

      // A CLI command while the server owns the cluster: attaches to it instead of starting a second one.
      const list = await runCli(['--json', '--config', join(dir, 'attendux.json'), 'tenant', 'list'], {
        env,
      });
      expect(list.exitCode).toBe(0);
      expect(JSON.parse(list.stdout).map((t: { slug: string }) => t.slug)).toEqual(['demo']);
      expect((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status).toBe(200);
    } finally {
      server.kill('SIGTERM');
    }
    const done = await server;
    expect(done.exitCode).toBe(0);
    expect(await pathExists(join(dir, 'pg', 'postmaster.pid'))).toBe(false);

    // A command with the server stopped starts the cluster for itself and stops it again.
    const later = await runCli(
      ['--json', '--config', join(dir, 'attendux.json'), 'user', 'list', '-t', 'demo'],
      { env },
    );
    expect(later.exitCode).toBe(0);
    expect(JSON.parse(later.stdout)).toEqual([expect.objectContaining({ email: 'owner@demo.example' })]);
    expect(await pathExists(join(dir, 'pg', 'postmaster.pid'))).toBe(false);
  });
});
