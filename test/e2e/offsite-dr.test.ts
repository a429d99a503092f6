import { spawnSync } from 'node:child_process';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { seedReference } from '../../bench/seed.js';
import { connectClient, createPool, ddl } from '../../src/db/pool.js';
import { SYSTEM_TENANT } from '../../src/db/queries/audit.js';
import { startS3, type TestS3 } from '../helpers/offsite.js';
import { tableChecksums } from '../helpers/restore.js';

/**
 * The README's disaster-recovery runbook, command for command, with the real binary: an install made by
 * `init` on a PostgreSQL server copies its backups to S3 (s3rver); then its config dir, data dir, database
 * and roles are all destroyed, and a "new server" comes back from the target alone.
 */
const BIN = join(import.meta.dirname, '../../bin/attendux.js');
const su = inject('pg').superuserUrl;
const name = `attendux_dr_${process.pid}`;
let s3: TestS3;
let tmp: string;

const target = () => ({
  name: 'offsite',
  type: 's3',
  endpoint: s3.endpoint,
  bucket: s3.bucket,
  prefix: 'dr',
  pathStyle: true,
  retries: 1,
});

function run(args: string[], extra: Record<string, string> = {}) {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TMPDIR: tmp,
    ATTENDUX_TARGET_OFFSITE_ACCESS_KEY_ID: s3.accessKeyId,
    ATTENDUX_TARGET_OFFSITE_SECRET_ACCESS_KEY: s3.secretAccessKey,
    ...extra,
  };
  delete env.ATTENDUX_CONFIG;
  delete env.ATTENDUX_BACKUP_IDENTITY;
  const r = spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8', timeout: 180_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const dbUrl = (db: string) => {
  const u = new URL(su);
  u.pathname = `/${db}`;
  return u.toString();
};

async function destroy(): Promise<void> {
  const c = await connectClient(su);
  try {
    const { rows } = await c.query<{ datname: string }>(
      `SELECT datname FROM pg_database WHERE datname = $1 OR datname LIKE $2`,
      [name, `${name}\\_%`],
    );
    for (const r of rows) await ddl(c, 'DROP DATABASE IF EXISTS %I WITH (FORCE)', r.datname);
    for (const role of [`${name}_owner`, `${name}_app`]) await ddl(c, 'DROP ROLE IF EXISTS %I', role);
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'attendux-e2e-dr-'));
  s3 = await startS3();
});

afterAll(async () => {
  await destroy().catch(() => undefined);
  await s3?.stop();
  await rm(tmp, { recursive: true, force: true });
});

describe('disaster recovery from an off-site target (README runbook)', () => {
  it('brings a destroyed install back on a new server from the target alone', async () => {
    const old = join(tmp, 'old-server');
    const oldConfig = join(old, 'etc', 'attendux.json');
    const pw = join(tmp, 'owner-password.txt');
    await writeFile(pw, 'correct horse battery staple\n', { mode: 0o600 });
    const init = (config: string, dataDir: string, force = false) =>
      run([
        'init',
        '--config',
        config,
        ...(force ? ['--force'] : []),
        '--yes',
        '--data-dir',
        dataDir,
        '--database-url',
        su,
        '--database-name',
        name,
        '--company',
        'acme',
        '--admin-email',
        'owner@acme.example',
        '--admin-password-file',
        pw,
      ]);
    let r = init(oldConfig, join(old, 'data'));
    expect(r.code, r.stderr).toBe(0);
    // The identity goes off the server, as init says.
    const identity = join(tmp, 'backup-identity.txt');
    await rename(join(old, 'etc', 'attendux-backup-identity.txt'), identity);
    r = run(['--config', oldConfig, 'config', 'set', 'backup.targets', JSON.stringify([target()])]);
    expect(r.code, r.stderr).toBe(0);
    const pool = createPool(dbUrl(name), 2);
    try {
      await seedReference(pool, { companies: 2, employees: 10, events: 2_000 });
      expect(run(['--config', oldConfig, 'backup', 'full']).code).toBe(0);
      await pool.query(`UPDATE employees SET full_name = full_name || '*' WHERE employee_number = 'E2'`);
      r = run(['--config', oldConfig, 'backup', 'incremental']);
      expect(r.code, r.stderr).toBe(0);
      r = run(['--config', oldConfig, 'backup', 'status', '--json']);
      expect(r.code, r.stdout).toBe(0);
    } finally {
      await pool.end();
    }
    const source = await tableChecksums(dbUrl(name), { exceptTenant: SYSTEM_TENANT });

    // The server is gone: config, secrets, data dir, local backups, database and roles.
    await rm(old, { recursive: true, force: true });
    await destroy();

    const fresh = join(tmp, 'new-server');
    const config = join(fresh, 'etc', 'attendux.json');
    const dr = { ATTENDUX_BACKUP_TARGETS: JSON.stringify([target()]) };
    // 1. the old config and secrets
    r = run(['restore', '--config-only', '--from', 'offsite', '-i', identity, '--config', config], dr);
    expect(r.code, r.stderr).toBe(0);
    // 2. init with the old config (keeps the restored secrets), then the old config again
    r = init(config, join(fresh, 'data'), true);
    expect(r.code, r.stderr).toBe(0);
    r = run(
      [
        '--config',
        config,
        'restore',
        '--config-only',
        '--from',
        'offsite',
        '-i',
        identity,
        '--force',
        '--yes',
      ],
      dr,
    );
    expect(r.code, r.stderr).toBe(0);
    // 3. the data, in place
    r = run([
      '--config',
      config,
      'restore',
      '--from',
      'offsite',
      '--in-place',
      '-i',
      identity,
      '--yes',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(await tableChecksums(dbUrl(name), { exceptTenant: SYSTEM_TENANT })).toEqual(source);
    // The new server works as the old one: its backups go to the target again.
    r = run(['--config', config, 'backup', 'full', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { offsite: { ok: boolean }[] }).offsite.every((o) => o.ok)).toBe(true);
  });
});
