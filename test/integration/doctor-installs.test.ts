/**
 * Doctor checks whose fail case needs a PostgreSQL set up in a way the shared test database is not: an
 * embedded install (the real `attendux init --yes`) whose cluster an admin then starts by hand, listening on
 * a non-loopback address of this machine with TLS on. server.embedded-loopback sees the address it really
 * listens on; db.tls connects through that address, once in plain text and once over TLS, and asks the
 * server about its own connection (pg_stat_ssl).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { chown, readFile, realpath, writeFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { doctor, runChecks } from '../../src/core/doctor/index.js';
import * as dbc from '../../src/core/doctor/database.js';
import { openInstall, type Install } from '../../src/core/install.js';
import { clusterDir } from '../../src/db/embedded.js';
import { makeEmbeddedInstall, type EmbeddedInstall } from '../helpers/embedded.js';

/** A non-loopback IPv4 address of this machine (the tests below need one to listen on). */
const publicIp = Object.values(networkInterfaces())
  .flat()
  .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;

let emb: EmbeddedInstall;

async function checkOf(id: string) {
  const r = await doctor({ configPath: emb.configPath });
  return r.checks.find((c) => c.id === id)!;
}

/** The cluster's last start command line, as PostgreSQL records it in postmaster.opts. */
async function lastStart(dir: string): Promise<string[]> {
  // `<binary> "-D" "<dir>" "-p" …`: the binary unquoted, each argument quoted
  const opts = (await readFile(join(dir, 'postmaster.opts'), 'utf8')).trim();
  const bin = opts.slice(0, opts.indexOf(' "'));
  return [bin, ...[...opts.slice(bin.length).matchAll(/"([^"]*)"/g)].map((m) => m[1]!)];
}

async function waitReady(port: number) {
  for (let i = 0; i < 100; i++) {
    try {
      execFileSync('pg_isready', ['-q', '-h', '127.0.0.1', '-p', String(port)]);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error('the hand-started cluster did not get ready');
}

/**
 * What an admin might do: start the cluster by hand (not through attendux) listening on `ip` as well, with
 * TLS on (a throwaway openssl certificate) and a pg_hba.conf line that lets that address in.
 */
async function startByHand(ip: string): Promise<void> {
  const dir = await realpath(clusterDir(emb.dataDir));
  const [bin, ...args] = await lastStart(dir);
  const owner = execFileSync('stat', ['-c', '%u:%g', dir], { encoding: 'utf8' })
    .trim()
    .split(':')
    .map(Number);
  const [uid, gid] = owner as [number, number];
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=attendux-doctor-test',
      '-keyout',
      join(dir, 'test-server.key'),
      '-out',
      join(dir, 'test-server.crt'),
    ],
    { stdio: 'ignore' },
  );
  const hba = await readFile(join(dir, 'pg_hba.conf'), 'utf8');
  const local = hba.split('\n').find((l) => /^host\s+all\s+all\s+127\.0\.0\.1\/32/.test(l));
  expect(local).toBeDefined();
  await writeFile(join(dir, 'test-hba.conf'), `${hba}\n${local!.replace('127.0.0.1/32', `${ip}/32`)}\n`, {
    mode: 0o600,
  });
  for (const f of ['test-server.key', 'test-server.crt', 'test-hba.conf'])
    await chown(join(dir, f), uid, gid);
  const wider = args.map((a) => (a.startsWith('listen_addresses=') ? `listen_addresses=127.0.0.1,${ip}` : a));
  const child = spawn(
    bin!,
    [
      ...wider,
      ...['-c', 'ssl=on', '-c', `ssl_cert_file=${join(dir, 'test-server.crt')}`],
      ...[
        '-c',
        `ssl_key_file=${join(dir, 'test-server.key')}`,
        '-c',
        `hba_file=${join(dir, 'test-hba.conf')}`,
      ],
    ],
    { uid, gid, detached: true, stdio: 'ignore' },
  );
  child.unref();
  await waitReady(emb.pgPort);
}

const through = (url: string, ip: string, sslmode: string) => {
  const u = new URL(url);
  u.hostname = ip;
  u.searchParams.set('sslmode', sslmode);
  return u.toString();
};

beforeAll(async () => {
  emb = await makeEmbeddedInstall('docinst');
}, 180_000);
afterAll(async () => {
  await emb?.cleanup(); // stops the hand-started postmaster too (postmaster.pid)
});

describe.skipIf(!publicIp)('doctor against real installs', () => {
  it('server.embedded-loopback passes when attendux starts its cluster', async () => {
    expect(await checkOf('server.embedded-loopback')).toMatchObject({
      status: 'pass',
      message: 'embedded PostgreSQL listens on 127.0.0.1',
    });
    expect(await emb.clusterRunning()).toBe(false); // doctor stopped what it started
  });

  it('server.embedded-loopback fails when the cluster was started by hand on a public address', async () => {
    await startByHand(publicIp!);
    const c = await checkOf('server.embedded-loopback');
    expect(c.status).toBe('fail');
    expect(c.message).toContain(publicIp);
  });

  it('db.tls: plain text through a non-loopback address fails, TLS through it passes, loopback passes', async () => {
    // the cluster started by hand above: TLS on, listening on the public address too
    const install = await openInstall({ configPath: emb.configPath });
    try {
      const as = (sslmode: string): Install => ({
        ...install,
        db: {
          ...install.db,
          appUrl: through(install.db.appUrl, publicIp!, sslmode),
          adminUrl: through(install.db.adminUrl, publicIp!, sslmode),
        },
      });
      const now = new Date();
      const [local] = await runChecks({ install, now }, [dbc.dbTls]);
      expect(local).toMatchObject({ status: 'pass', message: expect.stringMatching(/local/) });
      const [plain] = await runChecks({ install: as('disable'), now }, [dbc.dbTls]);
      expect(plain!.status).toBe('fail');
      expect(plain!.message).toContain(`database.url to ${publicIp}`);
      expect(plain!.message).toContain(`database.adminUrl to ${publicIp}`);
      // no-verify: the throwaway certificate is self-signed; the check is about encryption being used
      const [tls] = await runChecks({ install: as('no-verify'), now }, [dbc.dbTls]);
      expect(tls).toMatchObject({ status: 'pass', message: `TLS to ${publicIp}` });
    } finally {
      await install.close();
    }
  });
});
