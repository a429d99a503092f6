import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateAgeKeyPair, formatIdentityFile } from '../../src/crypto/age.js';
import { loadConfig } from '../../src/core/config/load.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { runCli, writeTestInstall, type CliResult } from '../helpers/cli.js';
import { makeEmbeddedInstall, type EmbeddedInstall } from '../helpers/embedded.js';
import { freePort } from '../helpers/global-setup.js';

/**
 * The CLI contract (exit codes 0/1/2/75, one error line with a hint on stderr, `--json` error objects,
 * `--quiet`) from the real binary, on both database modes: a configured server (the test PostgreSQL) and
 * the embedded default, where every command starts and stops its own cluster. On the embedded default the
 * exit code used to be 0 for every failure that happened after the cluster started.
 */
interface Mode {
  configPath: string;
  company: string;
  embedded?: EmbeddedInstall;
  cleanup(): Promise<void>;
}

const modes: [string, () => Promise<Mode>][] = [
  [
    'configured database (the test PostgreSQL)',
    async () => {
      const db: TestDatabase = await createTestDatabase('contract');
      const { recipient } = await generateAgeKeyPair();
      const configPath = await writeTestInstall(db, { backup: { recipients: [recipient] } });
      const r = await runCli(['--config', configPath, 'tenant', 'create', 'acme']);
      if (r.exitCode !== 0) throw new Error(r.stderr);
      return { configPath, company: 'acme', cleanup: () => db.drop() };
    },
  ],
  [
    'embedded default (no database configured)',
    async () => {
      const e = await makeEmbeddedInstall('acme');
      return { configPath: e.configPath, company: 'acme', embedded: e, cleanup: () => e.cleanup() };
    },
  ],
];

/** Exactly one error line (plus its hint), no stack trace, and the --json twin's error object. */
function expectError(r: CliResult, exitCode: number, code: string): void {
  expect(r.exitCode, r.stderr).toBe(exitCode);
  expect(JSON.parse(r.stdout)).toMatchObject({ error: { code } });
  expect(r.stderr).toMatch(/^attendux: [^\n]+(\n {2}hint: [^\n]+)?$/);
}

