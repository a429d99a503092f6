import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type pg from 'pg';
import { AttenduxError } from '../../errors.js';
import { connectClient, formatSql } from '../../db/pool.js';
import { schemaVersion } from '../../db/migrate.js';
import { openChain, planFromCatalog, restoreIdentities, type OpenedChain } from './chain.js';
import { registerAuditKey } from '../audit/mac.js';
import { auditFailure, prepare, writeRestoreAudit, type Prepared, type RestoreOptions } from './toolkit.js';
import { copyOptions, type ManifestTable } from '../archive/format.js';
import { applyChanges, tableEntries } from './load.js';
import type { RestorePlan } from './plan.js';
import { reapplyTenantLedger } from '../ledger/index.js';
import { isUuid } from '../../lib/uuid.js';

export interface TenantRestoreOptions extends RestoreOptions {
  /** The company: its slug or id. */
  tenant: string;
}

export interface TenantRestoreResult {
  plan: RestorePlan;
  tenantId: string;
  slug: string;
  /** Per table: rows of the company removed from the live database and rows put back. */
  tables: Record<string, { removed: number; restored: number }>;
  seconds: number;
}

/** The company's audit trail is append-only and records this restore: it is kept as it is. */
const KEPT = ['audit_log', 'security_ledger'];
const stage = (t: string) => `restore_stage_${t}`.slice(0, 63);

/** The plan (or the one shown, to carry out exactly), checked against the live database's schema. */
async function livePlan(opts: TenantRestoreOptions, shown?: RestorePlan) {
  const prep = await prepare(opts);
  try {
    const plan =
      shown ??
      (await planFromCatalog(prep.loaded, {
        backupId: opts.backupId,
        at: opts.at,
        mode: 'tenant',
        tenant: opts.tenant,
        liveDatabase: prep.live,
      }));
    const c = await prep.install.admin.connect();
    try {
      const live = await schemaVersion(c);
      if (live !== plan.schemaVersion)
        throw new AttenduxError(
          'RESTORE_WRONG_SCHEMA',
          `the backup has schema version ${plan.schemaVersion}, the live database ${live ?? 'none'}; a company can only be restored from a backup of the current schema`,
          {
            hint: 'restore the whole backup into a new database (--into) and copy the company over from there',
          },
        );
    } finally {
      c.release();
    }
    return { prep, plan };
  } catch (err) {
    await prep.install.close();
    throw err;
  }
}

/** What --dry-run and the prompt show; restoreTenant(opts, plan) carries out exactly that. */
export async function previewTenantRestore(opts: TenantRestoreOptions): Promise<{ plan: RestorePlan }> {
  const { prep, plan } = await livePlan(opts);
  await prep.install.close();
  return { plan };
}

/**
 * `attendux restore --tenant T`: one company's rows, at the chosen point, put back into the LIVE database in
 * one transaction. The company's state is first built in temporary tables from the decrypted chain (rows
 * of the full filtered on the company, then its changes), so the live transaction is short: delete the
 * company's rows (children first), insert the restored ones (parents first). Other companies are not read
 * or written; the company's audit log is kept and gets an entry about the restore. Change capture stays on,
 * so the next incremental backup carries the restore.
 */
export async function restoreTenant(
  opts: TenantRestoreOptions,
  planned?: { plan: RestorePlan },
): Promise<TenantRestoreResult> {
  const t0 = Date.now();
  const { prep, plan } = await livePlan(opts, planned?.plan);
  try {
    const identities = await restoreIdentities(prep.loaded, opts.identityFile, opts.env);
    const chain = await openChain(prep.loaded.backupDir, plan, identities, {
      tempRoot: opts.tempRoot,
      onStep: (id) => opts.onProgress?.({ phase: 'decrypt', backup: id }),
    });
    const c = await connectClient(prep.install.db.adminUrl, 'attendux-restore');
    registerAuditKey(c, prep.install.secrets.auditKey);
    try {
      const tables = chain.full.tables.filter((t) => !KEPT.includes(t.name));
      const { tenantId, slug } = await stageCompany(c, chain, tables, plan, opts);
      const result = await replaceCompany(c, tables, tenantId, prep, plan, opts);
      return { plan, tenantId, slug, tables: result, seconds: (Date.now() - t0) / 1000 };
    } catch (err) {
      await auditFailure(prep, 'tenant', err, { tenant: opts.tenant });
      throw err;
    } finally {
      await c.end().catch(() => undefined); // closing the client: the outcome is decided
      await chain.cleanup();
    }
  } finally {
    await prep.install.close();
  }
}

