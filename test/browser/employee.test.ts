import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { join } from 'node:path';
import { checkPage, haveChromium, openPage, pagesFixture, SCREENSHOTS, signIn } from '../helpers/browser.js';
import { PASSWORD } from '../helpers/server.js';
import { addDays, dayIn, mondayOf } from '../../src/lib/time-zone.js';
import { dayLabel } from '../../src/server/pages/my-week.js';

type Fixture = Awaited<ReturnType<typeof pagesFixture>>;
let f: Fixture;

/** HQ of the seeded company is at 52.52, 13.405 with a 100 m radius. */
const AT_HQ = { latitude: 52.52, longitude: 13.405 };
const README_SHOT = { width: 360, height: 560 };
const FAR = { latitude: 52.53, longitude: 13.405 }; // about 1.1 km north

async function asEmployee(geolocation?: { latitude: number; longitude: number }) {
  const o = await openPage(f.browser, f.baseURL, geolocation ? { geolocation } : {});
  await signIn(o.page, f.fx.a.slug, f.fx.a.users.employee.email, PASSWORD);
  return o;
}
/** The page's offline queue in localStorage (its key is on the check-in section), read or replaced. */
async function storage(page: Page, op: 'get' | 'set', value?: string): Promise<string | null> {
  const key = JSON.stringify(await page.locator('#checkin').getAttribute('data-queue-key'));
  return page.evaluate<string | null>(
    op === 'get'
      ? `localStorage.getItem(${key})`
      : `localStorage.setItem(${key}, ${JSON.stringify(value)}), null`,
  );
}
const text = (page: Page, id: string) => page.locator(`#${id}`).textContent();
const lastEvent = async () =>
  (
    await f.fx.admin.query<{
      offline: boolean;
      occurred_at: Date;
      recorded_at: Date;
      flagged: boolean;
      geofence: string;
    }>(
      'SELECT offline, occurred_at, recorded_at, flagged, geofence FROM attendance_events WHERE tenant_id = $1 ORDER BY id DESC LIMIT 1',
      [f.fx.a.id],
    )
  ).rows[0]!;

