import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, type Pool } from '../../src/db/pool.js';
import { ageKeygen } from '../helpers/backup.js';
import { runCli, writeTestInstall } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { seedCompany, type Company } from '../helpers/server.js';

let db: TestDatabase;
let admin: Pool;
let configPath: string;
let co: Company;
let dir: string;
const run = (args: string[]) => runCli(['--config', configPath, ...args]);

beforeAll(async () => {
  db = await createTestDatabase('dsarcli');
  admin = createPool(db.adminUrl, 2);
  configPath = await writeTestInstall(db);
  co = await seedCompany(admin, 'k'.repeat(44), 'dsar-cli');
  dir = await mkdtemp(join(tmpdir(), 'attendux-dsar-cli-'));
  await admin.query(
    `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, latitude, longitude, geofence, method)
     VALUES ($1, $2, 'check_in', now() - interval '1 day', 52.52, 13.40, 'inside', 'gps')`,
    [co.id, co.employeeId],
  );
});

afterAll(async () => {
  await admin.end();
  await db.drop();
  await rm(dir, { recursive: true, force: true });
});

/** `age -d` wants a passphrase from a terminal only: script(1) gives it one. */
async function ageDecryptWithPassphrase(file: string, out: string, passphrase: string) {
  await execa(
    'sh',
    [
      '-c',
      `(sleep 0.5; printf '%s\\n' "$P"; sleep 1) | script -qec "age -d -o '${out}' '${file}'" /dev/null`,
    ],
    { env: { P: passphrase } },
  );
}

describe('attendux dsar (the real binary)', () => {
  it('export --passphrase-file and --recipient: both open with Debian’s age -d', async () => {
    const pass = join(dir, 'pass.txt');
    await writeFile(pass, 'correct horse battery staple for alex\n', { mode: 0o600 });
    const enc = join(dir, 'alex.zip.age');
    const r = await run([
      '--json',
      'dsar',
      'export',
      '-t',
      co.slug,
      '--employee',
      co.employeeId,
      '-o',
      enc,
      '--passphrase-file',
      pass,
      '--reason',
      'access request of 2026-05-02',
    ]);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ encrypted: 'passphrase', out: enc });
    expect((await readFile(enc)).subarray(0, 21).toString()).toBe('age-encryption.org/v1');
    const plain = join(dir, 'alex.zip');
    await ageDecryptWithPassphrase(enc, plain, 'correct horse battery staple for alex');
    expect(execFileSync('unzip', ['-p', plain, 'data.json']).toString()).toContain('Alex Example');

    const { recipient } = ageKeygen(join(dir, 'alex.key'));
    const enc2 = join(dir, 'alex2.zip.age');
    const r2 = await run([
      'dsar',
      'export',
      '-t',
      co.slug,
      '--email',
      co.users.employee.email,
      '-o',
      enc2,
      '--recipient',
      recipient,
    ]);
    expect(r2.stderr).toBe('');
    expect(r2.exitCode).toBe(0);
    expect(r2.stdout).toContain('age-encrypted to a recipient');
    const plain2 = join(dir, 'alex2.zip');
    execFileSync('age', ['-d', '-i', join(dir, 'alex.key'), '-o', plain2, enc2]);
    const manifest = JSON.parse(execFileSync('unzip', ['-p', plain2, 'manifest.json']).toString());
    expect(manifest.subject.employeeId).toBe(co.employeeId);

    const { rows } = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM audit_log WHERE action = 'dsar.export' AND details->>'reason' = $1`,
      ['access request of 2026-05-02'],
    );
    expect(rows[0]!.n).toBe(1);
  });

  it('erase: --dry-run changes nothing, no --yes without a terminal refuses, --yes executes', async () => {
    const dry = await run(['dsar', 'erase', '-t', co.slug, '--employee', co.otherEmployeeId, '--dry-run']);
    expect(dry.exitCode).toBe(0);
    expect(dry.stdout).toContain('Kept under the legal hold (6 years');
    expect(dry.stdout).toContain('(dry run: nothing was changed)');
    const refused = await run(['dsar', 'erase', '-t', co.slug, '--employee', co.otherEmployeeId]);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toContain('--yes');
    const name = async () =>
      (
        await admin.query<{ n: string }>('SELECT full_name AS n FROM employees WHERE id = $1', [
          co.otherEmployeeId,
        ])
      ).rows[0]!.n;
    expect(await name()).toBe('Sam Sample');
    const receipt = join(dir, 'receipt');
    const done = await run([
      'dsar',
      'erase',
      '-t',
      co.slug,
      '--employee',
      co.otherEmployeeId,
      '--yes',
      '--receipt-out',
      receipt,
    ]);
    expect(done.exitCode).toBe(0);
    expect(done.stdout).toContain('Erasure receipt');
    expect(await name()).toMatch(/^Erased [0-9a-f]{12}$/);
    expect(JSON.parse(await readFile(`${receipt}.json`, 'utf8'))).toMatchObject({
      employeeId: co.otherEmployeeId,
    });
    expect(await readFile(`${receipt}.txt`, 'utf8')).toContain('legal basis: GDPR Art. 17(1)');
  });

  it('list shows due dates and marks; exit 1 when one is overdue; extend once', async () => {
    const { rows } = await admin.query<{ id: string }>(
      `INSERT INTO dsar_requests (tenant_id, kind, employee_id, source, received_at, due_at)
       VALUES ($1, 'erasure', $2, 'api', now() - interval '40 days', now() - interval '10 days'),
              ($1, 'export', $2, 'api', now() - interval '27 days', now() + interval '3 days') RETURNING id`,
      [co.id, co.employeeId],
    );
    const list = await run(['dsar', 'list', '-t', co.slug, '--status', 'open']);
    expect(list.exitCode).toBe(1);
    expect(list.stdout).toMatch(/OVERDUE/);
    expect(list.stdout).toMatch(/due soon/);
    expect(list.stderr).toContain('1 data subject request(s) are past their due date');
    const json = await run(['--json', 'dsar', 'list', '--overdue']);
    expect(json.exitCode).toBe(1);
    const out = JSON.parse(json.stdout) as { requests: { id: string; dueAt: string; mark: string }[] };
    expect(out.requests.map((r) => [r.id, r.mark])).toEqual([[rows[0]!.id, 'overdue']]);
    const ext = await run(['dsar', 'extend', rows[0]!.id, '--reason', 'complex request: many records']);
    expect(ext.exitCode).toBe(0);
    expect((await run(['dsar', 'list', '--overdue'])).exitCode).toBe(0);
    const twice = await run(['dsar', 'extend', rows[0]!.id, '--reason', 'again']);
    expect(twice.exitCode).toBe(1);
    expect(twice.stderr).toContain('already extended');
  });
});
