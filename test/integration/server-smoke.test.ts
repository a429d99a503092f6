import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { login, ORIGIN, type Company, serverFixture, type ServerFixture } from '../helpers/server.js';

let f: ServerFixture;
let app: FastifyInstance;
let a: Company;

beforeAll(async () => {
  f = await serverFixture('smoke');
  ({ app, a } = f);
});
afterAll(async () => {
  await f?.close();
});

describe('the server end to end in process', () => {
  it('lets an employee log in and check in inside the geofence', async () => {
    const cookie = await login(app, a, 'employee');
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/attendance/check-in',
      headers: { cookie, origin: ORIGIN },
      payload: { position: { latitude: 52.52, longitude: 13.405, accuracy: 10 } },
    });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json().geofence).toBe('inside');
  });
});
