import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { checkPage, haveChromium, openPage, pagesFixture, signIn, type Watch } from '../helpers/browser.js';
import { PASSWORD } from '../helpers/server.js';

type Fixture = Awaited<ReturnType<typeof pagesFixture>>;
let f: Fixture;
let page: Page;
let seen: Watch;
let closeContext: () => Promise<void>;

const main = () => page.getByRole('main').textContent();
const status = () => page.getByRole('status').first().textContent();

describe.skipIf(!haveChromium)('owner and admin pages in Chromium', () => {
  beforeAll(async () => {
    f = await pagesFixture('pages_admin');
    const o = await openPage(f.browser, f.baseURL, { viewport: { width: 1280, height: 800 } });
    ({ page, seen } = o);
    closeContext = () => o.context.close();
    await signIn(page, f.fx.a.slug, f.fx.a.users.owner.email, PASSWORD);
  });
  afterAll(async () => {
    await closeContext?.();
    await f?.close();
  });

  it('creates an API key, shows its secret once, and the audit log shows the entry', async () => {
    expect(new URL(page.url()).pathname).toBe('/admin/employees');
    seen.reset();
    await page.goto('/admin/api-keys');
    await checkPage(page, seen, 'admin-api-keys');
    await page.getByLabel('Name').fill('Door kiosk');
    await page.getByLabel('check-in').check();
    seen.reset();
    await page.getByRole('button', { name: 'Create API key' }).click();
    await page.waitForLoadState('load');
    await checkPage(page, seen, 'admin-api-key-created');
    const secret = (await page.getByLabel('The secret').textContent())!.trim();
    expect(secret).toMatch(/^atx_[A-Za-z0-9_-]+$/);
    expect(await status()).toContain('The API key Door kiosk was created');
    // The key works, and the list never shows the secret again.
    const me = await page.request.get('/api/v1/attendance/events', {
      headers: { authorization: `Bearer ${secret}` },
    });
    expect(me.status()).toBe(403); // a check-in key may not read events: authenticated, not allowed
    await page.getByRole('link', { name: 'Done, back to the list' }).click();
    expect(await main()).toContain('Door kiosk');
    expect(await page.content()).not.toContain(secret);
    seen.reset();
    await page.goto('/admin/audit?action=apikey.create');
    const row = page.getByRole('row').filter({ hasText: 'apikey.create' });
    expect(await row.count()).toBe(1);
    expect(await row.textContent()).toContain(f.fx.a.users.owner.email);
    expect(await row.textContent()).toContain('Door kiosk');
    expect(await main()).toContain('Every entry shown is intact');
    await checkPage(page, seen, 'admin-audit');
  });

  it('revokes an API key only after the box is ticked, and audits it', async () => {
    await page.goto('/admin/api-keys');
    const card = page.getByRole('listitem').filter({ hasText: 'Door kiosk' });
    // A post without the confirmation (no browser form check) changes nothing.
    const id = (await card.locator('form').getAttribute('action'))!.split('/')[3]!;
    const bare = await page.request.post(`/admin/api-keys/${id}/revoke`, {
      headers: { origin: f.baseURL },
      form: {},
    });
    expect(bare.status()).toBe(400);
    expect(await bare.text()).toContain('tick the box to confirm');
    await card.getByLabel('Yes, revoke the key Door kiosk').check();
    await card.getByRole('button', { name: 'Revoke key' }).click();
    await page.waitForURL('**/admin/api-keys?done=revoked');
    expect(await status()).toContain('revoked');
    expect(await page.getByRole('listitem').filter({ hasText: 'Door kiosk' }).textContent()).toContain(
      'Revoked',
    );
    await page.goto('/admin/audit');
    await page.getByLabel('Actor').selectOption({ label: f.fx.a.users.owner.email });
    await page.getByLabel(/^Action/).fill('apikey.*');
    await page.getByRole('button', { name: 'Filter the audit log' }).click();
    await page.waitForURL('**/admin/audit?**');
    expect(await page.getByRole('row').filter({ hasText: 'apikey.revoke' }).count()).toBe(1);
    expect(await page.getByRole('row').filter({ hasText: 'apikey.create' }).count()).toBe(1);
    // A date range before today finds nothing.
    await page.goto('/admin/audit?from=2020-01-01&to=2020-01-31');
    expect(await main()).toContain('0 entries');
  });

  it('creates and edits an employee, enrols and deletes a face template, and deactivates', async () => {
    seen.reset();
    await page.goto('/admin/employees');
    await checkPage(page, seen, 'admin-employees');
    await page.getByLabel('Full name').fill('Nina New');
    await page.getByLabel('Employee number').fill('E9');
    await page.getByLabel('Team').selectOption({ label: 'Alpha' });
    await page.getByLabel('Hourly rate in cents').fill('2500');
    await page.getByRole('button', { name: 'Create employee' }).click();
    await page.waitForURL('**/admin/employees/*?done=created');
    expect(await status()).toBe('The employee was created.');
    const id = new URL(page.url()).pathname.split('/')[3]!;
    await page.getByLabel('Hourly rate in cents').fill('2600');
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.waitForURL('**?done=saved');
    const vector = Array.from({ length: 64 }, (_, i) => ((i % 7) + 1) / 10).join(', ');
    await page.getByLabel(/Face vector/).fill(vector);
    await page.getByRole('button', { name: 'Enrol face template' }).click();
    await page.waitForURL('**?done=enrolled');
    expect(await main()).toContain('A face template is enrolled.');
    seen.reset();
    await page.reload();
    await checkPage(page, seen, 'admin-employee');
    // A vector that is too short is refused in words by the API's schema.
    await page.getByLabel(/Face vector/).fill('1, 2, 3');
    await page.getByRole('button', { name: 'Enrol face template' }).click();
    expect(await page.getByRole('alert').textContent()).toMatch(/Check the form\. vector: Too small/);
    await page.goto(`/admin/employees/${id}`);
    await page.getByLabel('Yes, delete the face template of Nina New').check();
    await page.getByRole('button', { name: 'Delete face template' }).click();
    await page.waitForURL('**?done=face-deleted');
    expect(await main()).toContain('No face template is enrolled.');
    await page.getByLabel('Yes, deactivate Nina New').check();
    await page.getByRole('button', { name: 'Deactivate employee' }).click();
    await page.waitForURL('**?done=deactivated');
    const r = await f.fx.admin.query(
      `SELECT status, hourly_rate_minor, face_template IS NULL AS no_face, employee_number FROM employees WHERE id = $1`,
      [id],
    );
    expect(r.rows[0]).toEqual({
      status: 'inactive',
      hourly_rate_minor: 2600,
      no_face: true,
      employee_number: 'E9',
    });
    const actions = await f.fx.admin.query<{ action: string }>(
      `SELECT action FROM audit_log WHERE tenant_id = $1 AND entity_id = $2 ORDER BY seq`,
      [f.fx.a.id, id],
    );
    expect(actions.rows.map((x) => x.action)).toEqual([
      'employee.create',
      'employee.update',
      'employee.face_enroll',
      'employee.face_delete',
      'employee.update',
    ]);
  });

  it('creates and edits a site with its geofence as numbers', async () => {
    seen.reset();
    await page.goto('/admin/sites');
    expect(await main()).toContain('Latitude 52.52, longitude 13.405, radius 100 m');
    await checkPage(page, seen, 'admin-sites');
    const add = page.locator('form[action="/admin/sites"]');
    await add.getByLabel('Name').fill('Depot');
    await add.getByLabel('Latitude').fill('48.137');
    await add.getByLabel('Longitude').fill('11.575');
    await add.getByLabel('Radius in metres').fill('250');
    await add.getByRole('button', { name: 'Create site' }).click();
    await page.waitForURL('**/admin/sites?done=site-created');
    const card = page.getByRole('listitem').filter({ has: page.getByRole('heading', { name: 'Depot' }) });
    expect(await card.textContent()).toContain('Latitude 48.137, longitude 11.575, radius 250 m');
    await card.getByLabel('Radius in metres').fill('300');
    await card.getByRole('button', { name: 'Save site Depot' }).click();
    await page.waitForURL('**/admin/sites?done=site-saved');
    expect(await main()).toContain('radius 300 m');
    // Out of range: refused by the API's schema, in words.
    const bad = await page.request.post('/admin/sites', {
      headers: { origin: f.baseURL },
      form: { name: 'Nowhere', latitude: '91', longitude: '0', radiusM: '10' },
    });
    expect(bad.status()).toBe(400);
    expect(await bad.text()).toMatch(/latitude: Too big/);
  });

  it('adds a user with a generated password shown once, changes a role and disables a user', async () => {
    seen.reset();
    await page.goto('/admin/users');
    await checkPage(page, seen, 'admin-users');
    const add = page.locator('form[action="/admin/users"]');
    await add.getByLabel('Email').fill('newcomer@acme.example');
    await add.getByLabel('Role').selectOption('manager');
    await add.getByRole('button', { name: 'Create user' }).click();
    await page.waitForLoadState('load');
    expect(await status()).toContain('User newcomer@acme.example was created');
    const password = (await page.getByLabel('The secret').textContent())!.trim();
    expect(password.length).toBeGreaterThanOrEqual(12);
    await page.goto('/admin/users');
    expect(await page.content()).not.toContain(password);
    const hr = page.getByRole('listitem').filter({ hasText: f.fx.a.users.hr.email });
    await hr.getByLabel(`Role of ${f.fx.a.users.hr.email}`).selectOption('manager');
    await hr.getByRole('button', { name: 'Change role' }).click();
    await page.waitForURL('**/admin/users?done=role');
    const emp = page.getByRole('listitem').filter({ hasText: f.fx.a.users.employee.email });
    await emp.getByLabel(`Yes, disable ${f.fx.a.users.employee.email}`).check();
    await emp.getByRole('button', { name: 'Disable user' }).click();
    await page.waitForURL('**/admin/users?done=disabled');
    const r = await f.fx.admin.query<{ email: string; role: string; disabled: boolean }>(
      `SELECT email, role, disabled_at IS NOT NULL AS disabled FROM users WHERE tenant_id = $1 AND email = ANY($2) ORDER BY email`,
      [f.fx.a.id, [f.fx.a.users.hr.email, f.fx.a.users.employee.email, 'newcomer@acme.example']],
    );
    expect(r.rows).toEqual([
      { email: f.fx.a.users.employee.email, role: 'employee', disabled: true },
      { email: f.fx.a.users.hr.email, role: 'manager', disabled: false },
      { email: 'newcomer@acme.example', role: 'manager', disabled: false },
    ]);
  });

  it('changes company settings, validated like the API', async () => {
    seen.reset();
    await page.goto('/admin/settings');
    await checkPage(page, seen, 'admin-settings');
    await page.getByLabel('Check-ins outside every site are').selectOption('reject');
    await page.getByLabel(/^Regular minutes per day/).fill('450');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.waitForURL('**/admin/settings?done=saved');
    expect(await status()).toBe('The settings were saved.');
    const r = await f.fx.admin.query<{ key: string; value: unknown }>(
      `SELECT key, value FROM tenant_settings WHERE tenant_id = $1 ORDER BY key`,
      [f.fx.a.id],
    );
    expect(r.rows.map((x) => [x.key, x.value])).toEqual([
      ['geofence.mode', 'reject'],
      ['overtime.dailyMinutes', 450],
    ]);
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.waitForURL('**/admin/settings?done=same');
    const bad = await page.request.post('/admin/settings', {
      headers: { origin: f.baseURL },
      form: { 'face.threshold': '2' },
    });
    expect(bad.status()).toBe(400);
    expect(await bad.text()).toMatch(/face\.threshold: Too big/);
  });
});
