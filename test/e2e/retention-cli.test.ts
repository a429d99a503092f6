import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, type Pool } from '../../src/db/pool.js';
import { makeInstall, type TestInstall } from '../helpers/backup.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { seedCompany, type Company } from '../helpers/server.js';

const BIN = join(import.meta.dirname, '../../bin/attendux.js');

let db: TestDatabase;
let admin: Pool;
let inst: TestInstall;
let hmacKey: string;
let tmp: string;

/** The real binary as cron runs it: no terminal, nothing on stdin. */
function run(...args: string[]) {
  return execa('node', [BIN, '--config', inst.configPath, ...args], {
    reject: false,
    stdin: 'ignore',
    env: { ATTENDUX_BACKUP_IDENTITY: '' },
  });
}

beforeAll(async () => {
  db = await createTestDatabase('retcli');
  admin = createPool(db.adminUrl, 2);
  inst = await makeInstall(db);
  hmacKey = (JSON.parse(await readFile(inst.secretsPath, 'utf8')) as { apiKeyHmacKey: string }).apiKeyHmacKey;
  tmp = await mkdtemp(join(tmpdir(), 'attendux-e2e-retention-'));
});

afterAll(async () => {
  await admin.end();
  await db.drop();
  await inst.cleanup();
  await rm(tmp, { recursive: true, force: true });
});

/** 5 events each of 4 years, 200 days and 1 day ago, with a position; retention 3 years / 90 days. */
async function company(slug: string): Promise<Company> {
  const co = await seedCompany(admin, hmacKey, slug);
  await admin.query(
    `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, latitude, longitude, accuracy_m,
                                    geofence, method)
     SELECT $1, $2, 'check_in', now() - a - i * interval '1 hour', 48.1, 11.5, 8, 'inside', 'gps'
       FROM unnest(ARRAY[interval '4 years', interval '200 days', interval '1 day']) a, generate_series(1, 5) i`,
    [co.id, co.employeeId],
  );
  await admin.query(
    `INSERT INTO tenant_settings (tenant_id, key, value)
     VALUES ($1, 'retention.attendanceYears', '3'), ($1, 'retention.locationDays', '90'), ($1, 'dsar.holdYears', '0')`,
    [co.id],
  );
  return co;
}

async function eventIds(tenantId: string, where = 'true'): Promise<string[]> {
  const { rows } = await admin.query<{ id: string }>(
    `SELECT id::text FROM attendance_events WHERE tenant_id = $1 AND ${where} ORDER BY id::bigint`,
    [tenantId],
  );
  return rows.map((r) => r.id);
}

const md5 = (ids: string[]) => (ids.length ? createHash('md5').update(ids.join(',')).digest('hex') : '');

