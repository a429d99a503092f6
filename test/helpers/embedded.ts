import { chmod, lstat, mkdtemp, readFile, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathExists } from '../../src/lib/fs.js';
import { freePort } from './global-setup.js';
import { runCli } from './cli.js';

/** An install on the embedded default (no database configured), made by the real `attendux init --yes`. */
export interface EmbeddedInstall {
  dir: string;
  configPath: string;
  dataDir: string;
  pgPort: number;
  /** The owner password init generated. */
  ownerPassword: string;
  /** Is a postmaster of this install's cluster running (postmaster.pid present)? */
  clusterRunning(): Promise<boolean>;
  cleanup(): Promise<void>;
}

/** Remove a data dir and, when <dataDir>/pg links elsewhere (root, unreachable parent), the cluster too. */
export async function removeDataDir(dataDir: string): Promise<void> {
  const link = join(dataDir, 'pg');
  const st = await lstat(link).catch(() => undefined);
  if (st?.isSymbolicLink()) {
    const target = await realpath(link).catch(() => undefined);
    if (target) await rm(target, { recursive: true, force: true });
  }
  await rm(dataDir, { recursive: true, force: true });
}

export async function makeEmbeddedInstall(company = 'acme', parent?: string): Promise<EmbeddedInstall> {
  const dir = parent ?? (await mkdtemp(join(tmpdir(), 'attendux-emb-')));
  // As root the cluster runs as the postgres user: let it enter (else the cluster is relocated, which
  // test/e2e/embedded-lifecycle tests on its own).
  if (!parent) await chmod(dir, 0o711);
  const configPath = join(dir, 'attendux.json');
  const dataDir = join(dir, 'data');
  const pgPort = await freePort();
  const r = await runCli([
    '--json',
    'init',
    '--yes',
    '--config-out',
    configPath,
    '--data-dir',
    dataDir,
    '--embedded-port',
    String(pgPort),
    '--company',
    company,
    '--admin-email',
    `owner@${company}.example`,
  ]);
  if (r.exitCode !== 0) throw new Error(`init failed (${r.exitCode}): ${r.stderr}`);
  const result = JSON.parse(r.stdout) as { generatedPassword: string };
  return {
    dir,
    configPath,
    dataDir,
    pgPort,
    ownerPassword: result.generatedPassword,
    clusterRunning: () => pathExists(join(dataDir, 'pg', 'postmaster.pid')),
    cleanup: async () => {
      const pid = await readFile(join(dataDir, 'pg', 'postmaster.pid'), 'utf8').catch(() => undefined);
      if (pid) process.kill(Number(pid.split('\n')[0]), 'SIGQUIT');
      await removeDataDir(dataDir);
      if (!parent) await rm(dir, { recursive: true, force: true });
    },
  };
}
