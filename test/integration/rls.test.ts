import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, withTenant, type Pool } from '../../src/db/pool.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { registerAuditKey } from '../../src/core/audit/mac.js';
import { appendAudit } from '../../src/db/queries/audit.js';
import { randomKey } from '../../src/crypto/random.js';

let db: TestDatabase;
let admin: Pool;
let app: Pool;
let a: string;
let b: string;

beforeAll(async () => {
  db = await createTestDatabase('rls');
  admin = createPool(db.adminUrl, 2);
  app = createPool(db.appUrl, 2);
  const key = randomKey();
  registerAuditKey(admin, key);
  registerAuditKey(app, key);
  const { rows } = await admin.query<{ id: string }>(
    "INSERT INTO tenants (slug, name) VALUES ('company-a', 'A'), ('company-b', 'B') RETURNING id",
  );
  [a, b] = [rows[0]!.id, rows[1]!.id];
  for (const t of [a, b]) {
    await admin.query(
      `INSERT INTO employees (tenant_id, full_name, employee_number) VALUES ($1, 'Alex', 'E1'), ($1, 'Sam', 'E2')`,
      [t],
    );
  }
});

afterAll(async () => {
  await app.end();
  await admin.end();
  await db.drop();
});

describe('row-level security for the app role', () => {
  it('sees only the rows of the company set for the transaction', async () => {
    const rows = await withTenant(
      app,
      a,
      async (c) => (await c.query<{ tenant_id: string }>('SELECT tenant_id FROM employees')).rows,
    );
    expect(rows).toHaveLength(2);
    expect(rows.every((r: { tenant_id: string }) => r.tenant_id === a)).toBe(true);
  });

  it('sees nothing at all when no company is set', async () => {
    const { rows } = await app.query('SELECT * FROM employees');
    expect(rows).toHaveLength(0);
    const tenants = await app.query('SELECT * FROM tenants');
    expect(tenants.rows).toHaveLength(0);
  });

  it('sees nothing after a tenant transaction ended on the same connection', async () => {
    const client = await app.connect();
    try {
      await client.query('BEGIN');
      await client.query("SELECT set_config('attendux.tenant_id', $1, true)", [a]);
      await client.query('COMMIT');
      const { rows } = await client.query('SELECT * FROM employees');
      expect(rows).toHaveLength(0);
    } finally {
      client.release();
    }
  });

  it('cannot update or delete rows of another company', async () => {
    const result = await withTenant(app, a, async (c) => {
      const upd = await c.query("UPDATE employees SET full_name = 'hacked' WHERE tenant_id = $1", [b]);
      const del = await c.query('DELETE FROM employees WHERE tenant_id = $1', [b]);
      return [upd.rowCount, del.rowCount];
    });
    expect(result).toEqual([0, 0]);
    const { rows } = await admin.query(
      "SELECT count(*)::int AS n FROM employees WHERE tenant_id = $1 AND full_name <> 'hacked'",
      [b],
    );
    expect(rows[0].n).toBe(2);
  });

  it('cannot insert a row into another company', async () => {
    await expect(
      withTenant(app, a, (c) =>
        c.query(`INSERT INTO employees (tenant_id, full_name) VALUES ($1, 'Mallory')`, [b]),
      ),
    ).rejects.toThrow(/row-level security/);
  });

  it('cannot reference another company’s rows through a foreign key', async () => {
    const { rows } = await admin.query<{ id: string }>(
      'SELECT id FROM employees WHERE tenant_id = $1 LIMIT 1',
      [b],
    );
    await expect(
      withTenant(app, a, (c) =>
        c.query(
          `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, geofence, method)
           VALUES ($1, $2, 'check_in', now(), 'unknown', 'manual')`,
          [a, rows[0]!.id],
        ),
      ),
    ).rejects.toThrow(/foreign key/);
  });

  it('cannot turn row-level security off or read the migrations table', async () => {
    await expect(app.query('ALTER TABLE employees DISABLE ROW LEVEL SECURITY')).rejects.toThrow(/owner/);
    await expect(app.query('SELECT * FROM pgmigrations')).rejects.toThrow(/permission denied/);
  });

  it('lets the admin role see every company', async () => {
    const { rows } = await admin.query('SELECT count(*)::int AS n FROM employees');
    expect(rows[0].n).toBe(4);
  });
});

describe('audit log', () => {
  it('is append-only for the app role and the owner alike', async () => {
    // The app role appends only through attendux_audit_next/append (the server's path), never by INSERT.
    await expect(
      withTenant(app, a, (c) =>
        c.query(
          `INSERT INTO audit_log (tenant_id, seq, actor, action, prev_hash, hash) VALUES ($1, 1, 'u', 'x', '\\x', '\\x')`,
          [a],
        ),
      ),
    ).rejects.toThrow(/permission denied/);
    await withTenant(app, a, (c) => appendAudit(c, { tenantId: a, actor: 'u', action: 'x' }));
    // ...and only for the company of its transaction.
    await expect(
      withTenant(app, a, (c) => appendAudit(c, { tenantId: b, actor: 'u', action: 'forged' })),
    ).rejects.toThrow(/current company/);
    await expect(withTenant(app, a, (c) => c.query('DELETE FROM audit_log'))).rejects.toThrow(
      /permission denied/,
    );
    await expect(admin.query("UPDATE audit_log SET actor = 'someone else'")).rejects.toThrow(/append-only/);
    await expect(admin.query('DELETE FROM audit_log')).rejects.toThrow(/append-only/);
    await expect(admin.query('TRUNCATE audit_log')).rejects.toThrow(/append-only/);
    // The old purge switch no longer opens anything.
    await expect(
      admin.query("BEGIN; SET LOCAL attendux.audit_purge = 'on'; DELETE FROM audit_log; COMMIT"),
    ).rejects.toThrow(/append-only/);
    await admin.query('ROLLBACK').catch(() => undefined);
  });

  it('chains entries per company with sequence numbers and hashes', async () => {
    for (let i = 0; i < 3; i++) await appendAudit(admin, { tenantId: b, actor: 'cli', action: 'y' });
    // A row that does not continue the head is refused by the trigger, whoever writes it.
    await expect(
      admin.query(
        `INSERT INTO audit_log (tenant_id, seq, actor, action, prev_hash, hash, mac_version)
         VALUES ($1, 7, 'cli', 'y', '\\x', decode(repeat('00', 32), 'hex'), 2)`,
        [b],
      ),
    ).rejects.toThrow(/does not continue the chain/);
    const { rows } = await admin.query<{ seq: number; prev: string; hash: string }>(
      `SELECT seq, encode(prev_hash, 'hex') AS prev, encode(hash, 'hex') AS hash FROM audit_log WHERE tenant_id = $1 ORDER BY seq`,
      [b],
    );
    expect(rows.map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(rows[1]!.prev).toBe(rows[0]!.hash);
    expect(rows[2]!.prev).toBe(rows[1]!.hash);
    expect(rows[0]!.hash).toMatch(/^[0-9a-f]{64}$/);
  });
});
