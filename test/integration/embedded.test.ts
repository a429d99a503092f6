import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pathExists } from '../../src/lib/fs.js';
import { ensureEmbeddedCluster, runningClusterPort } from '../../src/db/embedded.js';
import { connectClient } from '../../src/db/pool.js';
import { freePort } from '../helpers/global-setup.js';
import { removeDataDir } from '../helpers/embedded.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await removeDataDir(d);
});

async function dataDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'attendux-embedded-'));
  dirs.push(d);
  return d;
}

describe('the embedded cluster, started and stopped by attendux itself', () => {
  it('starts with its settings (loopback only, commit timestamps), is joined by a second caller, stops', async () => {
    const dir = await dataDir();
    const port = await freePort();
    const cluster = await ensureEmbeddedCluster({ dataDir: dir, port, superuserPassword: 'pw-1' });
    expect(cluster.owned).toBe(true);
    const c = await connectClient(`postgres://postgres:pw-1@127.0.0.1:${port}/postgres`);
    try {
      const q = async (s: string) =>
        (await c.query<{ v: string }>(`SELECT current_setting('${s}') AS v`)).rows[0]!.v;
      expect(await q('track_commit_timestamp')).toBe('on');
      expect(await q('listen_addresses')).toBe('127.0.0.1');
      expect(await q('password_encryption')).toBe('scram-sha-256');
    } finally {
      await c.end();
    }
    const joined = await ensureEmbeddedCluster({
      dataDir: dir,
      port: await freePort(),
      superuserPassword: 'pw-1',
    });
    expect(joined).toMatchObject({ owned: false, port });
    await joined.stop();
    expect(await runningClusterPort(dir)).toBe(port);
    await cluster.stop();
    expect(await pathExists(join(dir, 'pg', 'postmaster.pid'))).toBe(false);
    // Started again (initialised already): same cluster, same password.
    const again = await ensureEmbeddedCluster({ dataDir: dir, port, superuserPassword: 'pw-1' });
    expect(again.owned).toBe(true);
    await again.stop();
  });

  it('a port taken by another program is an error naming the port and database.embedded.port', async () => {
    const dir = await dataDir();
    const port = await freePort();
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(port, '127.0.0.1', () => r()));
    try {
      const err = await ensureEmbeddedCluster({ dataDir: dir, port, superuserPassword: 'x' }).catch(
        (e: unknown) => e,
      );
      expect(err).toMatchObject({
        code: 'DB_UNAVAILABLE',
        message: expect.stringContaining(`127.0.0.1:${port}`),
      });
      expect((err as { hint: string }).hint).toContain('database.embedded.port');
    } finally {
      srv.close();
    }
  });

  it('a cluster that cannot start is an error with a hint and the log, never an unhandled event', async () => {
    const dir = await dataDir();
    const { mkdir, writeFile } = await import('node:fs/promises');
    // Files of a major this PostgreSQL cannot run: the postmaster exits at once.
    await mkdir(join(dir, 'pg'), { mode: 0o700 });
    await writeFile(join(dir, 'pg', 'PG_VERSION'), '9\n');
    if (process.getuid?.() === 0)
      await (await import('node:fs/promises')).chown(join(dir, 'pg'), ...(await pgIds()));
    const err = await ensureEmbeddedCluster({
      dataDir: dir,
      port: await freePort(),
      superuserPassword: 'x',
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'DB_UNAVAILABLE', message: expect.stringContaining('did not start') });
    expect((err as { hint: string }).hint).toContain('attendux-postgres.log');
  });
});

async function pgIds(): Promise<[number, number]> {
  const { execFileSync } = await import('node:child_process');
  return [Number(execFileSync('id', ['-u', 'postgres'])), Number(execFileSync('id', ['-g', 'postgres']))];
}
