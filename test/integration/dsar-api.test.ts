import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { login, ORIGIN, serverFixture, type ServerFixture } from '../helpers/server.js';

let f: ServerFixture;
let dir: string;

beforeAll(async () => {
  f = await serverFixture('dsarapi');
  dir = await mkdtemp(join(tmpdir(), 'attendux-dsar-api-'));
});
afterAll(async () => {
  await f?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('the employee’s side of data subject requests', () => {
  it('GET /me/export: the employee downloads their own zip; audited, registered, rate-limited', async () => {
    const { app, a, admin } = f;
    const owner = await login(app, a, 'owner');
    // Something the owner did about the employee: in the export, the owner appears by role only.
    const patch = await app.inject({
      method: 'PATCH',
      url: `/api/v1/employees/${a.employeeId}`,
      headers: { cookie: owner, origin: ORIGIN },
      payload: { hourlyRateMinor: 2500 },
    });
    expect(patch.statusCode).toBe(200);
    const cookie = await login(app, a, 'employee');
    const res = await app.inject({ url: '/api/v1/me/export', headers: { cookie } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/zip');
    const zip = join(dir, 'me.zip');
    await writeFile(zip, res.rawPayload);
    const read = (name: string) => execFileSync('unzip', ['-p', zip, name]).toString();
    expect(JSON.parse(read('data.json')).employee.fullName).toBe('Alex Example');
    const auditCsv = read('audit-events.csv');
    expect(auditCsv).toContain('[owner],employee.update');
    expect(auditCsv).not.toContain(a.users.owner.id);
    expect(auditCsv).not.toContain(a.users.owner.email);
    const { rows } = await admin.query<{ source: string; status: string }>(
      `SELECT source, status FROM dsar_requests WHERE employee_id = $1 AND kind = 'export'`,
      [a.employeeId],
    );
    expect(rows).toEqual([{ source: 'api', status: 'done' }]);
    const { rows: au } = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM audit_log WHERE action = 'dsar.export' AND actor = $1`,
      [`user:${a.users.employee.id}`],
    );
    expect(au[0]!.n).toBe(1);
    // Two more are allowed within the hour, the fourth is refused.
    for (const want of [200, 200, 429]) {
      const r = await app.inject({ url: '/api/v1/me/export', headers: { cookie } });
      expect(r.statusCode).toBe(want);
    }
    // A user without an employee record has nothing to export.
    const none = await app.inject({ url: '/api/v1/me/export', headers: { cookie: owner } });
    expect(none.statusCode).toBe(404);
  });

  it('POST /me/erasure-request files a request (erases nothing); owners and HR see it in the register', async () => {
    const { app, a, admin } = f;
    const cookie = await login(app, a, 'employee');
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/me/erasure-request',
      headers: { cookie, origin: ORIGIN },
      payload: { reason: 'I left the company' },
    });
    expect(res.statusCode).toBe(201);
    const filed = res.json<{ id: string; dueAt: string; receivedAt: string }>();
    const month = Date.parse(filed.dueAt) - Date.parse(filed.receivedAt);
    expect(month / 86_400_000).toBeGreaterThanOrEqual(28);
    expect(month / 86_400_000).toBeLessThanOrEqual(31);
    // Filing twice answers the open request.
    const again = await app.inject({
      method: 'POST',
      url: '/api/v1/me/erasure-request',
      headers: { cookie, origin: ORIGIN },
      payload: {},
    });
    expect(again.json<{ id: string }>().id).toBe(filed.id);
    const { rows } = await admin.query<{ full_name: string }>(
      'SELECT full_name FROM employees WHERE id = $1',
      [a.employeeId],
    );
    expect(rows[0]!.full_name).toBe('Alex Example');
    for (const role of ['owner', 'hr'] as const) {
      const list = await app.inject({
        url: '/api/v1/dsar/requests?status=open',
        headers: { cookie: await login(app, a, role) },
      });
      expect(list.statusCode).toBe(200);
      const reqs = list.json<{ requests: { id: string; kind: string; mark: string | null }[] }>().requests;
      expect(reqs).toEqual([expect.objectContaining({ id: filed.id, kind: 'erasure', mark: null })]);
    }
    const denied = await app.inject({ url: '/api/v1/dsar/requests', headers: { cookie } });
    expect(denied.statusCode).toBe(403);
  });
});