/** Build the company's state at the point in temporary `stage` tables: its rows of the full, then its changes. */
async function stageCompany(
  c: pg.Client,
  chain: OpenedChain,
  tables: ManifestTable[],
  plan: RestorePlan,
  opts: TenantRestoreOptions,
): Promise<{ tenantId: string; slug: string }> {
  const { from: copyFrom } = await import('pg-copy-streams');
  const dir = chain.steps[0]!.backup.dir;
  for (const t of tables)
    await c.query(
      await formatSql(c, 'CREATE TEMP TABLE %I (LIKE public.%I INCLUDING DEFAULTS)', stage(t.name), t.name),
    );
  const load = async (table: string, where: string | null) => {
    const t = tables.find((x) => x.name === table)!;
    const sql = where
      ? await formatSql(c, `COPY %I FROM STDIN${copyOptions(t)} WHERE %s`, stage(table), where)
      : await formatSql(c, 'COPY %I FROM STDIN' + copyOptions(t), stage(table));
    opts.onProgress?.({ phase: 'load', table });
    for (const e of tableEntries(t))
      await pipeline(createReadStream(join(dir, e)), createGunzip(), c.query(copyFrom(sql)));
  };
  // The companies table is small: load it whole to find the company by slug at that point too.
  await load('tenants', null);
  const tenantId = await resolveTenant(c, opts.tenant);
  await c.query(await formatSql(c, 'DELETE FROM %I WHERE id <> %L', stage('tenants'), tenantId));
  for (const t of tables)
    if (t.name !== 'tenants') await load(t.name, await formatSql(c, 'tenant_id = %L', tenantId));
  opts.onProgress?.({ phase: 'apply' });
  await applyChanges(c, chain, { until: plan.at, target: stage, tenantId, skip: KEPT });
  const { rows: then } = await c.query<{ slug: string }>(
    await formatSql(c, 'SELECT slug FROM %I', stage('tenants')),
  );
  if (!then.length)
    throw new AttenduxError('NOT_FOUND', `company ${opts.tenant} did not exist at ${plan.pointInTime}`, {
      hint: 'pick a later point (--backup or --at)',
    });
  return { tenantId, slug: then[0]!.slug };
}

/** The company's id: the one given, else its slug in the live database or (if gone) in the staged backup. */
async function resolveTenant(c: pg.Client, tenant: string): Promise<string> {
  let tenantId: string | undefined;
  if (isUuid(tenant)) tenantId = tenant.toLowerCase();
  else {
    const live = await c.query<{ id: string }>('SELECT id::text FROM tenants WHERE slug = $1', [tenant]);
    const then = await c.query<{ id: string }>(
      await formatSql(c, 'SELECT id::text FROM %I WHERE slug = $1', stage('tenants')),
      [tenant],
    );
    tenantId = live.rows[0]?.id ?? then.rows[0]?.id;
  }
  if (!tenantId)
    throw new AttenduxError('NOT_FOUND', `no company "${tenant}" in the live database or the backup`, {
      hint: 'give the company slug or id (`attendux tenant list`)',
    });
  return tenantId;
}

/** The live transaction: delete the company's rows (children first), insert the staged ones (parents first). */
async function replaceCompany(
  c: pg.Client,
  tables: ManifestTable[],
  tenantId: string,
  prep: Prepared,
  plan: RestorePlan,
  opts: TenantRestoreOptions,
): Promise<TenantRestoreResult['tables']> {
  const result: TenantRestoreResult['tables'] = {};
  await c.query('BEGIN');
  try {
    await c.query('SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE', [tenantId]);
    for (const t of [...tables].reverse()) {
      if (t.name === 'tenants') continue;
      const del = await c.query(await formatSql(c, 'DELETE FROM %I WHERE tenant_id = %L', t.name, tenantId));
      result[t.name] = { removed: del.rowCount ?? 0, restored: 0 };
    }
    const cols = await columnList(c, 'tenants');
    const upd = await c.query(
      await formatSql(
        c,
        `UPDATE tenants SET (${cols}) = (SELECT ${cols} FROM %I) WHERE id = %L`,
        stage('tenants'),
        tenantId,
      ),
    );
    if (!upd.rowCount)
      await c.query(await formatSql(c, 'INSERT INTO tenants SELECT * FROM %I', stage('tenants')));
    result.tenants = { removed: upd.rowCount ?? 0, restored: 1 };
    for (const t of tables) {
      if (t.name === 'tenants') continue;
      const ins = await c.query(await formatSql(c, 'INSERT INTO %I SELECT * FROM %I', t.name, stage(t.name)));
      result[t.name]!.restored = ins.rowCount ?? 0;
    }
    await reapplyTenantLedger(c, {
      tenantId,
      dataDir: prep.loaded.config.dataDir,
      pointInTime: plan.pointInTime,
    });
    await writeRestoreAudit(
      c,
      prep.actor,
      plan,
      { tenant: opts.tenant, outcome: 'success', tables: result },
      tenantId,
    );
    await c.query('COMMIT');
  } catch (err) {
    // ROLLBACK of a failed transaction: its error is thrown below
    await c.query('ROLLBACK').catch(() => undefined);
    throw new AttenduxError(
      'RESTORE_FAILED',
      `restoring company ${opts.tenant} failed: ${(err as Error).message}`,
      {
        cause: err,
        hint: 'the transaction was rolled back: the live database is unchanged',
      },
    );
  }
  return result;
}

async function columnList(c: pg.ClientBase, table: string): Promise<string> {
  const { rows } = await c.query<{ cols: string }>(
    `SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) AS cols FROM pg_attribute
      WHERE attrelid = format('%I', $1::text)::regclass AND attnum > 0 AND NOT attisdropped`,
    [table],
  );
  return rows[0]!.cols;
}