describe.skipIf(!haveChromium)('the employee check-in page in Chromium', () => {
  beforeAll(async () => {
    f = await pagesFixture('pages_employee');
  });
  afterAll(async () => f?.close());

  it('checks in inside the HQ geofence and says so', async () => {
    const { page, seen, context } = await asEmployee(AT_HQ);
    expect(new URL(page.url()).pathname).toBe('/checkin');
    await expect
      .poll(() => text(page, 'position'))
      .toMatch(/Nearest site: HQ, 0 m away, inside its geofence/);
    await page.getByRole('button', { name: 'Check in' }).click();
    await expect.poll(() => text(page, 'result')).toMatch(/^Checked in at \d\d:\d\d, inside HQ\.$/);
    expect(await lastEvent()).toMatchObject({ offline: false, flagged: false, geofence: 'inside' });
    await checkPage(page, seen, 'checkin');
    // The README's picture (docs/screenshots/checkin.png is copied from it): the top of the page on a phone.
    await page.screenshot({
      path: join(SCREENSHOTS, 'checkin-readme.png'),
      clip: { x: 0, y: 0, ...README_SHOT },
    });
    await page.getByRole('button', { name: 'Check out' }).click();
    await expect.poll(() => text(page, 'result')).toMatch(/^Checked out at \d\d:\d\d, inside HQ\.$/);
    await context.close();
  });

  it('says when the position is outside, and that the check is recorded and flagged', async () => {
    const { page, context } = await asEmployee(FAR);
    await expect
      .poll(() => text(page, 'position'))
      .toMatch(/Nearest site: HQ, 1112 m away, outside its geofence/);
    expect(await page.getByRole('main').textContent()).toContain(
      'Outside every site, your check-in is recorded and flagged',
    );
    await page.getByRole('button', { name: 'Check in' }).click();
    await expect
      .poll(() => text(page, 'result'))
      .toMatch(/^Checked in at \d\d:\d\d, outside HQ \(1112 m away\), flagged for review\.$/);
    expect(await lastEvent()).toMatchObject({ flagged: true, geofence: 'outside' });
    await context.close();
  });

  it('says when the position is refused, what the company then does, and checks in flagged', async () => {
    const { page, seen, context } = await asEmployee();
    await expect.poll(() => text(page, 'position')).toMatch(/did not share your position/);
    expect(await page.locator('#no-position').isVisible()).toBe(true);
    expect(await text(page, 'no-position')).toMatch(/records check-ins without a position as flagged/);
    await checkPage(page, seen, 'checkin-no-position');
    await page.getByRole('button', { name: 'Check in' }).click();
    await expect
      .poll(() => text(page, 'result'))
      .toMatch(/^Checked in at \d\d:\d\d, without a position, flagged for review\.$/);
    await context.close();
  });

  it('queues a check-in while offline and sends it when back online, with the device time', async () => {
    const { page, context } = await asEmployee(AT_HQ);
    await expect.poll(() => text(page, 'position')).toMatch(/inside its geofence/);
    await context.setOffline(true);
    await page.getByRole('button', { name: 'Check in' }).click();
    await expect
      .poll(() => text(page, 'result'))
      .toMatch(/^No network: your check-in at \d\d:\d\d is queued/);
    expect(await text(page, 'queue')).toMatch(/1 check queued on this phone/);
    const queue = JSON.parse((await storage(page, 'get')) ?? '[]') as { deviceTime: string }[];
    expect(queue).toHaveLength(1);
    const deviceTime = queue[0]!.deviceTime;
    // Received a while later than it happened on the phone.
    await new Promise((r) => setTimeout(r, 1500));
    await context.setOffline(false);
    await expect
      .poll(() => text(page, 'result'), { timeout: 10_000 })
      .toMatch(/^Sent your queued check-in from \d\d:\d\d: inside HQ\.$/);
    expect(await text(page, 'queue')).toBe('');
    const ev = await lastEvent();
    expect(ev.offline).toBe(true);
    expect(ev.occurred_at.toISOString()).toBe(deviceTime);
    expect(ev.recorded_at.getTime() - ev.occurred_at.getTime()).toBeGreaterThanOrEqual(1000);
    await context.close();
  });

  it('sends a queue left from an earlier visit when the page loads', async () => {
    const { page, context } = await asEmployee(AT_HQ);
    await expect.poll(() => text(page, 'position')).toMatch(/inside its geofence/);
    const deviceTime = new Date(Date.now() - 3_600_000).toISOString();
    await storage(page, 'set', JSON.stringify([{ kind: 'check_out', body: {}, deviceTime }]));
    await page.reload();
    await expect
      .poll(() => text(page, 'result'))
      .toMatch(/^Sent your queued check-out from \d\d:\d\d: without a position, flagged for review\.$/);
    const ev = await lastEvent();
    expect(ev.offline).toBe(true);
    expect(ev.occurred_at.toISOString()).toBe(deviceTime);
    await context.close();
  });

  it('follows the company settings: a required position disables the buttons, reject refuses outside', async () => {
    const set = (key: string, value: unknown) =>
      f.fx.admin.query(
        `INSERT INTO tenant_settings (tenant_id, key, value, updated_at, updated_by) VALUES ($1, $2, $3, now(), 'test')
         ON CONFLICT (tenant_id, key) DO UPDATE SET value = EXCLUDED.value`,
        [f.fx.a.id, key, JSON.stringify(value)],
      );
    await set('geofence.requirePosition', true);
    await set('geofence.mode', 'reject');
    try {
      const refused = await asEmployee();
      await expect.poll(() => text(refused.page, 'position')).toMatch(/did not share your position/);
      expect(await text(refused.page, 'no-position')).toMatch(/requires a position to check in or out/);
      expect(await refused.page.getByRole('button', { name: 'Check in' }).isDisabled()).toBe(true);
      await refused.context.close();
      const far = await asEmployee(FAR);
      expect(await far.page.getByRole('main').textContent()).toContain(
        'Outside every site, your company refuses the check-in.',
      );
      await expect.poll(() => text(far.page, 'position')).toMatch(/outside its geofence/);
      await far.page.getByRole('button', { name: 'Check in' }).click();
      await expect
        .poll(() => text(far.page, 'result'))
        .toBe('Not checked in: the position is 1112 m from the nearest site, outside its radius.');
      await far.context.close();
    } finally {
      await f.fx.admin.query(`DELETE FROM tenant_settings WHERE tenant_id = $1 AND key LIKE 'geofence.%'`, [
        f.fx.a.id,
      ]);
    }
  });

  it('tells a user who is not an employee that there is nobody to check in', async () => {
    const { page, seen, context } = await openPage(f.browser, f.baseURL);
    await signIn(page, f.fx.a.slug, f.fx.a.users.manager.email, PASSWORD);
    seen.reset();
    await page.goto('/checkin');
    expect(await page.getByRole('main').textContent()).toContain('Your user is not linked to an employee');
    await checkPage(page, seen, 'checkin-unlinked');
    const res = await page.goto('/timesheet?week=nonsense');
    expect(res?.status()).toBe(200); // the manager has no timesheet of their own: said, not an error
    expect(await page.getByRole('main').textContent()).toContain('no timesheet of yours');
    await context.close();
  });

  it('tells that check-in needs JavaScript when it is off', async () => {
    const context = await f.browser.newContext({ baseURL: f.baseURL, javaScriptEnabled: false });
    const page = await context.newPage();
    await signIn(page, f.fx.a.slug, f.fx.a.users.employee.email, PASSWORD);
    expect(await page.getByRole('main').textContent()).toContain('Check-in needs JavaScript');
    expect(await page.getByRole('button', { name: 'Check in' }).isVisible()).toBe(false);
    await context.close();
  });
});

