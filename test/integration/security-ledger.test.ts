import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { backupConfig } from '../../src/core/backup/config.js';
import { backupFull } from '../../src/core/backup/full.js';
import { backupIncremental } from '../../src/core/backup/incremental.js';
import { restoreConfig } from '../../src/core/restore/config.js';
import { restoreInto } from '../../src/core/restore/execute.js';
import { restoreInPlace } from '../../src/core/restore/in-place.js';
import { restoreTenant } from '../../src/core/restore/tenant.js';
import { checkLedgerEffects, restoreDrill } from '../../src/core/restore/drill.js';
import { revokeApiKey } from '../../src/core/keys/api-keys.js';
import { disableUser, resetPassword } from '../../src/core/accounts/users.js';
import {
  collectLedger,
  ledgerPath,
  readLedgerFile,
  reapplyLedger,
  syncLedgerFile,
  withLedgerSync,
} from '../../src/core/ledger/index.js';
import { openInstall, type Install } from '../../src/core/install.js';
import { buildApp } from '../../src/server/app.js';
import { createPool, type Pool } from '../../src/db/pool.js';
import type { TestInstall } from '../helpers/backup.js';
import type { TestDatabase } from '../helpers/db.js';
import { restoreFixture, urlOf, type RestoreFixture } from '../helpers/restore.js';
import { ORIGIN, PASSWORD, seedCompany, type Company } from '../helpers/server.js';

const NEW_PASSWORD = 'a brand new password after the leak';

let f: RestoreFixture;
let db: TestDatabase;
let admin: Pool;
let inst: TestInstall;
let install: Install;
let hmacKey: string;
const made: string[] = [];
const cfg = () => ({ configPath: inst.configPath, identityFile: inst.identityFile });

beforeAll(async () => {
  f = await restoreFixture('ledger');
  ({ db, admin, inst, install, hmacKey } = f);
});

afterAll(async () => f?.close(made, { admin, install }));

/**
 * After the backup: revoke the check-in key, disable the manager, reset the hr user's password (it leaked),
 * downgrade the admin to employee. These are what a restore must never undo.
 */
async function closeAccess(co: Company): Promise<void> {
  const actor = 'test';
  await withLedgerSync(
    install,
    revokeApiKey(install.admin, { tenant: co.slug, key: co.keyIds.checkIn, actor }),
  );
  await withLedgerSync(
    install,
    disableUser(install.admin, { tenant: co.slug, email: co.users.manager.email, actor }),
  );
  await withLedgerSync(
    install,
    resetPassword(install.admin, {
      tenant: co.slug,
      email: co.users.hr.email,
      actor,
      password: NEW_PASSWORD,
      bcryptCost: 4,
    }),
  );
  await admin.query(`UPDATE users SET role = 'employee' WHERE tenant_id = $1 AND id = $2`, [
    co.id,
    co.users.admin.id,
  ]);
}

interface Access {
  keyRevoked: boolean;
  managerDisabled: boolean;
  hrHash: string;
  adminRole: string;
  epochs: Record<string, number>;
}

async function accessIn(url: string, co: Company): Promise<Access> {
  const p = createPool(url, 1);
  try {
    const k = await p.query<{ revoked: boolean }>(
      'SELECT revoked_at IS NOT NULL AS revoked FROM api_keys WHERE id = $1',
      [co.keyIds.checkIn],
    );
    const u = await p.query<{
      id: string;
      role: string;
      disabled: boolean;
      password_hash: string;
      session_epoch: number;
    }>(
      'SELECT id, role, disabled_at IS NOT NULL AS disabled, password_hash, session_epoch FROM users WHERE tenant_id = $1',
      [co.id],
    );
    const by = (id: string) => u.rows.find((r) => r.id === id)!;
    return {
      keyRevoked: k.rows[0]!.revoked,
      managerDisabled: by(co.users.manager.id).disabled,
      hrHash: by(co.users.hr.id).password_hash,
      adminRole: by(co.users.admin.id).role,
      epochs: Object.fromEntries(u.rows.map((r) => [r.id, r.session_epoch])),
    };
  } finally {
    await p.end();
  }
}

