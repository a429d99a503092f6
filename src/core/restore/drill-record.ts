import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import { writeFileAtomic } from '../../lib/fs.js';
import { signCompanion, trustedSigningKeys, verifyCompanion } from '../backup/signature.js';
import type { AuditVerification } from '../audit/backup.js';

/**
 * The result of a restore drill, kept as `<id>.drill.json` beside the newest backup the drill restored
 * (plus `<id>.drill.json.sig`, signed by the install key). A companion file and not a field of the
 * sidecar: the sidecar is signed (`<id>.sig`) and may already be copied off-site, so rewriting it would
 * invalidate the signature and leave the off-site copy different from the local one. Off-site copies carry
 * every `<id>.*` file, and `backup prune` deletes it with its backup.
 */
export const DRILL_RECORD_FORMAT = 'attendux-drill-result/1';
export const drillFileName = (id: string) => `${id}.drill.json`;
const DRILL_FILE = /^(.+)\.drill\.json$/;

export interface DrillRecord {
  format: string;
  /** The newest backup the drill restored (the file sits beside it). */
  id: string;
  /** Every backup of the restored chain, oldest first. */
  backups: string[];
  at: string;
  ok: boolean;
  seconds: number;
  checks: { name: string; ok: boolean; detail: string }[];
  failed: string[];
  /**
   * The audit log verification inside the drill (the `audit-chains` check), or null if it did not run:
   * with `verification`, its counts and first breaks in the shape of a backup sidecar's `audit.verified`.
   */
  audit: { ok: boolean; detail: string; verification?: AuditVerification } | null;
}

/** Write and sign the drill's record (atomic write, then the signature). */
export async function recordDrillResult(
  backupDir: string,
  signingKey: string,
  r: {
    ok: boolean;
    plan: { steps: { id: string }[] } | null;
    checks: { name: string; ok: boolean; detail: string; audit?: AuditVerification }[];
    seconds: number;
  },
  now = new Date(),
): Promise<DrillRecord | null> {
  const backups = r.plan?.steps.map((s) => s.id) ?? [];
  const id = backups.at(-1);
  // Nothing was chosen to restore (no backup at all): there is no backup to put the record beside.
  if (!id) return null;
  const audit = r.checks.find((c) => c.name === 'audit-chains');
  const rec: DrillRecord = {
    format: DRILL_RECORD_FORMAT,
    id,
    backups,
    at: now.toISOString(),
    ok: r.ok,
    seconds: r.seconds,
    checks: r.checks.map(({ name, ok, detail }) => ({ name, ok, detail })),
    failed: r.checks.filter((c) => !c.ok).map((c) => c.name),
    audit: audit
      ? { ok: audit.ok, detail: audit.detail, ...(audit.audit ? { verification: audit.audit } : {}) }
      : null,
  };
  await writeFileAtomic(join(backupDir, drillFileName(id)), JSON.stringify(rec, null, 2) + '\n', 0o600);
  await signCompanion(backupDir, drillFileName(id), signingKey);
  return rec;
}

export interface NewestDrill {
  record: DrillRecord;
  file: string;
  /** Signed by a trusted key (this install's, or one the config or identity file names). */
  verified: boolean;
}

/** The newest drill record in the backup dir (by its time), with whether its signature verifies. */
export async function readNewestDrill(loaded: LoadedConfig): Promise<NewestDrill | null> {
  const dir = loaded.backupDir;
  // no backup dir: no drill yet
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => DRILL_FILE.test(n));
  let best: { record: DrillRecord; file: string } | null = null;
  for (const n of names) {
    try {
      const record = JSON.parse(await readFile(join(dir, n), 'utf8')) as DrillRecord;
      if (record.format !== DRILL_RECORD_FORMAT || typeof record.at !== 'string') continue;
      if (!best || record.at > best.record.at) best = { record, file: n };
    } catch {
      // An unreadable record is as good as none; the next drill writes a new one.
    }
  }
  if (!best) return null;
  const trusted = await trustedSigningKeys({ loaded });
  return { ...best, verified: await verifyCompanion(dir, best.file, trusted) };
}
