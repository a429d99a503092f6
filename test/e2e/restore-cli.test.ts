import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedReference } from '../../bench/seed.js';
import { backupFull } from '../../src/core/backup/full.js';
import { backupIncremental } from '../../src/core/backup/incremental.js';
import { connectClient, createPool, type Pool } from '../../src/db/pool.js';
import { maintenancePath, readMaintenance } from '../../src/core/maintenance.js';
import { pathExists } from '../../src/lib/fs.js';
import { ageKeygen, makeInstall, type TestInstall } from '../helpers/backup.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { databaseExists, dropDatabases, tableChecksums, urlOf } from '../helpers/restore.js';

const BIN = join(import.meta.dirname, '../../bin/attendux.js');
let db: TestDatabase;
let admin: Pool;
let inst: TestInstall;
let tmp: string;
let slug: string;
let incId: string;
const made: string[] = [];

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmp };
  delete e.ATTENDUX_BACKUP_IDENTITY;
  delete e.ATTENDUX_CONFIG;
  return { ...e, ...extra };
}

/** The real binary, no terminal attached (stdin is not a TTY: confirmations need --yes). */
function run(args: string[], extra: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, '--config', inst.configPath, ...args], {
    env: env(extra),
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Databases named `<live>_<kind>_...` (what --in-place builds beside the live one and keeps after). */
async function siblings(kind: string): Promise<string[]> {
  const c = await connectClient(db.superuserUrl);
  try {
    const { rows } = await c.query<{ datname: string }>(
      `SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY 1`,
      [`${db.name}\\_${kind}\\_%`],
    );
    return rows.map((r) => r.datname);
  } finally {
    await c.end();
  }
}

const name = (label: string) => {
  const n = `${db.name}_${label}`.slice(0, 63);
  made.push(n);
  return n;
};

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'attendux-e2e-restore-tmp-'));
  db = await createTestDatabase('e2erestore');
  admin = createPool(db.adminUrl, 2);
  await seedReference(admin, { companies: 2, employees: 20, events: 30_000 });
  slug = (await admin.query<{ slug: string }>('SELECT slug FROM tenants ORDER BY slug LIMIT 1')).rows[0]!
    .slug;
  inst = await makeInstall(db);
  await backupFull({ configPath: inst.configPath });
  await admin.query(`UPDATE employees SET full_name = full_name || '!' WHERE employee_number = 'E1'`);
  incId = (await backupIncremental({ configPath: inst.configPath })).sidecar.id;
});

afterAll(async () => {
  await admin.end();
  await dropDatabases(db.superuserUrl, made);
  await db.drop();
  await inst.cleanup();
  await rm(tmp, { recursive: true, force: true });
});

