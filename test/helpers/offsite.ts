import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { chmod, mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { freePort } from './global-setup.js';

export const SSHD = '/usr/sbin/sshd';
export const haveSshd = existsSync(SSHD);

/** Every descendant of a process (from /proc), deepest last. */
function descendants(pid: number): number[] {
  const kids = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = kids.get(ppid) ?? [];
      list.push(Number(d));
      kids.set(ppid, list);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const k of kids.get(p) ?? []) {
      out.push(k);
      walk(k);
    }
  };
  walk(pid);
  return out;
}

/** SIGKILL a process and everything it forked (sshd's per-connection children outlive the listener). */
export function killTree(pid: number): void {
  const all = [pid, ...descendants(pid)];
  for (const p of all) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

function waitForLine(child: ChildProcess, re: RegExp, what: string, ms = 15_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not start: ${buf}`)), ms);
    const on = (c: Buffer) => {
      buf += c.toString();
      if (re.test(buf)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', on);
    child.stderr?.on('data', on);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}): ${buf}`));
    });
  });
}

export interface TestSshd {
  port: number;
  user: string;
  /** Directory the tests use as the target path (owned by the test user). */
  root: string;
  hostKeyFingerprint: string;
  /** A key pair of another host, for the wrong-host-key test. */
  otherFingerprint: string;
  privateKeyFile: string;
  kill(): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Debian's OpenSSH server on a random loopback port, with its own sshd_config, host key and authorized_keys
 * in a temp dir (the system sshd is never touched), accepting only the generated key of the current user.
 */
export async function startSshd(): Promise<TestSshd> {
  const dir = await mkdtemp(join(tmpdir(), 'attendux-sshd-'));
  const port = await freePort();
  const user = userInfo().username;
  const keygen = (file: string) =>
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', file], { stdio: 'pipe' });
  keygen(join(dir, 'host_ed25519'));
  keygen(join(dir, 'other_host_ed25519'));
  keygen(join(dir, 'client_ed25519'));
  const fp = (file: string) => execFileSync('ssh-keygen', ['-lf', file], { encoding: 'utf8' }).split(' ')[1]!;
  await writeFile(join(dir, 'authorized_keys'), readFileSync(join(dir, 'client_ed25519.pub')), {
    mode: 0o600,
  });
  const root = join(dir, 'remote');
  await mkdir(root, { mode: 0o700 });
  await writeFile(
    join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${join(dir, 'host_ed25519')}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      // The temp dir lives under the world-writable /tmp, which StrictModes would refuse.
      'StrictModes no',
      'UsePAM no',
      `AllowUsers ${user}`,
      'Subsystem sftp internal-sftp',
      'LogLevel ERROR',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  await chmod(dir, 0o700);
  // sshd insists on its privilege separation directory (Debian's service creates it at start).
  if (!existsSync('/run/sshd')) mkdirSync('/run/sshd', { mode: 0o755, recursive: true });
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn(SSHD, ['-D', '-e', '-f', join(dir, 'sshd_config'), '-o', 'LogLevel=DEBUG1'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    await waitForLine(child, /Server listening on/, 'sshd');
  };
  await start();
  return {
    port,
    user,
    root,
    hostKeyFingerprint: fp(join(dir, 'host_ed25519.pub')),
    otherFingerprint: fp(join(dir, 'other_host_ed25519.pub')),
    privateKeyFile: join(dir, 'client_ed25519'),
    kill: () => {
      if (child?.pid) killTree(child.pid);
    },
    start,
    stop: async () => {
      if (child?.pid) killTree(child.pid);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface TestS3 {
  endpoint: string;
  bucket: string;
  /** Where s3rver keeps the objects (to flip a byte in one). */
  dir: string;
  accessKeyId: string;
  secretAccessKey: string;
  kill(): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * s3rver (npm) in a child process on a random loopback port, so a test can SIGKILL it mid-upload and start
 * it again on the same directory.
 */
export async function startS3(bucket = 'attendux-test'): Promise<TestS3> {
  const dir = await mkdtemp(join(tmpdir(), 'attendux-s3rver-'));
  const port = await freePort();
  let child: ChildProcess | undefined;
  const script = `
    import S3rver from 's3rver';
    const s = new S3rver({ port: ${port}, address: '127.0.0.1', directory: ${JSON.stringify(dir)}, silent: true,
      configureBuckets: [{ name: ${JSON.stringify(bucket)} }] });
    await s.run();
    console.log('s3rver ready');
  `;
  const start = async () => {
    child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd: join(import.meta.dirname, '../..'),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    await waitForLine(child, /s3rver ready/, 's3rver');
  };
  await start();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    dir,
    // s3rver's fixed development credentials (it checks signatures made with them).
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    kill: () => {
      if (child?.pid) killTree(child.pid);
    },
    start,
    stop: async () => {
      if (child?.pid) killTree(child.pid);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