describe('attendux retention apply (binary)', () => {
  it('--dry-run prints the plan; apply deletes and strips exactly those events; cron is quiet', async () => {
    const co = await company('ret-cli');
    const dry = await run('--json', 'retention', 'apply', '--tenant', co.slug, '--dry-run');
    expect(dry.exitCode, dry.stderr).toBe(0);
    const plan = (JSON.parse(dry.stdout) as { plan: { tenants: Record<string, unknown>[] } }).plan
      .tenants[0]!;
    expect(plan).toMatchObject({ slug: co.slug, deleteEvents: 5, stripEvents: 5, heldEvents: 0 });
    const old = await eventIds(co.id, `occurred_at < '${String(plan.deleteBefore)}'`);
    const positioned = await eventIds(
      co.id,
      `occurred_at < '${String(plan.stripBefore)}' AND occurred_at >= '${String(plan.deleteBefore)}'`,
    );
    // The plan names the same events, by count and by id fingerprint.
    expect(plan.deleteFingerprint).toBe(md5(old));
    expect(plan.stripFingerprint).toBe(md5(positioned));
    expect(await eventIds(co.id)).toHaveLength(15);

    const noTty = await run('retention', 'apply', '--tenant', co.slug);
    expect(noTty.exitCode).toBe(2);
    expect(noTty.stderr).toMatch(/--yes/);

    const cron = await run('--quiet', 'retention', 'apply', '--yes');
    expect(cron.exitCode, cron.stderr).toBe(0);
    expect(cron.stdout).toBe('');
    expect(cron.stderr).toBe('');
    const left = await eventIds(co.id);
    expect(left.filter((i) => old.includes(i))).toEqual([]);
    expect(left).toHaveLength(10);
    expect(await eventIds(co.id, 'latitude IS NOT NULL')).toEqual(
      left.filter((i) => !positioned.includes(i)),
    );
    const again = await run('--json', 'retention', 'apply', '--yes');
    expect((JSON.parse(again.stdout) as { tenants: unknown[] }).tenants).toEqual([]);
  });

  it('the schedule job runs exactly this command line', async () => {
    const { DEFAULT_JOBS } = await import('../../src/core/schedule/jobs.js');
    const job = DEFAULT_JOBS.find((j) => j.id === 'retention-apply')!;
    expect(job.args).toEqual(['retention', 'apply', '--yes']);
    // `schedule exec` runs it only when this command line exists in the binary's command tree.
    const { buildProgram } = await import('../../src/cli/main.js');
    const { hasCommandOf } = await import('../../src/cli/commands/schedule.js');
    expect(hasCommandOf(buildProgram())(job.args)).toBe(true);
    const show = await run('--json', 'schedule', 'show');
    const jobs = (JSON.parse(show.stdout) as { jobs: { id: string; available: boolean }[] }).jobs;
    expect(jobs.find((j) => j.id === 'retention-apply')!.available).toBe(true);
  });
});

describe('attendux tenant delete (binary)', () => {
  it('previews, wants the typed slug, deletes every row and keeps the audit log', async () => {
    const co = await company('del-cli');
    // A register entry names the employee without ON DELETE CASCADE: the deletion orders the tables itself.
    await admin.query(
      `INSERT INTO dsar_requests (tenant_id, kind, employee_id, source, due_at)
       VALUES ($1, 'export', $2, 'cli', now() + interval '1 month')`,
      [co.id, co.employeeId],
    );
    const dry = await run('--json', 'tenant', 'delete', co.slug, '--dry-run');
    expect(dry.exitCode, dry.stderr).toBe(0);
    const preview = JSON.parse(dry.stdout) as { rows: Record<string, number>; total: number };
    expect(preview.rows).toMatchObject({
      attendance_events: 15,
      dsar_requests: 1,
      employees: 2,
      users: 5,
      tenants: 1,
    });
    expect((await run('tenant', 'delete', co.slug)).exitCode).toBe(2);
    expect((await run('tenant', 'delete', co.slug, '--yes')).exitCode).toBe(2);
    const wrong = await run('tenant', 'delete', co.slug, '--yes', '--confirm-slug', 'del-cl');
    expect(wrong.exitCode).toBe(1);
    expect(wrong.stderr).toMatch(/not the slug/);
    expect(await eventIds(co.id)).toHaveLength(15);
    const r = await run('--json', 'tenant', 'delete', co.slug, '--yes', '--confirm-slug', co.slug);
    expect(r.exitCode, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { total: number }).total).toBe(preview.total);
    const { rows } = await admin.query('SELECT * FROM attendux_tenant_rows($1) WHERE n > 0', [co.id]);
    expect(rows).toEqual([]);
    const audit = await run('--json', 'audit', 'verify');
    expect(audit.exitCode, audit.stdout + audit.stderr).toBe(0);
    // The ledger mirror (what a restore on a new server re-applies) has the deletion.
    const mirror = await readFile(join(inst.dataDir, 'security-ledger.jsonl'), 'utf8');
    expect(mirror).toContain(`"kind":"tenant.deleted","entityId":"${co.id}"`);
  });
  it('on a terminal, asks for the slug after the preview and deletes only when it is typed exactly', async () => {
    const co = await company('del-tty');
    // A terminal for the binary (script(1) gives it a pty; the answer comes in as typed).
    const typed = (answer: string) =>
      execa(
        'script',
        ['-qec', `node ${BIN} --config ${inst.configPath} tenant delete ${co.slug}`, '/dev/null'],
        { input: `${answer}\r`, reject: false, env: { ATTENDUX_BACKUP_IDENTITY: '' } },
      );
    const wrong = await typed('del-tt');
    expect(wrong.exitCode).toBe(1);
    expect(wrong.stdout).toContain('attendance_events');
    expect(wrong.stdout).toContain('not the slug');
    expect(await eventIds(co.id)).toHaveLength(15);
    const right = await typed(co.slug);
    expect(right.exitCode, right.stdout).toBe(0);
    expect(right.stdout).toMatch(/deleted company del-tty/);
    expect(await eventIds(co.id)).toEqual([]);
  });
});

