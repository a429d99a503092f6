import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, type Pool } from '../../src/db/pool.js';
import { findSubject } from '../../src/db/queries/dsar.js';
import { migrationFiles } from '../../src/db/migrate.js';
import { writeExportFile } from '../../src/core/dsar/zip.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { seedCompany, type Company } from '../helpers/server.js';

let db: TestDatabase;
let admin: Pool;
let co: Company;
let dir: string;

beforeAll(async () => {
  db = await createTestDatabase('dsarexp');
  admin = createPool(db.adminUrl, 2);
  co = await seedCompany(admin, 'k'.repeat(44), 'dsar-exp');
  dir = await mkdtemp(join(tmpdir(), 'attendux-dsar-'));
  await admin.query(
    `UPDATE employees SET email = 'alex@example.org', face_template = '\\x0102', face_key_id = 'k1',
                     face_enrolled_at = '2026-03-01T08:00:00Z' WHERE id = $1`,
    [co.employeeId],
  );
  // Two days of work for Alex, with a position; one event of Sam that must not appear.
  await admin.query(
    `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, latitude, longitude, accuracy_m,
                                    site_id, geofence, distance_m, method, device_id)
     VALUES ($1, $2, 'check_in', '2026-03-02T08:00:00Z', 52.5201, 13.4051, 5, $4, 'inside', 12, 'gps', 'dev-alex'),
            ($1, $2, 'check_out', '2026-03-02T17:30:00Z', 52.5202, 13.4052, 6, $4, 'inside', 15, 'gps', 'dev-alex'),
            ($1, $2, 'check_in', '2026-04-01T08:00:00Z', NULL, NULL, NULL, NULL, 'unknown', NULL, 'kiosk', NULL),
            ($1, $2, 'check_out', '2026-04-01T12:00:00Z', NULL, NULL, NULL, NULL, 'unknown', NULL, 'kiosk', NULL),
            ($1, $3, 'check_in', '2026-03-02T09:00:00Z', 48.1, 11.5, 9, NULL, 'outside', 900, 'gps', 'dev-sam')`,
    [co.id, co.employeeId, co.otherEmployeeId, co.siteId],
  );
  await admin.query(
    `INSERT INTO correction_requests (tenant_id, employee_id, requested_by, action, proposed_kind, proposed_occurred_at, reason)
     VALUES ($1, $2, $3, 'add', 'check_out', '2026-04-01T16:00:00Z', 'forgot to check out, left at 16:00')`,
    [co.id, co.employeeId, co.users.employee.id],
  );
});

afterAll(async () => {
  await admin.end();
  await db.drop();
  await rm(dir, { recursive: true, force: true });
});

const unzip = (zip: string, name: string) => execFileSync('unzip', ['-p', zip, name]).toString();

describe('dsar export', () => {
  it('writes the subject’s data and nothing of anyone else, with checksums in the manifest', async () => {
    const [subject] = await findSubject(admin, co.id, { email: 'ALEX@example.org' });
    expect(subject!.employeeId).toBe(co.employeeId);
    const out = join(dir, 'alex.zip');
    const m = await writeExportFile(admin, subject!, out, {
      requestId: '11111111-1111-4111-8111-111111111111',
      tenantSlug: co.slug,
      overtime: { dailyMinutes: 480, multiplierPercent: 150 },
      holdYears: 6,
      generatedAt: new Date('2026-05-01T00:00:00Z'),
      pageSize: 1,
    });
    expect((await readdir(dir)).filter((f) => f.endsWith('.part'))).toEqual([]);
    const names = execFileSync('zipinfo', ['-1', out]).toString().trim().split('\n');
    expect(names).toEqual([
      'data.json',
      'attendance-events.csv',
      'timesheets.csv',
      'payroll-lines.csv',
      'corrections.csv',
      'audit-events.csv',
      'README.txt',
      'manifest.json',
    ]);
    const manifest = JSON.parse(unzip(out, 'manifest.json')) as typeof m;
    expect(manifest).toMatchObject({
      requestId: m.requestId,
      tenant: { slug: co.slug },
      // the newest migration (0008_dsar or a later one)
      schemaVersion: (await migrationFiles()).at(-1),
    });
    expect(manifest.files.map((f) => f.name).sort()).toEqual(
      names.filter((n) => n !== 'manifest.json').sort(),
    );
    for (const f of manifest.files) {
      const body = execFileSync('unzip', ['-p', out, f.name]);
      expect(createHash('sha256').update(body).digest('hex'), f.name).toBe(f.sha256);
    }
    const data = JSON.parse(unzip(out, 'data.json')) as {
      employee: unknown;
      biometrics: unknown;
      users: unknown;
      attendanceEvents: unknown[];
    };
    expect(data.employee).toMatchObject({
      fullName: 'Alex Example',
      email: 'alex@example.org',
      employeeNumber: 'E1',
    });
    expect(data.biometrics).toEqual({
      faceTemplateExists: true,
      faceEnrolledAt: '2026-03-01T08:00:00+00:00',
    });
    expect(JSON.stringify(data)).not.toContain('0102');
    expect(data.users).toEqual([
      expect.objectContaining({ email: co.users.employee.email, role: 'employee' }),
    ]);
    expect(data.attendanceEvents).toHaveLength(4);
    expect(data.attendanceEvents[0]).toMatchObject({
      latitude: 52.5201,
      longitude: 13.4051,
      geofence: 'inside',
      site: 'HQ',
    });
    const all = names.map((n) => unzip(out, n)).join('\n');
    for (const other of ['Sam Sample', 'dev-sam', '48.1', co.otherEmployeeId])
      expect(all).not.toContain(other);
    const events = unzip(out, 'attendance-events.csv').trim().split('\n');
    expect(events).toHaveLength(5);
    expect(events[1]).toContain('52.5201');
    expect(unzip(out, 'timesheets.csv').trim().split('\n')).toEqual([
      'day,worked_minutes,regular_minutes,overtime_minutes',
      '2026-03-02,570,480,90',
      '2026-04-01,240,240,0',
    ]);
    // 480 min at 20.00 + 90 min at 150 %: 160.00 + 45.00 = 205.00
    expect(unzip(out, 'payroll-lines.csv')).toContain('2026-03,480,90,2000,150,20500,EUR');
    expect(unzip(out, 'corrections.csv')).toContain('forgot to check out');
  });
});
