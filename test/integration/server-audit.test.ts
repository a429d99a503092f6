import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient } from '../../src/db/pool.js';
import { readCheckpointFile, checkpointFile } from '../../src/core/audit/checkpoints.js';
import { verifyAudit } from '../../src/core/audit/service.js';
import { login, ORIGIN, serverFixture, testApp, type ServerFixture } from '../helpers/server.js';

let f: ServerFixture;

beforeAll(async () => {
  f = await serverFixture('srvaudit');
});
afterAll(async () => {
  await f?.close();
});

const owner = async () => ({ cookie: await login(f.app, f.a, 'owner'), origin: ORIGIN });

describe('audit entries written by the server', () => {
  it('records login successes and failures with a hashed IP, and every chain verifies', async () => {
    const bad = await f.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { company: f.a.slug, email: f.a.users.owner.email, password: 'wrong-password-1' },
      remoteAddress: '203.0.113.9',
    });
    expect(bad.statusCode).toBe(401);
    const headers = await owner();
    // a kiosk check-in (the fast path) and a user's own (the generic path) write their entries too
    const k = await f.app.inject({
      method: 'POST',
      url: '/api/v1/attendance/check-in',
      headers: { authorization: `Bearer ${f.a.keys.checkIn}` },
      payload: { employeeId: f.a.employeeId },
    });
    expect(k.statusCode).toBe(201);
    const res = await f.app.inject({ url: '/api/v1/audit?action=auth.*', headers });
    expect(res.statusCode).toBe(200);
    const body = res.json<{
      entries: { action: string; details: Record<string, unknown> }[];
      verified: boolean;
    }>();
    expect(body.verified).toBe(true);
    const actions = body.entries.map((e) => e.action);
    expect(actions).toContain('auth.login');
    expect(actions).toContain('auth.login_failed');
    const { rows } = await f.admin.query<{ ip_hash: string }>(
      "SELECT ip_hash FROM audit_log WHERE action = 'auth.login_failed' ORDER BY seq DESC LIMIT 1",
    );
    expect(rows[0]!.ip_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(rows[0]!.ip_hash).not.toContain('203.0.113.9');
    const r = await verifyAudit(f.ti.install);
    expect(r.breaks).toEqual([]);
    expect(r.checked).toBeGreaterThanOrEqual(3); // login_failed, login, check_in
  });

  it('filters by actor, entity and time, and flags a page with a tampered entry as not verified', async () => {
    const headers = await owner();
    const all = (await f.app.inject({ url: '/api/v1/audit?limit=1000', headers })).json<{
      entries: { seq: number; actor: string; entityType: string; at: string }[];
    }>();
    const actor = all.entries.find((e) => e.actor.startsWith('apikey:'))!.actor;
    const byActor = (
      await f.app.inject({ url: `/api/v1/audit?actor=${encodeURIComponent(actor)}`, headers })
    ).json<{ entries: { actor: string }[] }>();
    expect(byActor.entries.length).toBeGreaterThan(0);
    expect(byActor.entries.every((e) => e.actor === actor)).toBe(true);
    const byEntity = (await f.app.inject({ url: '/api/v1/audit?entity=attendance_event', headers })).json<{
      entries: { entityType: string }[];
    }>();
    expect(byEntity.entries.length).toBeGreaterThan(0);
    expect(byEntity.entries.every((e) => e.entityType === 'attendance_event')).toBe(true);
    const future = (await f.app.inject({ url: '/api/v1/audit?since=2999-01-01T00:00:00Z', headers })).json<{
      entries: unknown[];
    }>();
    expect(future.entries).toEqual([]);
    expect((await f.app.inject({ url: '/api/v1/audit?since=yesterday', headers })).statusCode).toBe(400);

    const su = await connectClient(f.db.superuserUrl.replace(/\/[^/]*$/, `/${f.db.name}`));
    try {
      await su.query('ALTER TABLE audit_log DISABLE TRIGGER USER');
      await su.query(
        "UPDATE audit_log SET actor = 'user:nobody' WHERE tenant_id = $1 AND action = 'auth.login'",
        [f.a.id],
      );
      await su.query('ALTER TABLE audit_log ENABLE TRIGGER USER');
    } finally {
      await su.end();
    }
    const page = (await f.app.inject({ url: '/api/v1/audit?action=auth.login', headers })).json<{
      verified: boolean;
    }>();
    expect(page.verified).toBe(false);
  });

  it('signs a checkpoint of the moved chains into the data dir after N entries and on shutdown', async () => {
    const before = (await readCheckpointFile(checkpointFile(f.ti.dataDir))).length;
    const app = await testApp(f.ti);
    const c = await login(app, f.a, 'owner');
    await app.close();
    const after = await readCheckpointFile(checkpointFile(f.ti.dataDir));
    expect(after.length).toBeGreaterThan(before);
    expect(after.some((x) => x.tenantId === f.a.id && x.reason === 'interval')).toBe(true);
    void c;
  });
});