describe('attendux tenant export (binary)', () => {
  it('writes one zip per company: per table and per person, with a manifest of SHA-256s and no secrets', async () => {
    const co = await company('exp-cli');
    const other = await company('exp-other');
    const out = join(tmp, 'exp.zip');
    const r = await run('tenant', 'export', co.slug, '--out', out);
    expect(r.exitCode, r.stderr).toBe(0);
    const names = execFileSync('unzip', ['-Z1', out], { encoding: 'utf8' }).trim().split('\n');
    for (const n of ['manifest.json', 'README.txt', 'tables/attendance_events.csv', 'tables/employees.csv'])
      expect(names).toContain(n);
    expect(names).toContain(`people/${co.employeeId}/attendance-events.csv`);
    expect(names).toContain(`people/${co.employeeId}/data.json`);
    const manifest = JSON.parse(
      execFileSync('unzip', ['-p', out, 'manifest.json'], { encoding: 'utf8' }),
    ) as {
      tenant: { id: string };
      files: { name: string; sha256: string; bytes: number }[];
    };
    expect(manifest.tenant.id).toBe(co.id);
    for (const f of manifest.files) {
      const body = execFileSync('unzip', ['-p', out, f.name]);
      expect(createHash('sha256').update(body).digest('hex'), f.name).toBe(f.sha256);
      expect(body.length).toBe(f.bytes);
      const text = body.toString();
      expect(text).not.toContain(other.id);
      expect(text).not.toContain('$2b$');
    }
    const events = execFileSync('unzip', ['-p', out, 'tables/attendance_events.csv'], { encoding: 'utf8' });
    expect(events.trim().split('\n')).toHaveLength(16);
    const mine = execFileSync('unzip', ['-p', out, `people/${co.otherEmployeeId}/attendance-events.csv`], {
      encoding: 'utf8',
    });
    expect(mine.trim().split('\n')).toHaveLength(1);
    const emp = execFileSync('unzip', ['-p', out, 'tables/employees.csv'], { encoding: 'utf8' });
    expect(emp.split('\n')[0]).toContain('face_template_present');
    expect(emp.split('\n')[0]).not.toMatch(/face_template,/);
  });

  it('encrypts to a passphrase and to a recipient; both open with the age CLI', async () => {
    const co = await company('exp-age');
    const pass = join(tmp, 'pass.txt');
    await writeFile(pass, 'correct horse battery staple export\n');
    const enc = join(tmp, 'p.zip.age');
    const r = await run('tenant', 'export', co.slug, '--out', enc, '--passphrase-file', pass);
    expect(r.exitCode, r.stderr).toBe(0);
    const plain = join(tmp, 'p.zip');
    // age reads a passphrase from the terminal only: give it one.
    execFileSync('script', ['-qec', `age -d -o ${plain} ${enc}`, '/dev/null'], {
      input: 'correct horse battery staple export\n',
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    expect(execFileSync('unzip', ['-Z1', plain], { encoding: 'utf8' })).toContain('manifest.json');
    const enc2 = join(tmp, 'r.zip.age');
    const r2 = await run('tenant', 'export', co.slug, '--out', enc2, '--recipient', inst.recipient);
    expect(r2.exitCode, r2.stderr).toBe(0);
    const plain2 = join(tmp, 'r.zip');
    execFileSync('age', ['-d', '-i', inst.identityFile, '-o', plain2, enc2]);
    expect(execFileSync('unzip', ['-Z1', plain2], { encoding: 'utf8' })).toContain('tables/users.csv');
  });
});