describe('attendux restore (binary)', () => {
  it('prints the plan with --dry-run --json and creates nothing', async () => {
    const into = name('dry');
    const r = run(['restore', '--into', into, '--dry-run', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as {
      dryRun: boolean;
      plan: { steps: { id: string; bytes: number }[]; effect: string };
    };
    expect(out.dryRun).toBe(true);
    expect(out.plan.steps.map((s) => s.id)[1]).toBe(incId);
    expect(out.plan.steps.every((s) => s.bytes > 0)).toBe(true);
    expect(out.plan.effect).toMatch(new RegExp(`creates database ${into}`));
    expect(await databaseExists(db, into)).toBe(false);
  });

  it('restores into a new database and says how to switch the server to it', async () => {
    const into = name('new');
    const r = run(['restore', '--into', into, '--identity', inst.identityFile]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`restored 2 backup\\(s\\) to .* into database ${into}`));
    expect(r.stdout).toMatch(/point database.url and database.adminUrl at it/);
    // The live audit log also holds the incremental's own entry, written after its snapshot.
    const withoutAudit = (x: Record<string, string>) => Object.entries(x).filter(([t]) => t !== 'audit_log');
    expect(withoutAudit(await tableChecksums(urlOf(db, into)))).toEqual(
      withoutAudit(await tableChecksums(db.adminUrl)),
    );
  });

  it('takes the identity from $ATTENDUX_BACKUP_IDENTITY', () => {
    const into = name('envid');
    const r = run(['restore', '--into', into, '--json'], { ATTENDUX_BACKUP_IDENTITY: inst.identityFile });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as { database: string }).database).toBe(into);
  });

  it('refuses a non-empty target without --force: exit 1 with the reason and a hint', () => {
    const into = name('busy');
    expect(run(['restore', '--into', into, '-i', inst.identityFile]).code).toBe(0);
    const r = run(['restore', '--into', into, '-i', inst.identityFile]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `attendux: database ${into} already exists and holds tables\n  hint: pick another --into name, or pass --force to replace it\n`,
    );
  });

  it('asks before --force replaces a target and refuses without --yes when there is no terminal: exit 2', () => {
    const into = made.find((m) => m.endsWith('_busy'))!;
    const r = run(['restore', '--into', into, '-i', inst.identityFile, '--force']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /REPLACES every table of the existing database .* \(refusing without --yes: no terminal/,
    );
    expect(run(['restore', '--into', into, '-i', inst.identityFile, '--force', '--yes']).code).toBe(0);
  });

  it('refuses without an identity: exit 2, naming the flag and the variable', () => {
    const r = run(['restore', '--into', name('noid')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^attendux: restore needs the backup identity \(the age private key\) to decrypt the backups\n/,
    );
    expect(r.stderr).toMatch(/--identity FILE or set \$ATTENDUX_BACKUP_IDENTITY/);
  });

  it('refuses a wrong identity: exit 1, and no database is created', async () => {
    const other = join(inst.dir, 'e2e-other.txt');
    ageKeygen(other);
    const into = name('wrongid');
    const r = run(['restore', '--into', into, '-i', other]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no identity matches any recipient of this file/);
    expect(await databaseExists(db, into)).toBe(false);
  });

  it('refuses a corrupt file: exit 1 naming the backup, no database created, the live one unchanged', async () => {
    const file = join(inst.backupDir, `${incId}.tar.age`);
    const original = await readFile(file);
    const bad = Buffer.from(original);
    bad[bad.length - 40]! ^= 0x10;
    await writeFile(file, bad);
    const before = await tableChecksums(db.adminUrl);
    const into = name('corrupt');
    try {
      const r = run(['restore', '--into', into, '-i', inst.identityFile]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^attendux: backup ${incId} \\(link 2 of 2\\) is corrupt: `));
    } finally {
      await writeFile(file, original);
    }
    expect(await databaseExists(db, into)).toBe(false);
    expect(await tableChecksums(db.adminUrl)).toEqual(before);
  });

  it('rejects conflicting flags and bad times as usage errors: exit 2', () => {
    expect(run(['restore', '--into', 'x', '--in-place']).stderr).toMatch(
      /--into and --in-place cannot be combined/,
    );
    expect(run(['restore', '--into', 'x', '--in-place']).code).toBe(2);
    const bad = run(['restore', '--at', 'last tuesday']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--at "last tuesday" is not a time/);
    expect(run(['restore', '--drop-old']).code).toBe(2);
  });

  it('previews --in-place with --dry-run and refuses it without --yes when there is no terminal', () => {
    const dry = run(['restore', '--in-place', '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(new RegExp(`REPLACES the live database ${db.name}`));
    const r = run(['restore', '--in-place', '-i', inst.identityFile]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/refusing without --yes/);
  });

  it('previews and restores one company with --tenant', () => {
    const dry = run(['restore', '--tenant', slug, '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(new RegExp(`REPLACES every row of company ${slug}`));
    expect(run(['restore', '--tenant', slug, '-i', inst.identityFile]).code).toBe(2);
    const r = run(['restore', '--tenant', slug, '-i', inst.identityFile, '--yes', '--json']);
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as { slug: string }).slug).toBe(slug);
  });

  it('runs a drill: a JSON report and exit 0 when every check passes', () => {
    const r = run(['restore', '--drill', '--json', '-i', inst.identityFile]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { ok: boolean; checks: { name: string; ok: boolean }[] };
    expect(out.ok).toBe(true);
    expect(out.checks.length).toBe(9);
    expect(out.checks[8]!.name).toBe('security-ledger');
  });

  it('runs a drill on a damaged backup: the report once, then exit 1', async () => {
    const file = join(inst.backupDir, `${incId}.tar.age`);
    const original = await readFile(file);
    await writeFile(file, original.subarray(0, original.length - 5000));
    try {
      const r = run(['restore', '--drill', '-i', inst.identityFile]);
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(/^restore drill FAILED/);
      expect(r.stdout).toMatch(/FAIL restore: /);
      expect(r.stderr).toMatch(/^attendux: restore drill failed: restore: /);
    } finally {
      await writeFile(file, original);
    }
  });

  it('a restore killed mid-load leaves the live database unchanged and its plaintext is swept by the next run', async () => {
    const before = await tableChecksums(db.adminUrl);
    const into = name('killed');
    const child = spawn(
      process.execPath,
      [BIN, '--config', inst.configPath, 'restore', '--into', into, '-i', inst.identityFile],
      {
        env: env(),
        stdio: 'ignore',
      },
    );
    // Kill it once it has created the target database, i.e. after decrypting and while loading.
    for (let i = 0; i < 400 && !(await databaseExists(db, into)); i++)
      await new Promise((r) => setTimeout(r, 10));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    expect(await databaseExists(db, into)).toBe(true);
    expect((await readdir(tmp)).filter((n) => n.startsWith(`attendux-restore-${child.pid}-`))).toHaveLength(
      1,
    );
    expect(await tableChecksums(db.adminUrl)).toEqual(before);
    expect(run(['restore', '--into', name('afterkill'), '-i', inst.identityFile]).code).toBe(0);
    expect((await readdir(tmp)).filter((n) => n.startsWith('attendux-restore-'))).toEqual([]);
  });
});

describe('attendux restore --in-place killed mid-way (binary)', () => {
  it('leaves the live database unchanged and a maintenance file the server ignores; the next run completes', async () => {
    const before = await tableChecksums(db.adminUrl);
    const child = spawn(
      process.execPath,
      [BIN, '--config', inst.configPath, 'restore', '--in-place', '--yes', '-i', inst.identityFile],
      { env: env(), stdio: 'ignore' },
    );
    // Kill it while it builds the new database beside the live one.
    for (let i = 0; i < 600 && !(await siblings('restore')).length; i++)
      await new Promise((r) => setTimeout(r, 10));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    made.push(...(await siblings('restore')));
    expect(await tableChecksums(db.adminUrl)).toEqual(before);
    // The file is left behind, but its writer is gone, so the server does not stay in maintenance.
    expect(await pathExists(maintenancePath(inst.dataDir))).toBe(true);
    expect(await readMaintenance(inst.dataDir)).toBeUndefined();

    const r = run(['restore', '--in-place', '--yes', '--drop-old', '-i', inst.identityFile]);
    expect(r.code).toBe(0);
    expect(await pathExists(maintenancePath(inst.dataDir))).toBe(false);
    expect(await siblings('old')).toEqual([]);
  });
});

describe('attendux restore of a backup from a newer schema (binary)', () => {
  it('refuses it: exit 1 naming the version it needs', async () => {
    const future = await createTestDatabase('future');
    const pool = createPool(future.adminUrl, 1);
    const fi = await makeInstall(future);
    try {
      await pool.query(
        `INSERT INTO pgmigrations (name, run_on) VALUES ('9999_from-the-future', now() + interval '1 day')`,
      );
      await backupFull({ configPath: fi.configPath });
      const r = spawnSync(
        process.execPath,
        [BIN, '--config', fi.configPath, 'restore', '-i', fi.identityFile],
        {
          env: env(),
          encoding: 'utf8',
        },
      );
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(
        /^attendux: backup full-\S+ was made with schema version 9999_from-the-future, which this attendux does not know \(newest known: \S+\)\n  hint: install attendux 0\.1\.0 or newer/,
      );
    } finally {
      await pool.end();
      await future.drop();
      await fi.cleanup();
    }
  });
});
