import { readFile } from 'node:fs/promises';
import { connectClient, createPool, ddl, type Pool } from '../../src/db/pool.js';
import { openInstall, type Install } from '../../src/core/install.js';
import { createTestDatabase, type TestDatabase } from './db.js';
import { makeInstall, type TestInstall as BackupTestInstall } from './backup.js';

/**
 * Content checksum of every application table: row count and md5 of all rows in primary-key order. The
 * audit log leaves out the entries a restore writes about itself (and, with `exceptTenant`, one company).
 */
export async function tableChecksums(
  url: string,
  opts: { exceptTenant?: string; onlyTenant?: string } = {},
): Promise<Record<string, string>> {
  const c = await connectClient(url);
  try {
    const { rows: tables } = await c.query<{ t: string; pk: string[] }>(
      `SELECT t, ARRAY(SELECT a.attname::text FROM pg_index i
                         CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                        WHERE i.indrelid = format('%I', t)::regclass AND i.indisprimary ORDER BY k.ord) AS pk
         FROM attendux_backup_tables() t ORDER BY 1`,
    );
    const out: Record<string, string> = {};
    for (const { t, pk } of tables) {
      // Every restore ends every session (users.session_epoch + 1) and records that in the security ledger
      // (src/core/ledger): by design a restored database differs from its source in exactly these.
      if (t === 'security_ledger') continue;
      const col = t === 'tenants' ? 'id' : 'tenant_id';
      const conds: string[] = [];
      const params: string[] = [];
      if (t === 'audit_log') conds.push(`action NOT LIKE 'restore%'`);
      if (opts.exceptTenant) {
        params.push(opts.exceptTenant);
        conds.push(`${col} <> $${params.length}::uuid`);
      }
      if (opts.onlyTenant) {
        params.push(opts.onlyTenant);
        conds.push(`${col} = $${params.length}::uuid`);
      }
      const { rows } = await c.query<{ sql: string }>(
        `SELECT format('SELECT count(*)::text || '':'' || coalesce(md5(string_agg(%s, E''\\n'' ORDER BY %s)), '''') AS fp FROM %I x %s',
                       CASE WHEN $2::text = 'users' THEN '(to_jsonb(x) - ''session_epoch'')::text' ELSE 'x::text' END,
                       (SELECT string_agg(format('x.%I', p), ', ') FROM unnest($1::text[]) p), $2::text, $3::text) AS sql`,
        [pk, t, conds.length ? `WHERE ${conds.join(' AND ')}` : ''],
      );
      const r = await c.query<{ fp: string }>(rows[0]!.sql, params);
      out[t] = r.rows[0]!.fp;
    }
    return out;
  } finally {
    await c.end();
  }
}

export async function databaseExists(db: TestDatabase, name: string): Promise<boolean> {
  const c = await connectClient(db.superuserUrl);
  try {
    const { rowCount } = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    return rowCount === 1;
  } finally {
    await c.end();
  }
}

export async function dropDatabases(superuserUrl: string, names: string[]): Promise<void> {
  const c = await connectClient(superuserUrl);
  try {
    for (const n of names) await ddl(c, 'DROP DATABASE IF EXISTS %I WITH (FORCE)', n);
  } finally {
    await c.end();
  }
}

export function urlOf(db: TestDatabase, name: string, which: 'admin' | 'super' = 'admin'): string {
  const u = new URL(which === 'admin' ? db.adminUrl : db.superuserUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

/** What the restore-around-a-change tests share: a database, an install with a backup set, its admin pool. */
export interface RestoreFixture {
  db: TestDatabase;
  admin: Pool;
  inst: BackupTestInstall;
  install: Install;
  /** The install's API-key HMAC key (seedCompany needs it). */
  hmacKey: string;
  /**
   * Drop the databases a test restored into (`made`), then everything of the fixture; `current` are the pool and
   * install the test re-opened after swapping the database in place (the fixture's own are closed by then).
   */
  close(made: string[], current?: { admin: Pool; install: Install }): Promise<void>;
}

export async function restoreFixture(label: string): Promise<RestoreFixture> {
  const db = await createTestDatabase(label);
  const admin = createPool(db.adminUrl, 4);
  const inst = await makeInstall(db);
  const hmacKey = (JSON.parse(await readFile(inst.secretsPath, 'utf8')) as { apiKeyHmacKey: string })
    .apiKeyHmacKey;
  const install = await openInstall({ configPath: inst.configPath });
  return {
    db,
    admin,
    inst,
    install,
    hmacKey,
    close: async (made, current = { admin, install }) => {
      await current.install.close();
      await current.admin.end();
      await dropDatabases(db.superuserUrl, made);
      await db.drop();
      await inst.cleanup();
    },
  };
}
