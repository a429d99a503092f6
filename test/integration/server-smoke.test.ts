import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import {
  adminPool,
  createTestInstall,
  login,
  ORIGIN,
  seedCompany,
  testApp,
  type Company,
  type TestInstall,
} from '../helpers/server.js';
import type { Pool } from '../../src/db/pool.js';

let db: TestDatabase;
let ti: TestInstall;
let app: FastifyInstance;
let admin: Pool;
let a: Company;

beforeAll(async () => {
  db = await createTestDatabase('smoke');
  ti = await createTestInstall(db);
  admin = adminPool(db);
  a = await seedCompany(admin, ti.secrets.apiKeyHmacKey, 'acme');
  app = await testApp(ti);
});
afterAll(async () => {
  await app?.close();
  await admin?.end();
  await ti?.cleanup();
  await db?.drop();
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
