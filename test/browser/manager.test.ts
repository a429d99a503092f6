import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import {
  checkPage,
  DESKTOP,
  haveChromium,
  openPage,
  pagesFixture,
  SCREENSHOTS,
  signIn,
} from '../helpers/browser.js';
import { login, ORIGIN, PASSWORD } from '../helpers/server.js';

type Fixture = Awaited<ReturnType<typeof pagesFixture>>;
let f: Fixture;

/** An employee of team Alpha (the manager's team) with one event today, inserted as the admin role. */
async function employeeWithEvent(
  name: string,
  event: { geofence: string; flagged: boolean; offline: boolean },
): Promise<string> {
  const a = f.fx.a;
  const e = await f.fx.admin.query<{ id: string }>(
    `INSERT INTO employees (tenant_id, full_name, team_id) VALUES ($1, $2, $3) RETURNING id`,
    [a.id, name, a.teamId],
  );
  const id = e.rows[0]!.id;
  await f.fx.admin.query(
    `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, geofence, method, flagged, offline, site_id)
     VALUES ($1, $2, 'check_in', now() - interval '1 minute', $3, 'gps', $4, $5, $6)`,
    [a.id, id, event.geofence, event.flagged, event.offline, event.geofence === 'inside' ? a.siteId : null],
  );
  return id;
}

