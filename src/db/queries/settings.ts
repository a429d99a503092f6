import type { Queryable } from '../pool.js';

/** One company's stored settings as key -> value (null when none is stored). */
export async function storedSettings(
  q: Queryable,
  tenantId: string,
): Promise<Record<string, unknown> | null> {
  const { rows } = await q.query<{ s: Record<string, unknown> | null }>(
    'SELECT jsonb_object_agg(key, value) AS s FROM tenant_settings WHERE tenant_id = $1',
    [tenantId],
  );
  return rows[0]?.s ?? null;
}

export async function upsertSetting(
  q: Queryable,
  tenantId: string,
  key: string,
  value: unknown,
  by: string,
): Promise<void> {
  await q.query(
    `INSERT INTO tenant_settings (tenant_id, key, value, updated_at, updated_by) VALUES ($1, $2, $3, now(), $4)
     ON CONFLICT (tenant_id, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now(), updated_by = EXCLUDED.updated_by`,
    [tenantId, key, JSON.stringify(value), by],
  );
}

export interface StoredSettingRow {
  company: string;
  key: string;
  value: unknown;
  updatedAt: Date;
  updatedBy: string | null;
}

/** Every company's stored settings, for the config backup (an admin connection: every company). */
export async function allStoredSettings(q: Queryable): Promise<StoredSettingRow[]> {
  const { rows } = await q.query<StoredSettingRow>(
    `SELECT t.slug AS company, s.key, s.value, s.updated_at AS "updatedAt", s.updated_by AS "updatedBy"
       FROM tenant_settings s JOIN tenants t ON t.id = s.tenant_id ORDER BY t.slug, s.key`,
  );
  return rows;
}
