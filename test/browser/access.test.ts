import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkPage, haveChromium, openPage, pagesFixture, signIn } from '../helpers/browser.js';
import { login, ORIGIN, PASSWORD, seedCompany, type Company } from '../helpers/server.js';

type Fixture = Awaited<ReturnType<typeof pagesFixture>>;
let f: Fixture;
let globex: Company;

const MANAGER_PAGES = ['/board', '/corrections', '/timesheets'];
const ADMIN_PAGES = [
  '/admin/employees',
  '/admin/sites',
  '/admin/users',
  '/admin/api-keys',
  '/admin/settings',
  '/admin/audit',
];

describe.skipIf(!haveChromium)('who may open the manager and admin pages', () => {
  beforeAll(async () => {
    f = await pagesFixture('pages_access');
    // A second company whose every name says so; none of it may appear on acme's pages.
    globex = await seedCompany(f.fx.admin, f.fx.ti.secrets.apiKeyHmacKey, 'globex');
    const q = (sql: string, params: unknown[]) => f.fx.admin.query(sql, params);
    await q(`UPDATE employees SET full_name = 'Globex Person ' || employee_number WHERE tenant_id = $1`, [
      globex.id,
    ]);
    await q(`UPDATE teams SET name = 'Globex ' || name WHERE tenant_id = $1`, [globex.id]);
    await q(`UPDATE sites SET name = 'Globex Plant' WHERE tenant_id = $1`, [globex.id]);
    await q(
      `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, geofence, method, flagged, offline)
       VALUES ($1, $2, 'check_in', now(), 'outside', 'gps', true, true)`,
      [globex.id, globex.employeeId],
    );
    await q(
      `INSERT INTO correction_requests (tenant_id, employee_id, requested_by, action, proposed_kind, proposed_occurred_at, reason)
       VALUES ($1, $2, $3, 'add', 'check_in', now(), 'Globex reason')`,
      [globex.id, globex.employeeId, globex.users.employee.id],
    );
    const cookie = await login(f.fx.app, globex, 'owner');
    const key = await f.fx.app.inject({
      method: 'POST',
      url: '/api/v1/api-keys',
      headers: { cookie, origin: ORIGIN },
      payload: { name: 'Globex secret key', scopes: ['read'] },
    });
    expect(key.statusCode).toBe(201);
  });
  afterAll(async () => f?.close());

  it('shows an employee a 403 page in words on every manager and admin page', async () => {
    const { page, seen, context } = await openPage(f.browser, f.baseURL);
    await signIn(page, f.fx.a.slug, f.fx.a.users.employee.email, PASSWORD);
    for (const url of [...MANAGER_PAGES, ...ADMIN_PAGES]) {
      const res = await page.goto(url);
      expect(res?.status(), url).toBe(403);
      expect(await page.getByRole('alert').textContent(), url).toBe('You do not have access to this page.');
    }
    // The navigation offers none of them.
    await page.goto('/account');
    const nav = await page.getByRole('navigation', { name: 'Main' }).textContent();
    expect(nav).not.toMatch(/Today's board|Employees|Audit log/);
    seen.reset();
    await page.goto('/admin/audit');
    await checkPage(page, seen, 'forbidden');
    // Posts are refused too (the Origin is right; the role is not).
    const post = await page.request.post(`/corrections/${globex.id}/approve`, {
      headers: { origin: f.baseURL },
      form: {},
    });
    expect(post.status()).toBe(403);
    await context.close();
  });

  it('lets a manager open the manager pages but no admin page', async () => {
    const { page, context } = await openPage(f.browser, f.baseURL);
    await signIn(page, f.fx.a.slug, f.fx.a.users.manager.email, PASSWORD);
    for (const url of MANAGER_PAGES) expect((await page.goto(url))?.status(), url).toBe(200);
    for (const url of ADMIN_PAGES) expect((await page.goto(url))?.status(), url).toBe(403);
    await context.close();
  });

  it("shows another company's data on no page", async () => {
    const { page, context } = await openPage(f.browser, f.baseURL);
    await signIn(page, f.fx.a.slug, f.fx.a.users.owner.email, PASSWORD);
    const urls = [
      ...MANAGER_PAGES,
      '/corrections?status=approved',
      '/timesheets?from=2026-11-01&to=2026-12-31',
      ...ADMIN_PAGES,
    ];
    for (const url of urls) {
      expect((await page.goto(url))?.status(), url).toBe(200);
      const body = await page.content();
      expect(body, url).not.toMatch(/globex/i);
    }
    // Sanity: the same pages do show acme's own data.
    await page.goto('/board');
    expect(await page.getByRole('main').textContent()).toContain('Alex Example');
    // Globex's employee by id: not found, as if it did not exist.
    const res = await page.goto(`/admin/employees/${globex.employeeId}`);
    expect(res?.status()).toBe(404);
    expect(await page.getByRole('alert').textContent()).toBe('employee not found');
    await context.close();
  });
});
