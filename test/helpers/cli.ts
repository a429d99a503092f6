import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { randomKey } from '../../src/crypto/random.js';
import { auditKeyFor, type TestDatabase } from './db.js';

export const BIN = fileURLToPath(new URL('../../bin/attendux.js', import.meta.url));

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Run the real binary, as cron would: no TTY, nothing on stdin. */
export async function runCli(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<CliResult> {
  const r = await execa('node', [BIN, ...args], {
    cwd: opts.cwd,
    env: { ...opts.env, ATTENDUX_CONFIG: opts.env?.ATTENDUX_CONFIG ?? '' },
    extendEnv: true,
    reject: false,
    stdin: 'ignore',
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

export function spawnCli(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): ResultPromise {
  return execa('node', [BIN, ...args], {
    cwd: opts.cwd,
    env: opts.env,
    reject: false,
    stdin: 'ignore',
    all: true,
  });
}

/** A config + 0600 secrets file in a temp dir pointing at a test database; returns the config path. */
export async function writeTestInstall(
  db: TestDatabase,
  extra: Record<string, unknown> = {},
): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'attendux-e2e-'));
  const config = {
    dataDir: 'data',
    database: { url: db.appUrl, adminUrl: db.adminUrl, appRole: db.appRole },
    ...extra,
  };
  const secrets = {
    sessionKey: randomKey(),
    apiKeyHmacKey: randomKey(),
    auditPepper: randomKey(),
    auditKey: auditKeyFor(db),
    dataKeys: { k1: randomKey() },
    activeDataKeyId: 'k1',
  };
  const path = join(dir, 'attendux.json');
  await writeFile(path, JSON.stringify(config, null, 2));
  await writeFile(join(dir, 'attendux.secrets.json'), JSON.stringify(secrets), { mode: 0o600 });
  return path;
}