/** Access in the restored database is exactly as closed as in the live one, and every older session is over. */
function expectClosed(restored: Access, live: Access): void {
  expect(restored.keyRevoked).toBe(true);
  expect(restored.managerDisabled).toBe(true);
  expect(restored.hrHash).toBe(live.hrHash);
  expect(restored.adminRole).toBe('employee');
  for (const [id, epoch] of Object.entries(live.epochs)) expect(restored.epochs[id]).toBeGreaterThan(epoch);
}

describe('the security ledger', () => {
  it('records every revocation, epoch bump, disablement, password change and downgrade, and mirrors them', async () => {
    const co = await seedCompany(admin, hmacKey, 'ledger-rec');
    await closeAccess(co);
    const { rows } = await admin.query<{ kind: string; entity_id: string }>(
      'SELECT kind, entity_id::text FROM security_ledger WHERE tenant_id = $1 ORDER BY at',
      [co.id],
    );
    const kinds = rows.map((r) => `${r.kind}:${r.entity_id}`);
    expect(kinds).toContain(`api_key.revoked:${co.keyIds.checkIn}`);
    expect(kinds).toContain(`user.disabled:${co.users.manager.id}`);
    expect(kinds).toContain(`user.session_epoch:${co.users.manager.id}`);
    expect(kinds).toContain(`user.password:${co.users.hr.id}`);
    expect(kinds).toContain(`user.role_downgrade:${co.users.admin.id}`);
    // The SQL downgrade was not mirrored by a CLI command; a sync (every config backup runs one) adds it.
    await syncLedgerFile(admin, inst.dataDir);
    const file = await readLedgerFile(ledgerPath(inst.dataDir));
    for (const r of rows)
      expect(file.some((e) => e.kind === r.kind && e.entityId === r.entity_id)).toBe(true);
    // An upgrade is not a change to protect; a promotion back is not recorded.
    const before = rows.length;
    await admin.query(`UPDATE users SET role = 'admin' WHERE id = $1`, [co.users.admin.id]);
    const after = await admin.query('SELECT 1 FROM security_ledger WHERE tenant_id = $1', [co.id]);
    expect(after.rowCount).toBe(before);
  });

  it('the app role can read only its own company’s entries and write none', async () => {
    const app = createPool(db.appUrl, 1);
    try {
      const c = await app.connect();
      try {
        await c.query('BEGIN');
        const co = await admin.query<{ id: string }>("SELECT id FROM tenants WHERE slug = 'ledger-rec'");
        await c.query('SELECT attendux_enter_tenant($1)', [co.rows[0]!.id]);
        const { rows } = await c.query<{ n: number; other: number }>(
          'SELECT count(*)::int AS n, count(*) FILTER (WHERE tenant_id <> $1)::int AS other FROM security_ledger',
          [co.rows[0]!.id],
        );
        expect(rows[0]!.n).toBeGreaterThan(0);
        expect(rows[0]!.other).toBe(0);
        await expect(
          c.query(
            `INSERT INTO security_ledger (tenant_id, kind, entity_id) VALUES ($1, 'user.password', $1)`,
            [co.rows[0]!.id],
          ),
        ).rejects.toMatchObject({ code: '42501' });
      } finally {
        await c.query('ROLLBACK');
        c.release();
      }
    } finally {
      await app.end();
    }
  });

  it('restore --into re-applies it: the restored database keeps access closed and ends older sessions', async () => {
    const co = await seedCompany(admin, hmacKey, 'ledger-into');
    await backupFull({ configPath: inst.configPath });
    await closeAccess(co);
    const live = await accessIn(db.adminUrl, co);
    const into = `${db.name}_li`.slice(0, 63);
    made.push(into);
    await restoreInto({ ...cfg(), into });
    expectClosed(await accessIn(urlOf(db, into), co), live);
  });

  it('restore --at (a point in time between two backups) re-applies it too', async () => {
    const co = await seedCompany(admin, hmacKey, 'ledger-at');
    await backupFull({ configPath: inst.configPath });
    await new Promise((r) => setTimeout(r, 50));
    const at = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 50));
    await closeAccess(co);
    await backupIncremental({ configPath: inst.configPath });
    const live = await accessIn(db.adminUrl, co);
    const into = `${db.name}_lat`.slice(0, 63);
    made.push(into);
    const r = await restoreInto({ ...cfg(), into, at });
    expect(r.plan.pointInTime).toBe(at);
    expectClosed(await accessIn(urlOf(db, into), co), live);
  });

  it('restore --drill re-applies it too and still passes every check', async () => {
    const co = await seedCompany(admin, hmacKey, 'ledger-drill');
    await backupFull({ configPath: inst.configPath });
    await closeAccess(co);
    const r = await restoreDrill({ ...cfg() });
    expect(r.checks.filter((c) => !c.ok)).toEqual([]);
    expect(r.ok).toBe(true);
    // The drilled database is dropped; its `security-ledger` check proves the re-application happened in it.
    const check = r.checks.find((c) => c.name === 'security-ledger')!;
    expect(check).toBeDefined();
    expect(check.ok).toBe(true);
    for (const named of [
      `api_key.revoked ${co.keyIds.checkIn}`,
      `user.disabled ${co.users.manager.id}`,
      `user.session_epoch ${co.users.manager.id} >= `,
      `user.password ${co.users.hr.id}`,
      `user.role_downgrade ${co.users.admin.id}`,
    ])
      expect(check.detail).toContain(named);
  });

  it('the drill check fails, naming the entry, when a ledger effect does not hold', async () => {
    const co = await seedCompany(admin, hmacKey, 'ledger-undo');
    await backupFull({ configPath: inst.configPath });
    await closeAccess(co);
    const into = `${db.name}_lundo`.slice(0, 63);
    made.push(into);
    const r = await restoreInto({ ...cfg(), into });
    const entries = await collectLedger({ liveAdminUrl: db.adminUrl, dataDir: inst.dataDir });
    const p = createPool(urlOf(db, into), 1);
    try {
      const ok = await checkLedgerEffects(p, entries, r.plan.pointInTime);
      expect(ok).toMatchObject({ name: 'security-ledger', ok: true });
      // Undo one effect each, as a restore that skipped the ledger would have left them.
      const undo = [
        [
          `UPDATE api_keys SET revoked_at = NULL WHERE id = $1`,
          co.keyIds.checkIn,
          `api_key.revoked ${co.keyIds.checkIn}`,
        ],
        [
          `UPDATE users SET disabled_at = NULL WHERE id = $1`,
          co.users.manager.id,
          `user.disabled ${co.users.manager.id}`,
        ],
        [
          `UPDATE users SET password_hash = 'old' WHERE id = $1`,
          co.users.hr.id,
          `user.password ${co.users.hr.id}`,
        ],
        [
          `UPDATE users SET role = 'owner' WHERE id = $1`,
          co.users.admin.id,
          `user.role_downgrade ${co.users.admin.id}`,
        ],
        [
          `UPDATE users SET session_epoch = 0 WHERE id = $1`,
          co.users.manager.id,
          `user.session_epoch ${co.users.manager.id}`,
        ],
      ] as const;
      for (const [sql, id, named] of undo) {
        const c = await p.connect();
        try {
          await c.query('BEGIN');
          // As a replay would (the triggers would otherwise record the change as a new entry).
          await c.query("SELECT set_config('attendux.ledger_replay', 'on', true)");
          await c.query(sql, [id]);
          const bad = await checkLedgerEffects(c, entries, r.plan.pointInTime);
          expect(bad.ok, named).toBe(false);
          expect(bad.detail).toMatch(/^1 of \d+ ledger effect\(s\) do not hold in the restored database: /);
          expect(bad.detail).toContain(named);
        } finally {
          await c.query('ROLLBACK');
          c.release();
        }
      }
    } finally {
      await p.end();
    }
  });

  it('restore --tenant re-applies it in the same transaction', async () => {
    const co = await seedCompany(admin, hmacKey, 'ledger-tenant');
    await backupFull({ configPath: inst.configPath });
    await closeAccess(co);
    const live = await accessIn(db.adminUrl, co);
    await restoreTenant({ ...cfg(), tenant: co.slug });
    expectClosed(await accessIn(db.adminUrl, co), live);
  });

  it('restore --in-place re-applies it: against the real server, nothing revoked works again', async () => {
    const co = await seedCompany(admin, hmacKey, 'ledger-inplace');
    let app: FastifyInstance = await buildApp({ install, logger: false, bcryptCost: 4 });
    const loginRes = async (email: string, password: string) =>
      app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { company: co.slug, email, password },
      });
    const ownerLogin = await loginRes(co.users.owner.email, PASSWORD);
    expect(ownerLogin.statusCode).toBe(200);
    const ownerCookie = `atx_session=${ownerLogin.cookies.find((c) => c.name === 'atx_session')!.value}`;
    await backupFull({ configPath: inst.configPath });
    await closeAccess(co);
    await app.close();
    await admin.end();
    await restoreInPlace({ ...cfg(), dropOld: true });
    admin = createPool(db.adminUrl, 4);
    app = await buildApp({
      install: await openInstall({ configPath: inst.configPath }),
      logger: false,
      bcryptCost: 4,
    });
    try {
      const key = await app.inject({
        method: 'POST',
        url: '/api/v1/attendance/check-in',
        headers: { authorization: `Bearer ${co.keys.checkIn}` },
        payload: { employeeId: co.employeeId },
      });
      expect(key.statusCode).toBe(401);
      expect((await loginRes(co.users.manager.email, PASSWORD)).statusCode).toBe(401);
      expect((await loginRes(co.users.hr.email, PASSWORD)).statusCode).toBe(401);
      expect((await loginRes(co.users.hr.email, NEW_PASSWORD)).statusCode).toBe(200);
      const adminLogin = await loginRes(co.users.admin.email, PASSWORD);
      expect(adminLogin.json().user.role).toBe('employee');
      // A session that existed at backup time is over.
      const me = await app.inject({
        method: 'GET',
        url: '/api/v1/me',
        headers: { cookie: ownerCookie, origin: ORIGIN },
      });
      expect(me.statusCode).toBe(401);
    } finally {
      await app.close();
    }
  });

  it('on a new server (no live ledger), the ledger from the newest config backup is re-applied', async () => {
    const co = await seedCompany(admin, hmacKey, 'ledger-dr');
    await backupFull({ configPath: inst.configPath });
    await closeAccess(co);
    const live = await accessIn(db.adminUrl, co);
    const cb = await backupConfig({ configPath: inst.configPath, serviceFiles: [] });
    expect(cb.written).toBe(true);
    // The new server: an empty directory, the backups copied over, config-only restore first.
    const fresh = await mkdtemp(join(tmpdir(), 'attendux-dr-'));
    try {
      const configPath = join(fresh, 'etc', 'attendux.json');
      await restoreConfig({
        configPath,
        backupDir: inst.backupDir,
        identityFile: inst.identityFile,
        env: {},
      });
      const newDataDir = join(fresh, 'etc', 'data');
      const mirrored = await readLedgerFile(ledgerPath(newDataDir));
      expect(mirrored.some((e) => e.kind === 'api_key.revoked' && e.entityId === co.keyIds.checkIn)).toBe(
        true,
      );
      // The database restore on the new server finds no live ledger, only the mirror.
      const into = `${db.name}_ldr`.slice(0, 63);
      made.push(into);
      await restoreInto({ ...cfg(), into });
      // Undo what the restore took from the live database, then apply the mirror alone.
      const c = createPool(urlOf(db, into), 1);
      await c.query(`UPDATE api_keys SET revoked_at = NULL WHERE id = $1;`, [co.keyIds.checkIn]);
      await c.query(`UPDATE users SET disabled_at = NULL, role = 'admin' WHERE id = $1 OR id = $2`, [
        co.users.manager.id,
        co.users.admin.id,
      ]);
      await c.query('DELETE FROM security_ledger');
      await c.end();
      await reapplyLedger({
        targetUrl: urlOf(db, into),
        dataDir: newDataDir,
        pointInTime: new Date(Date.now() - 3_600_000).toISOString(),
      });
      expectClosed(await accessIn(urlOf(db, into), co), live);
    } finally {
      await rm(fresh, { recursive: true, force: true });
    }
  });
});
