import type { Install } from './install.js';
import { loadSecrets } from './config/load.js';
import type { Secrets } from './config/schema.js';
import { writeFileAtomic } from '../lib/fs.js';
import { faceAad, open, seal, type DataKeyring } from '../crypto/aead.js';
import { randomKey } from '../crypto/random.js';
import { inTransaction } from '../db/pool.js';
import { appendAudit, SYSTEM_TENANT } from '../db/queries/audit.js';

export interface KeysReport {
  dataKeys: { id: string; active: boolean; templates: number }[];
  backupRecipients: string[];
  backupIdentityFile: string | null;
}

/** Key ids, which is active, how many templates each seals, and the backup recipients: never key material. */
export async function showKeys(install: Install): Promise<KeysReport> {
  const secrets = await loadSecrets(install.loaded.secretsPath);
  const { rows } = await install.admin.query<{ id: string; n: number }>(
    'SELECT face_key_id AS id, count(*)::int AS n FROM employees WHERE face_key_id IS NOT NULL GROUP BY 1',
  );
  const counts = new Map(rows.map((r) => [r.id, r.n]));
  const ids = new Set([...Object.keys(secrets.dataKeys), ...counts.keys()]);
  return {
    dataKeys: [...ids]
      .sort()
      .map((id) => ({ id, active: id === secrets.activeDataKeyId, templates: counts.get(id) ?? 0 })),
    backupRecipients: install.loaded.config.backup.recipients,
    backupIdentityFile: install.loaded.config.backup.identityFile ?? null,
  };
}

export function nextKeyId(existing: readonly string[]): string {
  const max = Math.max(0, ...existing.map((id) => /^k(\d+)$/.exec(id)).map((m) => (m ? Number(m[1]) : 0)));
  return `k${max + 1}`;
}

export interface RotateResult {
  newKeyId: string;
  previousKeyId: string;
  reencrypted: number;
  secretsPath: string;
}

/**
 * Add a new data-encryption key, make it active (the secrets file is rewritten atomically and keeps every
 * old key, so anything not yet re-sealed, or restored from an old backup, still opens), then re-seal every
 * face template under it in batches of `batchSize`, one transaction per batch. Audited install-wide.
 */
export async function rotateDataKey(
  install: Install,
  opts: { actor: string; batchSize?: number; onProgress?: (done: number) => void },
): Promise<RotateResult> {
  const path = install.loaded.secretsPath;
  const before = await loadSecrets(path);
  const newKeyId = nextKeyId(Object.keys(before.dataKeys));
  const after: Secrets = {
    ...before,
    dataKeys: { ...before.dataKeys, [newKeyId]: randomKey() },
    activeDataKeyId: newKeyId,
  };
  await writeFileAtomic(path, JSON.stringify(after, null, 2) + '\n', 0o600);
  const ring: DataKeyring = { keys: after.dataKeys, activeId: newKeyId };
  const reencrypted = await resealAll(install, ring, opts.batchSize ?? 500, opts.onProgress);
  await inTransaction(install.admin, (c) =>
    appendAudit(c, {
      tenantId: SYSTEM_TENANT,
      actor: opts.actor,
      action: 'keys.rotate_data_key',
      entityType: 'data_key',
      entityId: newKeyId,
      details: { previousKeyId: before.activeDataKeyId, reencrypted },
    }),
  );
  return { newKeyId, previousKeyId: before.activeDataKeyId, reencrypted, secretsPath: path };
}

/** Re-seal every template not under the active key; keyset pagination, so each row is visited once. */
export async function resealAll(
  install: Install,
  ring: DataKeyring,
  batchSize: number,
  onProgress?: (done: number) => void,
): Promise<number> {
  let done = 0;
  let after: [string, string] = [
    '00000000-0000-0000-0000-000000000000',
    '00000000-0000-0000-0000-000000000000',
  ];
  for (;;) {
    const n = await inTransaction(install.admin, async (c) => {
      const { rows } = await c.query<{
        tenant_id: string;
        id: string;
        face_template: Buffer;
        face_key_id: string;
      }>(
        `SELECT tenant_id, id, face_template, face_key_id FROM employees
          WHERE face_key_id IS NOT NULL AND face_key_id <> $1 AND (tenant_id, id) > ($2::uuid, $3::uuid)
          ORDER BY tenant_id, id LIMIT $4 FOR UPDATE`,
        [ring.activeId, after[0], after[1], batchSize],
      );
      if (!rows.length) return 0;
      const sealed = rows.map((r) => {
        const aad = faceAad(r.tenant_id, r.id);
        return seal(ring, open(ring, r.face_key_id, r.face_template, aad), aad).data;
      });
      await c.query(
        `UPDATE employees e SET face_template = v.t, face_key_id = $4
           FROM unnest($1::uuid[], $2::uuid[], $3::bytea[]) AS v(tenant_id, id, t)
          WHERE e.tenant_id = v.tenant_id AND e.id = v.id`,
        [rows.map((r) => r.tenant_id), rows.map((r) => r.id), sealed, ring.activeId],
      );
      const last = rows[rows.length - 1]!;
      after = [last.tenant_id, last.id];
      return rows.length;
    });
    if (!n) return done;
    done += n;
    onProgress?.(done);
  }
}
