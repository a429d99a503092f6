import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { checkPage, haveChromium, openPage, pagesFixture, signIn } from '../helpers/browser.js';
import { PASSWORD } from '../helpers/server.js';

type Fixture = Awaited<ReturnType<typeof pagesFixture>>;
const NEW_PASSWORD = 'a brand new passphrase 2026';

async function changePassword(page: Page, current: string, next: string, repeat = next) {
  await page.goto('/account');
  await page.getByLabel('Current password').fill(current);
  await page.getByLabel('New password', { exact: true }).fill(next);
  await page.getByLabel('New password again').fill(repeat);
  await page.getByRole('button', { name: 'Change my password' }).click();
  await page.waitForLoadState('load');
}

describe.skipIf(!haveChromium)('my account in Chromium', () => {
  let f: Fixture;
  beforeAll(async () => {
    f = await pagesFixture('pages_account');
  });
  afterAll(async () => f?.close());

  it('changes my password: refusals in words, then signed out with a message, the new password works', async () => {
    const { page, seen, context } = await openPage(f.browser, f.baseURL);
    const { slug, users } = f.fx.a;
    await signIn(page, slug, users.hr.email, PASSWORD);
    seen.reset();
    await page.goto('/account');
    await checkPage(page, seen, 'account');

    await changePassword(page, 'not my password', NEW_PASSWORD);
    expect(await page.getByRole('alert').textContent()).toBe('Not changed: the current password is wrong.');
    const failed = await f.fx.admin.query(
      `SELECT 1 FROM audit_log WHERE tenant_id = $1 AND action = 'user.password_change_failed' AND entity_id = $2`,
      [f.fx.a.id, users.hr.id],
    );
    expect(failed.rowCount).toBe(1);
    await changePassword(page, PASSWORD, NEW_PASSWORD, 'something else entirely');
    expect(await page.getByRole('alert').textContent()).toBe(
      'Not changed: the two new passwords are not the same.',
    );
    await changePassword(page, PASSWORD, 'short');
    expect(await page.getByRole('alert').textContent()).toMatch(
      /the new password must be at least 12 characters/,
    );

    await changePassword(page, PASSWORD, NEW_PASSWORD);
    expect(new URL(page.url()).pathname).toBe('/login');
    expect(await page.getByRole('status').textContent()).toMatch(
      /Your password was changed.*Sign in with the new/,
    );
    await checkPage(page, seen, 'login-password-changed');
    await page.goto('/account');
    expect(new URL(page.url()).pathname).toBe('/login');
    await signIn(page, slug, users.hr.email, PASSWORD);
    expect(await page.getByRole('alert').textContent()).toMatch(/wrong company, email or password/);
    await signIn(page, slug, users.hr.email, NEW_PASSWORD);
    expect(new URL(page.url()).pathname).toBe('/board');
    await context.close();
  });

  it('downloads my data as a zip with the session cookie', async () => {
    const { page, context } = await openPage(f.browser, f.baseURL);
    await signIn(page, f.fx.a.slug, f.fx.a.users.employee.email, PASSWORD);
    await page.goto('/account');
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('link', { name: 'Download my data (zip)' }).click(),
    ]);
    expect(download.suggestedFilename()).toMatch(/^my-data-\d{4}-\d{2}-\d{2}\.zip$/);
    const zip = await readFile(await download.path());
    expect(zip.subarray(0, 2).toString('latin1')).toBe('PK');
    expect(zip.includes(Buffer.from('README'))).toBe(true);
    await context.close();
  });
});

describe.skipIf(!haveChromium)('lock-out and rate-limit refusals in plain words', () => {
  let f: Fixture;
  beforeAll(async () => {
    f = await pagesFixture('pages_login_limits', {
      server: { maxFailedLogins: 2 },
      app: { loginRateLimit: { max: 4, timeWindow: 60_000 } },
    });
  });
  afterAll(async () => f?.close());

  it('says the account may be locked, then that there were too many attempts (429)', async () => {
    const { page, seen, context } = await openPage(f.browser, f.baseURL);
    const { slug, users } = f.fx.a;
    await signIn(page, slug, users.employee.email, 'wrong 1');
    await signIn(page, slug, users.employee.email, 'wrong 2');
    // Locked now: the right password is refused in the same words, which say a lock-out may be why.
    await signIn(page, slug, users.employee.email, PASSWORD);
    expect(await page.getByRole('alert').textContent()).toBe(
      'Not signed in: wrong company, email or password, or the account is locked for a while.',
    );
    await signIn(page, slug, users.employee.email, PASSWORD);
    const statuses: number[] = [];
    page.on('response', (r) => {
      if (r.request().method() === 'POST') statuses.push(r.status());
    });
    seen.reset();
    await signIn(page, slug, users.employee.email, PASSWORD);
    expect(statuses).toEqual([429]);
    expect(await page.getByRole('heading', { level: 1 }).textContent()).toBe('Slow down');
    expect(await page.getByRole('alert').textContent()).toBe(
      'Too many attempts. Wait a minute, then try again.',
    );
    expect(await page.content()).not.toMatch(/at .*\.(js|ts):\d+/);
    await context.close();
  });
});
