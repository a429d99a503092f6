import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { checkPage, haveChromium, openPage, pagesFixture, signIn } from '../helpers/browser.js';
import { PASSWORD } from '../helpers/server.js';

type Fixture = Awaited<ReturnType<typeof pagesFixture>>;
let f: Fixture;

/** HQ of the seeded company is at 52.52, 13.405 with a 100 m radius. */
const AT_HQ = { latitude: 52.52, longitude: 13.405 };
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

  it('tells that check-in needs JavaScript when it is off', async () => {
    const context = await f.browser.newContext({ baseURL: f.baseURL, javaScriptEnabled: false });
    const page = await context.newPage();
    await signIn(page, f.fx.a.slug, f.fx.a.users.employee.email, PASSWORD);
    expect(await page.getByRole('main').textContent()).toContain('Check-in needs JavaScript');
    expect(await page.getByRole('button', { name: 'Check in' }).isVisible()).toBe(false);
    await context.close();
  });
});
