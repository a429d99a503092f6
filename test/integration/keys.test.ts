import { readFile, stat } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import {
  login,
  ORIGIN,
  type Company,
  type TestInstall,
  serverFixture,
  type ServerFixture,
} from '../helpers/server.js';
import { rotateDataKey, showKeys } from '../../src/core/keys.js';
import type { Pool } from '../../src/db/pool.js';

let f: ServerFixture;
let ti: TestInstall;
let app: FastifyInstance;
let admin: Pool;
let a: Company;
const vector = Array.from({ length: 96 }, (_, i) => Math.sin(i * 0.7));

beforeAll(async () => {
  f = await serverFixture('keys', { app: { keyringCheckMs: 0 } });
  ({ ti, admin, app, a } = f);
  const headers = { cookie: await login(app, a, 'hr'), origin: ORIGIN };
  for (const id of [a.employeeId, a.otherEmployeeId]) {
    const r = await app.inject({
      method: 'PUT',
      url: `/api/v1/employees/${id}/face`,
      headers,
      payload: { vector },
    });
    expect(r.statusCode).toBe(204);
  }
});
afterAll(async () => {
  await f?.close();
});

describe('keys rotate-data-key', () => {
  it('adds a key, keeps the old one, re-encrypts every template and audits it', async () => {
    const before = await admin.query<{ t: Buffer }>(
      'SELECT face_template AS t FROM employees WHERE id = $1',
      [a.employeeId],
    );
    const r = await rotateDataKey(ti.install, { actor: 'test', batchSize: 1 });
    expect(r).toMatchObject({ newKeyId: 'k2', previousKeyId: 'k1', reencrypted: 2 });
    const secrets = JSON.parse(await readFile(ti.secretsPath, 'utf8')) as {
      dataKeys: Record<string, string>;
      activeDataKeyId: string;
    };
    expect(Object.keys(secrets.dataKeys).sort()).toEqual(['k1', 'k2']);
    expect(secrets.dataKeys.k1).toBe(ti.secrets.dataKeys.k1);
    expect(secrets.activeDataKeyId).toBe('k2');
    expect((await stat(ti.secretsPath)).mode & 0o777).toBe(0o600);
    const { rows } = await admin.query<{ k: string; t: Buffer }>(
      'SELECT face_key_id AS k, face_template AS t FROM employees WHERE face_key_id IS NOT NULL',
    );
    expect(rows.map((x) => x.k)).toEqual(['k2', 'k2']);
    const after = rows.find((x) => x.t.length === before.rows[0]!.t.length && !x.t.equals(before.rows[0]!.t));
    expect(after).toBeDefined();
    const audit = await admin.query(`SELECT details FROM audit_log WHERE action = 'keys.rotate_data_key'`);
    expect(audit.rows[0].details).toEqual({ previousKeyId: 'k1', reencrypted: 2 });
  });

  it('lets a server started before the rotation verify faces sealed under the new key', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/attendance/check-in',
      headers: { authorization: `Bearer ${a.keys.checkIn}` },
      payload: { employeeId: a.employeeId, face: vector },
    });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json().faceScore).toBeGreaterThan(0.999);
  });

  it('seals new enrolments of a running server under the new active key', async () => {
    const headers = { cookie: await login(app, a, 'hr'), origin: ORIGIN };
    const r = await app.inject({
      method: 'PUT',
      url: `/api/v1/employees/${a.otherEmployeeId}/face`,
      headers,
      payload: { vector },
    });
    expect(r.statusCode).toBe(204);
    const { rows } = await admin.query<{ k: string }>(
      'SELECT face_key_id AS k FROM employees WHERE id = $1',
      [a.otherEmployeeId],
    );
    expect(rows[0]!.k).toBe('k2');
  });

  it('shows key ids and recipients but never key material', async () => {
    const r = await showKeys(ti.install);
    expect(r.dataKeys).toEqual([
      { id: 'k1', active: false, templates: 0 },
      { id: 'k2', active: true, templates: 2 },
    ]);
    const secrets = JSON.parse(await readFile(ti.secretsPath, 'utf8')) as {
      dataKeys: Record<string, string>;
    };
    const text = JSON.stringify(r);
    for (const k of Object.values(secrets.dataKeys)) expect(text).not.toContain(k);
  });
});