describe.skipIf(!haveChromium)('my week and correction requests in Chromium', () => {
  let g: Fixture;
  // This week's Monday in the company's zone (Europe/Berlin), and the one before.
  const monday = mondayOf(dayIn(new Date(), 'Europe/Berlin'));
  const lastMonday = addDays(monday, -7);
  const insert = (kind: string, local: string) =>
    g.fx.admin.query(
      `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, geofence, method, site_id, flagged)
       VALUES ($1, $2, $3, ($4::timestamp AT TIME ZONE 'Europe/Berlin'), 'inside', 'gps', $5, false)`,
      [g.fx.a.id, g.fx.a.employeeId, kind, local, g.fx.a.siteId],
    );
  beforeAll(async () => {
    g = await pagesFixture('pages_week');
    await insert('check_in', `${monday} 08:00`);
    await insert('check_out', `${monday} 16:30`);
    await insert('check_in', `${lastMonday} 09:00`);
    await insert('check_out', `${lastMonday} 17:00`);
  });
  afterAll(async () => g?.close());

  it("shows my week's timesheet with its checks, and the week before", async () => {
    const { page, seen, context } = await openPage(g.browser, g.baseURL);
    await signIn(page, g.fx.a.slug, g.fx.a.users.employee.email, PASSWORD);
    seen.reset();
    await page.goto('/timesheet');
    const main = page.getByRole('main');
    expect(await main.textContent()).toMatch(/you worked\s+8 h 30 min, of which 30 min overtime\./);
    const mondayRow = page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: /^Mon / }) });
    expect(await mondayRow.first().textContent()).toMatch(/8 h 30 min\s*8 h\s*30 min/);
    expect(await main.textContent()).toContain('Check-in at 08:00, inside HQ');
    expect(await main.textContent()).toContain('Check-out at 16:30, inside HQ');
    await checkPage(page, seen, 'timesheet');
    await page.getByRole('link', { name: 'Previous week' }).click();
    await page.waitForURL(`**/timesheet?week=${lastMonday}`);
    expect(await main.textContent()).toMatch(/you worked\s+8 h\./);
    expect(await main.textContent()).toContain('Check-in at 09:00, inside HQ');
    await page.getByRole('link', { name: 'Next week' }).click();
    expect(await main.textContent()).toMatch(/you worked\s+8 h 30 min/);
    const bad = await page.goto('/timesheet?week=nonsense');
    expect(bad?.status()).toBe(400);
    expect(await page.getByRole('alert').textContent()).toBe('the week must be given as a date, YYYY-MM-DD');
    await context.close();
  });

  it('requests corrections: a missing check-out and a changed check-in, said in words', async () => {
    const { page, seen, context } = await openPage(g.browser, g.baseURL);
    await signIn(page, g.fx.a.slug, g.fx.a.users.employee.email, PASSWORD);
    seen.reset();
    await page.goto('/corrections/new');
    await checkPage(page, seen, 'correction-new');
    expect(await page.getByRole('main').textContent()).toContain(
      'You have not asked for any correction yet.',
    );

    // A change that says nothing to change is refused on the form.
    await page.getByLabel('What is wrong').selectOption('change');
    await page
      .getByLabel('Which check')
      .selectOption({ label: `${dayLabel(monday)}: Check-in at 08:00, inside HQ` });
    await page.getByLabel('Reason').fill('I came earlier');
    await page.getByRole('button', { name: 'Send the request' }).click();
    expect(await page.getByRole('alert').textContent()).toBe(
      'Not sent: say what to change: the kind, or the date and time.',
    );

    await page.getByLabel('What is wrong').selectOption('add');
    await page.getByLabel(/^Kind/).selectOption('check_out');
    await page.getByLabel('Date and time').fill(`${lastMonday}T18:00`);
    await page.getByLabel('Reason').fill('Forgot to check out');
    await page.getByRole('button', { name: 'Send the request' }).click();
    await page.waitForURL('**/corrections/new?said=sent');
    expect(await page.getByRole('status').textContent()).toMatch(/Your correction request was sent/);
    expect(await page.getByRole('main').textContent()).toMatch(
      /add a missing check \(“Forgot to check out”\):\s*waiting for a decision/,
    );

    await page.getByLabel('What is wrong').selectOption('change');
    await page
      .getByLabel('Which check')
      .selectOption({ label: `${dayLabel(monday)}: Check-in at 08:00, inside HQ` });
    await page.getByLabel('Date and time').fill(`${monday}T07:45`);
    await page.getByLabel('Reason').fill('I came earlier');
    await page.getByRole('button', { name: 'Send the request' }).click();
    await page.waitForURL('**/corrections/new?said=sent');

    const rows = await g.fx.admin.query<{ action: string; kind: string | null; at: string; event: boolean }>(
      `SELECT action, proposed_kind AS kind, event_id IS NOT NULL AS event,
              to_char(proposed_occurred_at AT TIME ZONE 'Europe/Berlin', 'YYYY-MM-DD"T"HH24:MI') AS at
         FROM correction_requests WHERE tenant_id = $1 ORDER BY created_at`,
      [g.fx.a.id],
    );
    expect(rows.rows).toEqual([
      { action: 'add', kind: 'check_out', at: `${lastMonday}T18:00`, event: false },
      { action: 'change', kind: null, at: `${monday}T07:45`, event: true },
    ]);
    await context.close();
  });
});
