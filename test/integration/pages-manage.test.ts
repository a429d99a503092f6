import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { login, ORIGIN, serverFixture, type ServerFixture } from '../helpers/server.js';

let f: ServerFixture;

const page = async (role: 'owner' | 'manager' | 'hr' | 'employee', url: string) =>
  f.app.inject({ method: 'GET', url, headers: { cookie: await login(f.app, f.a, role) } });

describe("today's board and the admin forms, without a browser", () => {
  beforeAll(async () => {
    f = await serverFixture('pages_manage');
  });
  afterAll(async () => f?.close());

  it("counts only today's events (the company's day) and leaves out inactive employees", async () => {
    const a = f.a;
    await f.admin.query(
      `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, geofence, method, flagged, offline)
       VALUES ($1, $2, 'check_in', now() - interval '2 days', 'outside', 'gps', true, true)`,
      [a.id, a.employeeId],
    );
    await f.admin.query(
      `INSERT INTO employees (tenant_id, full_name, team_id, status) VALUES ($1, 'Ivo Inactive', $2, 'inactive')`,
      [a.id, a.teamId],
    );
    const res = await page('hr', '/board');
    expect(res.statusCode).toBe(200);
    expect(res.body).toMatch(/Alex Example[\s\S]*?Not yet in/);
    expect(res.body).not.toMatch(/class="tag/);
    expect(res.body).not.toContain('Ivo Inactive');
    expect(res.body).toMatch(/<strong>0<\/strong>\s*flagged/);
    expect(res.body).toMatch(/<strong>2<\/strong>\s*not yet in/);
  });

  it('shows a manager their teams only, and refuses an employee', async () => {
    const res = await page('manager', '/board');
    expect(res.body).toContain('Alex Example');
    expect(res.body).not.toContain('Sam Sample');
    expect((await page('employee', '/board')).statusCode).toBe(403);
  });

  it("shows the same totals as the API's timesheet, for the manager's teams only", async () => {
    const a = f.a;
    await f.admin.query(
      `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, geofence, method) VALUES
         ($1, $2, 'check_in', '2026-10-05 08:00+02', 'not_required', 'manual'),
         ($1, $2, 'check_out', '2026-10-05 18:15+02', 'not_required', 'manual'),
         ($1, $2, 'check_in', '2026-10-06 09:00+02', 'not_required', 'manual'),
         ($1, $2, 'check_out', '2026-10-06 13:00+02', 'not_required', 'manual'),
         ($1, $3, 'check_in', '2026-10-05 09:00+02', 'not_required', 'manual'),
         ($1, $3, 'check_out', '2026-10-05 10:00+02', 'not_required', 'manual')`,
      [a.id, a.employeeId, a.otherEmployeeId],
    );
    const cookie = await login(f.app, a, 'manager');
    const api = await f.app.inject({
      method: 'GET',
      url: `/api/v1/timesheets?from=2026-10-01&to=2026-10-31&employeeId=${a.employeeId}`,
      headers: { cookie },
    });
    expect(api.json<{ totals: unknown }>().totals).toEqual({
      workedMinutes: 855,
      regularMinutes: 720,
      overtimeMinutes: 135,
    });
    const res = await page('manager', '/timesheets?from=2026-10-01&to=2026-10-31');
    expect(res.body).toMatch(
      /Alex Example<\/th>\s*<td>14 h 15 min<\/td>\s*<td>12 h 00 min<\/td>\s*<td>2 h 15 min<\/td>\s*<td>2<\/td>/,
    );
    expect(res.body).not.toContain('Sam Sample</th>');
    const one = await page('manager', `/timesheets?from=2026-10-01&to=2026-10-31&employeeId=${a.employeeId}`);
    expect(one.body).toMatch(/2026-10-05:\s+10 h 15 min \(overtime 2 h 15 min\)/);
    expect(one.body).toMatch(/2026-10-06:\s+4 h 00 min\s*<\/li>/);
    const tooLong = await page('manager', '/timesheets?from=2026-01-01&to=2026-12-31');
    expect(tooLong.statusCode).toBe(400);
    expect(tooLong.body).toContain('the range is limited to 93 days');
  });

  it('rejects a correction request from the form, leaving the attendance as it was', async () => {
    const res = await f.app.inject({
      method: 'POST',
      url: '/api/v1/corrections',
      headers: { cookie: await login(f.app, f.a, 'employee'), origin: ORIGIN },
      payload: {
        action: 'add',
        proposedKind: 'check_out',
        proposedOccurredAt: '2026-10-07T16:00:00Z',
        reason: 'left late',
      },
    });
    const id = res.json<{ id: string }>().id;
    const post = (role: 'manager' | 'employee') =>
      login(f.app, f.a, role).then((cookie) =>
        f.app.inject({
          method: 'POST',
          url: `/corrections/${id}/reject`,
          headers: { cookie, origin: ORIGIN, 'content-type': 'application/x-www-form-urlencoded' },
          payload: 'note=no+record+of+it',
        }),
      );
    expect((await post('employee')).statusCode).toBe(403);
    const done = await post('manager');
    expect(done.statusCode).toBe(303);
    expect(done.headers.location).toBe('/corrections?done=reject');
    const r = await f.admin.query(
      `SELECT status, decision_note, (SELECT count(*)::int FROM attendance_events WHERE correction_id = $1) AS events
         FROM correction_requests WHERE id = $1`,
      [id],
    );
    expect(r.rows[0]).toEqual({ status: 'rejected', decision_note: 'no record of it', events: 0 });
    const again = await post('manager');
    expect(again.statusCode).toBe(409);
    expect(again.body).toContain('the request is already rejected');
    const list = await page('manager', '/corrections?done=reject');
    expect(list.body).toContain('The request was rejected; the attendance stays as it was.');
  });

  it('changes nothing on a destructive post without the ticked box, or from another origin', async () => {
    const cookie = await login(f.app, f.a, 'owner');
    const post = (origin: string, payload: string) =>
      f.app.inject({
        method: 'POST',
        url: `/admin/employees/${f.a.employeeId}/deactivate`,
        headers: { cookie, origin, 'content-type': 'application/x-www-form-urlencoded' },
        payload,
      });
    const unticked = await post(ORIGIN, '');
    expect(unticked.statusCode).toBe(400);
    expect(unticked.body).toContain('tick the box to confirm first');
    expect((await post('https://evil.example', 'confirm=yes')).statusCode).toBe(403);
    const status = async () =>
      (
        await f.admin.query<{ status: string }>('SELECT status FROM employees WHERE id = $1', [
          f.a.employeeId,
        ])
      ).rows[0]!.status;
    expect(await status()).toBe('active');
    const ok = await post(ORIGIN, 'confirm=yes');
    expect(ok.statusCode).toBe(303);
    expect(ok.headers.location).toBe(`/admin/employees/${f.a.employeeId}?done=deactivated`);
    expect(await status()).toBe('inactive');
    const audit = await f.admin.query<{ actor: string; details: { fields: string[] } }>(
      `SELECT actor, details FROM audit_log WHERE tenant_id = $1 AND action = 'employee.update' AND entity_id = $2`,
      [f.a.id, f.a.employeeId],
    );
    expect(audit.rows).toEqual([{ actor: `user:${f.a.users.owner.id}`, details: { fields: ['status'] } }]);
  });
});
