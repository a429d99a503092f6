import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { publicKeyOf } from '../../crypto/signing.js';
import type { Checkpoint, SourcedCheckpoint } from './checkpoints.js';

/**
 * The audit side of backups, kept here so that the backup code only calls in (issue 13): auditForBackup and
 * backupAuditWarning (service.ts) when writing, these when reading.
 */

/** The checkpoints the backups of a restore plan signed: what the restored chains must agree with. */
export async function drillAuditAnchors(
  backupDir: string,
  plan: { steps: { id: string }[] },
  signingKey: string,
  auditKey: string,
): Promise<{ publicKey: string; checkpoints: SourcedCheckpoint[]; auditKey: string }> {
  const checkpoints: SourcedCheckpoint[] = [];
  for (const s of plan.steps) {
    const path = join(backupDir, `${s.id}.json`);
    try {
      const j = JSON.parse(await readFile(path, 'utf8')) as { audit?: { checkpoints?: Checkpoint[] } };
      for (const c of j.audit?.checkpoints ?? []) checkpoints.push({ ...c, source: path });
    } catch {
      // a backup without audit anchors (older attendux): nothing to compare with
    }
  }
  return { publicKey: publicKeyOf(signingKey), checkpoints, auditKey };
}

/** One line for `backup status` / `backup list` about a sidecar's audit verification. */
export function sidecarAuditStatus(sidecar: unknown): { ok: boolean; line: string } | null {
  const a = (sidecar as { audit?: { verified?: { ok: boolean; breakCount: number; checked: number } } })
    .audit;
  if (!a?.verified) return null;
  return a.verified.ok
    ? { ok: true, line: `audit log verified (${a.verified.checked} entries)` }
    : { ok: false, line: `AUDIT LOG BROKEN: ${a.verified.breakCount} break(s) when this backup was taken` };
}

/** The loud line a backup prints when the chain it copied is broken. */
export function backupAuditWarning(
  a:
    | {
        verified: {
          ok: boolean;
          breakCount: number;
          breaks: { kind: string; tenantId: string; seq: number; detail: string }[];
        };
      }
    | undefined,
): string | undefined {
  if (!a || a.verified.ok) return undefined;
  const first = a.verified.breaks[0];
  return (
    `WARNING: the audit log in this backup does NOT verify: ${a.verified.breakCount} break(s)` +
    (first ? `, first ${first.kind} at ${first.tenantId}#${first.seq}: ${first.detail}` : '') +
    '. The backup was taken anyway; run `attendux audit verify` and investigate.'
  );
}
