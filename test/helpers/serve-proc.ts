import { spawn, type ChildProcess } from 'node:child_process';
import { request, Agent } from 'node:http';
import { readdir, readFile, readlink, mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './global-setup.js';

const BIN = new URL('../../bin/attendux.js', import.meta.url).pathname;

export interface ServeProc {
  proc: ChildProcess;
  url: string;
  port: number;
  exit: Promise<number | null>;
  stderr: () => string;
  stop(): Promise<number | null>;
}

/** The real binary's `serve` on a free loopback port; resolves once it says where it serves. */
export async function startServe(configPath: string, extra: string[] = []): Promise<ServeProc> {
  const port = await freePort();
  const proc = spawn(
    process.execPath,
    [BIN, 'serve', '--config', configPath, '--port', String(port), ...extra],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  const exit = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${stderr}`)), 60_000);
    proc.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /serving on (\S+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exit.then((code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
  });
  return {
    proc,
    url,
    port,
    exit,
    stderr: () => stderr,
    stop: async () => {
      proc.kill('SIGTERM');
      return exit;
    },
  };
}

export interface Answer {
  status: number;
  body: string;
}

/** One request on a connection of its own (no keep-alive), so the cluster's round-robin sees each one. */
export function fresh(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Keep-alive connections held open, for counting which process holds them. */
export function keepAliveAgent(sockets: number): Agent {
  return new Agent({ keepAlive: true, maxSockets: sockets });
}

export function onAgent(url: string, agent: Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Child processes of pid (from /proc). */
export async function childrenOf(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const stat = await readFile(`/proc/${e}/stat`, 'utf8').catch(() => '');
    // pid (comm) state ppid ...: comm may hold spaces, so split after its closing parenthesis.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === pid) out.push(Number(e));
  }
  return out;
}

/** How many established TCP connections with local port `port` process pid holds (/proc/net/tcp + fds). */
export async function connectionsHeld(pid: number, port: number): Promise<number> {
  const inodes = new Set<string>();
  const tcp = (await readFile('/proc/net/tcp', 'utf8')).split('\n').slice(1);
  for (const line of tcp) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const localPort = parseInt(f[1]!.split(':')[1]!, 16);
    if (localPort === port && f[3] === '01') inodes.add(f[9]!);
  }
  let n = 0;
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [])) {
    const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m && inodes.has(m[1]!)) n++;
  }
  return n;
}

export async function until<T>(ask: () => Promise<T>, done: (v: T) => boolean, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await ask();
    if (done(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface OwnServer {
  port: number;
  proc: ChildProcess;
  stop(): Promise<void>;
}

async function waitForPort(port: number, proc: ChildProcess, what: string, log: () => string): Promise<void> {
  const { connect } = await import('node:net');
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${what} exited ${proc.exitCode}: ${log()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not listen on ${port}: ${log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function own(proc: ChildProcess, port: number, cleanup: () => Promise<void>): OwnServer {
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  return {
    port,
    proc,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        await exited;
      }
      await cleanup();
    },
  };
}

/** Debian's redis-server on a free loopback port, nothing saved to disk. */
export async function startRedis(): Promise<OwnServer> {
  const port = await freePort();
  const proc = spawn(
    '/usr/bin/redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  proc.stdout.on('data', (d: Buffer) => (log += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (log += d.toString()));
  await waitForPort(port, proc, 'redis-server', () => log);
  return own(proc, port, () => Promise.resolve());
}

/**
 * Debian's pgbouncer (1.18) on a free loopback port in transaction mode, in front of the PostgreSQL of
 * `serverUrl`, with its own ini and user list in a temp dir; `poolSize` server connections per user and
 * database. The users' passwords are what pgbouncer logs in with.
 */
export async function startPgbouncer(
  serverUrl: string,
  users: Record<string, string>,
  poolSize = 1,
): Promise<OwnServer> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'attendux-pgbouncer-'));
  const u = new URL(serverUrl);
  const ini = [
    '[databases]',
    `* = host=${u.hostname} port=${u.port || 5432}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = trust',
    `auth_file = ${join(dir, 'users.txt')}`,
    'pool_mode = transaction',
    `default_pool_size = ${poolSize}`,
    'max_client_conn = 200',
    'server_reset_query =',
    'ignore_startup_parameters = extra_float_digits',
    '',
  ].join('\n');
  await writeFile(join(dir, 'pgbouncer.ini'), ini);
  await writeFile(
    join(dir, 'users.txt'),
    Object.entries(users)
      .map(([n, p]) => `"${n}" "${p}"`)
      .join('\n') + '\n',
  );
  // pgbouncer refuses to run as root: then it drops to nobody, who must read the files.
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    await chmod(dir, 0o755);
    await chmod(join(dir, 'pgbouncer.ini'), 0o644);
    await chmod(join(dir, 'users.txt'), 0o644);
  }
  const proc = spawn(
    '/usr/sbin/pgbouncer',
    [...(asRoot ? ['-u', 'nobody'] : []), join(dir, 'pgbouncer.ini')],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let log = '';
  proc.stdout.on('data', (d: Buffer) => (log += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (log += d.toString()));
  await waitForPort(port, proc, 'pgbouncer', () => log);
  return own(proc, port, () => rm(dir, { recursive: true, force: true }));
}
