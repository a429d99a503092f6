import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverFixture, type ServerFixture } from '../helpers/server.js';
import { promtoolCheck } from '../helpers/promtool.js';

let f: ServerFixture;
beforeAll(async () => {
  f = await serverFixture('promtool');
});
afterAll(async () => {
  await f?.close();
});

describe('GET /metrics (prom-client)', () => {
  it('passes promtool check metrics after real traffic, with every documented family', async () => {
    const { app, a } = f;
    const checkIn = await app.inject({
      method: 'POST',
      url: '/api/v1/attendance/check-in',
      headers: { authorization: `Bearer ${a.keys.checkIn}` },
      payload: { employeeId: a.employeeId },
    });
    expect(checkIn.statusCode).toBe(201);
    await app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { company: 'acme', email: 'nobody@x.example', password: 'wrong password!' },
    });
    await app.inject({ url: '/no/such/route?with="quotes"' });
    const res = await app.inject({ url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const check = await promtoolCheck(res.body);
    expect(check).toEqual({ exitCode: 0, output: '' });
    for (const family of [
      'attendux_http_requests_total',
      'attendux_http_request_duration_seconds',
      'attendux_check_ins_total',
      'attendux_check_outs_total',
      'attendux_logins_total',
      'attendux_failed_logins_total',
      'attendux_process_start_time_seconds',
    ])
      expect(res.body).toContain(`# TYPE ${family} `);
    expect(res.body).toMatch(/^attendux_check_ins_total 1$/m);
    expect(res.body).toMatch(/^attendux_failed_logins_total 1$/m);
    expect(res.body).toMatch(/^attendux_check_outs_total 0$/m);
  });

  it('promtool does fail on a broken exposition (the check can fail)', async () => {
    const bad = await promtoolCheck('# TYPE x_count counter\nx_count 1\n');
    expect(bad.exitCode).not.toBe(0);
    expect(bad.output).toMatch(/_total/);
  });
});
