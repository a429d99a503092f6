import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkPage, haveChromium, openPage, pagesFixture, signIn } from '../helpers/browser.js';
import { PASSWORD } from '../helpers/server.js';

type Fixture = Awaited<ReturnType<typeof pagesFixture>>;
let f: Fixture;

describe.skipIf(!haveChromium)('signing in and out in Chromium', () => {
  beforeAll(async () => {
    f = await pagesFixture('pages_session');
  });
  afterAll(async () => f?.close());

  it('shows the sign-in page, passing the page checks', async () => {
    const { page, seen, context } = await openPage(f.browser, f.baseURL);
    await page.goto('/');
    await expect.poll(() => page.getByRole('button', { name: 'Log in' }).count()).toBe(1);
    await checkPage(page, seen, 'login');
    await context.close();
  });

  it('says in words when the password is wrong, and signs in and out with the right one', async () => {
    const { page, context, seen } = await openPage(f.browser, f.baseURL);
    await signIn(page, f.fx.a.slug, f.fx.a.users.employee.email, 'wrong password');
    expect(await page.getByRole('alert').textContent()).toMatch(/wrong company, email or password/);
    await signIn(page, f.fx.a.slug, f.fx.a.users.employee.email, PASSWORD);
    expect(new URL(page.url()).pathname).toBe('/checkin');
    const cookies = await context.cookies();
    expect(cookies.find((c) => c.name === 'atx_session')?.httpOnly).toBe(true);
    seen.reset();
    await page.goto('/account');
    expect(await page.getByRole('main').textContent()).toContain(f.fx.a.users.employee.email);
    await checkPage(page, seen, 'account');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL('**/login');
    await page.goto('/home');
    expect(new URL(page.url()).pathname).toBe('/login');
    await context.close();
  });
});