describe.each(modes)('CLI contract on the %s', (_name, make) => {
  let m: Mode;
  let cli: (...args: string[]) => Promise<CliResult>;
  let wrongIdentity: string;
  let busyPort: Server;
  let busy: number;

  beforeAll(async () => {
    m = await make();
    cli = (...args: string[]) => runCli(['--config', m.configPath, ...args]);
    const dir = await mkdtemp(join(tmpdir(), 'attendux-contract-'));
    wrongIdentity = join(dir, 'wrong-identity.txt');
    const pair = await generateAgeKeyPair();
    await writeFile(wrongIdentity, formatIdentityFile(pair.identity, pair.recipient), { mode: 0o600 });
    busy = await freePort();
    busyPort = createServer();
    await new Promise<void>((r) => busyPort.listen(busy, '127.0.0.1', () => r()));
  });
  afterAll(async () => {
    busyPort?.close();
    await m?.cleanup();
  });

  it('exits 0 on success and prints nothing with --quiet', async () => {
    const ok = await cli('--quiet', 'tenant', 'list');
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(ok.stdout).toBe('');
    const created = await cli(
      '--quiet',
      'user',
      'create',
      'ann@acme.example',
      '-t',
      m.company,
      '--role',
      'admin',
    );
    expect(created.exitCode, created.stderr).toBe(0);
    expect(created.stdout).toBe('');
  });

  it('exits 1 when a command fails after opening the database, with a --json error object', async () => {
    const fails: [string[], string][] = [
      [['tenant', 'create', m.company], 'ALREADY_EXISTS'],
      [['user', 'create', 'x@example.org', '-t', 'nosuchco'], 'NOT_FOUND'],
      [['user', 'create', 'ann@acme.example', '-t', m.company], 'ALREADY_EXISTS'],
      [['user', 'list', '-t', 'nosuchco'], 'NOT_FOUND'],
      [['user', 'disable', 'nobody@acme.example', '-t', m.company], 'NOT_FOUND'],
      [['user', 'reset-password', 'nobody@acme.example', '-t', m.company], 'NOT_FOUND'],
      [['user', 'revoke-sessions', 'nobody@acme.example', '-t', m.company], 'NOT_FOUND'],
      [['apikey', 'create', 'kiosk', '-t', 'nosuchco', '--scope', 'read'], 'NOT_FOUND'],
      [['apikey', 'list', '-t', 'nosuchco'], 'NOT_FOUND'],
      [['apikey', 'revoke', 'nosuchkey', '-t', m.company], 'NOT_FOUND'],
      [['backup', 'incremental'], 'BACKUP_NO_FULL'],
      [['restore', '--backup', 'no-such-backup', '--yes'], 'RESTORE_NO_BACKUP'],
    ];
    for (const [args, code] of fails) {
      const r = await cli('--json', ...args);
      expect.soft(r.exitCode, `${args.join(' ')}: ${r.stderr}`).toBe(1);
      expectError(r, 1, code);
    }
    // A report that fails prints the report (ok: false), not an error object, and exits 1.
    const status = await cli('--json', 'backup', 'status');
    expect(status.exitCode, status.stderr).toBe(1);
    expect(JSON.parse(status.stdout)).toMatchObject({ ok: false });
    // --quiet keeps the error line: cron mails failures.
    const quiet = await cli('--quiet', 'tenant', 'create', m.company);
    expect(quiet.exitCode).toBe(1);
    expect(quiet.stdout).toBe('');
    expect(quiet.stderr).toContain('already exists');
  });

  it('exits 1 when serve cannot listen, after opening the database', async () => {
    const r = await cli('--json', 'serve', '--port', String(busy));
    expect(r.exitCode, r.stderr).toBe(1);
    expect(JSON.parse(r.stdout).error.code).toBeTruthy();
  });

  it('exits 1 for a drill with the wrong identity, and for a backup that does not exist', async () => {
    const full = await cli('--json', 'backup', 'full');
    expect(full.exitCode, full.stderr).toBe(0);
    const drill = await cli('--json', 'restore', '--drill', '--identity', wrongIdentity);
    expect(drill.exitCode, drill.stderr).toBe(1);
    const verify = await cli('--json', 'backup', 'verify', 'no-such-backup');
    expect(verify.exitCode, verify.stderr).toBe(1);
  });

  it('exits 75 when another backup holds the lock', async () => {
    const loaded = await loadConfig({ configPath: m.configPath });
    const lock = join(loaded.config.dataDir, 'backup.lock');
    // A live process on this host (the test runner itself) holds it.
    await writeFile(
      lock,
      JSON.stringify({
        pid: process.pid,
        host: hostname(),
        startedAt: new Date().toISOString(),
        command: 'backup full',
      }),
    );
    try {
      const r = await cli('--json', 'backup', 'full');
      expectError(r, 75, 'BACKUP_LOCKED');
    } finally {
      await rm(lock, { force: true });
    }
  });

  it('exits 2 on usage errors, also after opening the database', async () => {
    const r = await cli('--json', 'user', 'create', 'eve@acme.example', '-t', m.company, '--role', 'root');
    expectError(r, 2, 'USAGE');
    const parse = await cli('--json', 'tenant', 'list', '--colour');
    expect(parse.exitCode).toBe(2);
    expect(JSON.parse(parse.stdout).error.code).toBe('USAGE');
  });

  it('exits 1 on a secrets file others can read (before the database opens)', async () => {
    const loaded = await loadConfig({ configPath: m.configPath });
    const { chmod } = await import('node:fs/promises');
    await chmod(loaded.secretsPath, 0o644);
    try {
      expectError(await cli('--json', 'tenant', 'list'), 1, 'SECRETS_INSECURE');
    } finally {
      await chmod(loaded.secretsPath, 0o600);
    }
  });

  it('leaves no embedded cluster running behind any of these commands', async () => {
    if (!m.embedded) return;
    expect(await m.embedded.clusterRunning()).toBe(false);
    const cfg = JSON.parse(await readFile(m.configPath, 'utf8'));
    expect(cfg.database.url).toBeUndefined();
  });
});
