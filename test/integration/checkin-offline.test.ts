import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { login, ORIGIN, serverFixture, type ServerFixture } from '../helpers/server.js';

let f: ServerFixture;
let headers: { cookie: string; origin: string };
const HQ = { latitude: 52.52, longitude: 13.405, accuracy: 10 };
const hoursAgo = (h: number) => new Date(Date.now() - h * 3_600_000);

beforeAll(async () => {
  f = await serverFixture('checkin_offline');
  headers = { cookie: await login(f.app, f.a, 'employee'), origin: ORIGIN };
});
afterAll(async () => f?.close());

const check = (payload: object, h: Record<string, string> = headers) =>
  f.app.inject({ method: 'POST', url: '/api/v1/attendance/check-in', headers: h, payload });
const eventCount = async () =>
  Number(
    (
      await f.admin.query<{ n: string }>('SELECT count(*) AS n FROM attendance_events WHERE tenant_id = $1', [
        f.a.id,
      ])
    ).rows[0]!.n,
  );

describe('check-ins queued offline by the web page', () => {
  it('records the device time as occurred_at, the server time as recorded_at, and flags the event offline', async () => {
    const deviceTime = hoursAgo(2);
    const res = await check({ position: HQ, offline: true, deviceTime: deviceTime.toISOString() });
    expect(res.statusCode, res.body).toBe(201);
    const body = res.json<{ id: number; occurredAt: string; offline: boolean; geofence: string }>();
    expect(body).toMatchObject({ offline: true, geofence: 'inside', occurredAt: deviceTime.toISOString() });
    const row = (
      await f.admin.query<{ occurred_at: Date; recorded_at: Date; offline: boolean }>(
        'SELECT occurred_at, recorded_at, offline FROM attendance_events WHERE tenant_id = $1 AND id = $2',
        [f.a.id, body.id],
      )
    ).rows[0]!;
    expect(row.offline).toBe(true);
    expect(row.occurred_at.toISOString()).toBe(deviceTime.toISOString());
    expect(Math.abs(row.recorded_at.getTime() - Date.now())).toBeLessThan(60_000);
    const audit = await f.admin.query<{ details: Record<string, unknown> }>(
      `SELECT details FROM audit_log WHERE tenant_id = $1 AND action = 'attendance.check_in' AND entity_id = $2`,
      [f.a.id, String(body.id)],
    );
    expect(audit.rows[0]?.details).toMatchObject({ offline: true, deviceTime: deviceTime.toISOString() });
    const events = await f.app.inject({ method: 'GET', url: '/api/v1/attendance/events', headers });
    expect(
      events.json<{ events: { id: number; offline: boolean }[] }>().events.find((e) => e.id === body.id),
    ).toMatchObject({ offline: true });
  });

  it('records an ordinary check-in as not offline, at the server time', async () => {
    const res = await check({ position: HQ });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toMatchObject({ offline: false });
    expect(Math.abs(Date.parse(res.json<{ occurredAt: string }>().occurredAt) - Date.now())).toBeLessThan(
      60_000,
    );
  });

  it('refuses a queued check older than the default 72 hours, saying so, and records nothing', async () => {
    const before = await eventCount();
    const res = await check({ position: HQ, offline: true, deviceTime: hoursAgo(73).toISOString() });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ error: { code: 'VALIDATION_FAILED' } });
    expect(res.json<{ error: { message: string } }>().error.message).toMatch(/more than 72 hours ago/);
    expect(await eventCount()).toBe(before);
  });

  it('follows the company setting attendance.offlineMaxHours', async () => {
    const owner = { cookie: await login(f.app, f.a, 'owner'), origin: ORIGIN };
    const set = (hours: number) =>
      f.app.inject({
        method: 'PATCH',
        url: '/api/v1/settings',
        headers: owner,
        payload: { 'attendance.offlineMaxHours': hours },
      });
    expect((await set(1)).statusCode).toBe(200);
    try {
      const res = await check({ offline: true, deviceTime: hoursAgo(2).toISOString(), position: HQ });
      expect(res.statusCode).toBe(400);
      expect(res.json<{ error: { message: string } }>().error.message).toMatch(/more than 1 hours ago/);
      expect((await set(0)).statusCode).toBe(400);
    } finally {
      expect((await set(72)).statusCode).toBe(200);
    }
  });

  it('refuses a device time in the future', async () => {
    const before = await eventCount();
    const res = await check({
      position: HQ,
      offline: true,
      deviceTime: new Date(Date.now() + 3_600_000).toISOString(),
    });
    expect(res.statusCode).toBe(400);
    expect(res.json<{ error: { message: string } }>().error.message).toMatch(/in the future/);
    expect(await eventCount()).toBe(before);
  });

  it('refuses offline without a device time, and a device time without offline', async () => {
    expect((await check({ position: HQ, offline: true })).statusCode).toBe(400);
    expect((await check({ position: HQ, deviceTime: hoursAgo(1).toISOString() })).statusCode).toBe(400);
    expect((await check({ position: HQ, offline: true, deviceTime: 'yesterday' })).statusCode).toBe(400);
  });

  it('refuses offline checks from a kiosk key, which sends checks as they happen', async () => {
    const res = await check(
      { employeeId: f.a.employeeId, offline: true, deviceTime: hoursAgo(1).toISOString() },
      { authorization: `Bearer ${f.a.keys.checkIn}` },
    );
    expect(res.statusCode).toBe(400);
    expect(res.json<{ error: { message: string } }>().error.message).toMatch(/web check-in page/);
  });
});