describe.skipIf(!haveChromium)('manager and HR pages in Chromium', () => {
  beforeAll(async () => {
    f = await pagesFixture('pages_manager');
    await employeeWithEvent('Flora Flagged', { geofence: 'outside', flagged: true, offline: false });
    await employeeWithEvent('Otto Offline', { geofence: 'inside', flagged: false, offline: true });
    const carl = await employeeWithEvent('Carl Checkout', {
      geofence: 'inside',
      flagged: false,
      offline: false,
    });
    await f.fx.admin.query(
      `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, geofence, method, site_id)
       VALUES ($1, $2, 'check_out', now() - interval '30 seconds', 'inside', 'gps', $3)`,
      [f.fx.a.id, carl, f.fx.a.siteId],
    );
    await f.fx.admin.query(
      `INSERT INTO employees (tenant_id, full_name, team_id) VALUES ($1, 'Nora Notyet', $2)`,
      [f.fx.a.id, f.fx.a.teamId],
    );
    // Alex Example (E1, team Alpha) checked in inside HQ; Sam Sample (E2) is in team Beta, not the manager's.
    await f.fx.admin.query(
      `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, geofence, method, site_id)
       VALUES ($1, $2, 'check_in', now() - interval '2 minutes', 'inside', 'gps', $3),
              ($1, $4, 'check_in', now() - interval '2 minutes', 'inside', 'gps', $3)`,
      [f.fx.a.id, f.fx.a.employeeId, f.fx.a.siteId, f.fx.a.otherEmployeeId],
    );
  });
  afterAll(async () => f?.close());

  it("shows the manager's board: who is in, flagged, outside and offline, for their teams only", async () => {
    const { page, seen, context } = await openPage(f.browser, f.baseURL);
    await signIn(page, f.fx.a.slug, f.fx.a.users.manager.email, PASSWORD);
    expect(new URL(page.url()).pathname).toBe('/board');
    const row = (name: string) => page.getByRole('row').filter({ hasText: name });
    expect(await row('Alex Example').textContent()).toMatch(/In since \d\d:\d\d\s+inside HQ/);
    expect(await row('Flora Flagged').textContent()).toMatch(/outside the geofence[\s\S]*flagged/);
    expect(await row('Otto Offline').textContent()).toMatch(/offline/);
    expect(await row('Alex Example').textContent()).not.toMatch(/offline|flagged/);
    expect(await row('Carl Checkout').textContent()).toMatch(/Checked out at \d\d:\d\d/);
    expect(await row('Nora Notyet').textContent()).toMatch(/Not yet in/);
    // Sam Sample is in team Beta: not on the manager's board.
    expect(await page.getByRole('main').textContent()).not.toContain('Sam Sample');
    const summary = await page.getByRole('list', { name: 'Summary' }).textContent();
    expect(summary).toMatch(/3\s*in/);
    expect(summary).toMatch(/1\s*not yet in/);
    expect(summary).toMatch(/1\s*checked out/);
    expect(summary).toMatch(/1\s*flagged/);
    expect(summary).toMatch(/1\s*checked in offline/);
    await checkPage(page, seen, 'board');
    // The README's picture (docs/screenshots/board.png is a copy of this artifact): desktop width, no blank space.
    await page.setViewportSize(DESKTOP);
    await page.screenshot({
      path: join(SCREENSHOTS, 'board-readme.png'),
      clip: { x: 0, y: 0, width: 1280, height: 520 },
    });
    await context.close();
  });

  it('shows HR the whole company on the board', async () => {
    const { page, context } = await openPage(f.browser, f.baseURL);
    await signIn(page, f.fx.a.slug, f.fx.a.users.hr.email, PASSWORD);
    await page.goto('/board');
    expect(await page.getByRole('row').filter({ hasText: 'Sam Sample' }).textContent()).toMatch(/In since/);
    await context.close();
  });

  it('approves a correction request, and says so in words', async () => {
    const cookie = await login(f.fx.app, f.fx.a, 'employee');
    const at = new Date(Date.now() - 86_400_000).toISOString();
    const res = await f.fx.app.inject({
      method: 'POST',
      url: '/api/v1/corrections',
      headers: { cookie, origin: ORIGIN },
      payload: {
        action: 'add',
        proposedKind: 'check_in',
        proposedOccurredAt: at,
        reason: 'forgot to check in',
      },
    });
    expect(res.statusCode).toBe(201);
    const id = res.json<{ id: string }>().id;
    const { page, seen, context } = await openPage(f.browser, f.baseURL);
    await signIn(page, f.fx.a.slug, f.fx.a.users.manager.email, PASSWORD);
    await page.goto('/corrections');
    const card = page.getByRole('listitem').filter({ hasText: 'forgot to check in' });
    expect(await card.getByRole('heading').textContent()).toMatch(/Alex Example: Add a check-in at/);
    await checkPage(page, seen, 'corrections');
    await card.getByLabel(/Note for Alex Example/).fill('ok, seen on camera');
    await card.getByRole('button', { name: 'Approve' }).click();
    await page.waitForURL('**/corrections?done=approve');
    expect(await page.getByRole('status').textContent()).toMatch(/approved and the attendance changed/);
    expect(await page.getByRole('main').textContent()).toContain('No pending requests');
    const r = await f.fx.admin.query<{ status: string; decision_note: string; events: string }>(
      `SELECT status, decision_note, (SELECT count(*) FROM attendance_events WHERE correction_id = $1)::text AS events
         FROM correction_requests WHERE id = $1`,
      [id],
    );
    expect(r.rows[0]).toEqual({ status: 'approved', decision_note: 'ok, seen on camera', events: '1' });
    await page.goto('/corrections?status=approved');
    expect(await page.getByRole('main').textContent()).toContain('Note: ok, seen on camera');
    await context.close();
  });

  it('shows timesheets for a date range', async () => {
    const a = f.fx.a;
    await f.fx.admin.query(
      `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, geofence, method) VALUES
         ($1, $2, 'check_in', '2026-11-02 08:00+01', 'not_required', 'manual'),
         ($1, $2, 'check_out', '2026-11-02 17:30+01', 'not_required', 'manual')`,
      [a.id, a.employeeId],
    );
    const { page, seen, context } = await openPage(f.browser, f.baseURL);
    await signIn(page, a.slug, a.users.manager.email, PASSWORD);
    await page.goto('/timesheets');
    await page.getByLabel('From', { exact: true }).fill('2026-11-01');
    await page.getByLabel('To', { exact: true }).fill('2026-11-07');
    await page.getByRole('button', { name: 'Show timesheets' }).click();
    await page.waitForURL('**/timesheets?**');
    const row = page.getByRole('row').filter({ hasText: 'Alex Example' });
    // 9 h 30 worked: 8 h regular, 1 h 30 overtime (the default 480 minutes a day).
    expect(await row.textContent()).toMatch(/9 h 30 min\s+8 h 00 min\s+1 h 30 min/);
    // A manager is not offered the payroll export (the API allows owner, admin and HR).
    expect(await page.getByRole('button', { name: 'Download payroll CSV' }).count()).toBe(0);
    await checkPage(page, seen, 'timesheets');
    await context.close();
  });

  it('downloads the payroll export as CSV', async () => {
    const a = f.fx.a;
    const { page, context } = await openPage(f.browser, f.baseURL);
    await signIn(page, a.slug, a.users.hr.email, PASSWORD);
    await page.goto('/timesheets?from=2026-11-01&to=2026-11-07');
    const form = page.locator('form[action="/api/v1/payroll/export"]');
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      form.getByRole('button', { name: 'Download payroll CSV' }).click(),
    ]);
    expect(download.suggestedFilename()).toBe('payroll-2026-11-01-2026-11-07.csv');
    const csv = await readFile(await download.path(), 'utf8');
    const lines = csv.trim().split('\r\n');
    expect(lines[0]).toBe(
      'employee_id,employee_number,full_name,regular_minutes,overtime_minutes,hourly_rate_minor,overtime_multiplier_percent,gross_pay_minor,gross_pay,currency',
    );
    // 480 regular minutes at 20.00 + 90 overtime minutes at 150 %: 160.00 + 45.00.
    expect(lines.find((l) => l.includes('Alex Example'))).toBe(
      `${a.employeeId},E1,Alex Example,480,90,2000,150,20500,205.00,EUR`,
    );
    const audit = await f.fx.admin.query(
      `SELECT details FROM audit_log WHERE tenant_id = $1 AND action = 'payroll.export'`,
      [a.id],
    );
    expect(audit.rows).toHaveLength(1);
    await context.close();
  });
});
