import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Install } from '../install.js';
import { publicKeyOf } from '../../crypto/signing.js';
import {
  appendCheckpoints,
  checkpointHeads,
  type Checkpoint,
  type SourcedCheckpoint,
} from './checkpoints.js';
import { verifyAudit } from './chains.js';
import type { VerifyResult } from './verify.js';
import { warnSwallowed } from '../../lib/log.js';

// In a module of its own so that the CLI prints it without loading the audit verification code.
export { backupAuditWarning } from './backup-warning.js';

/**
 * The audit side of backups, kept here so that the backup code only calls in (issue 13): auditForBackup and
 * backupAuditWarning when writing, the others when reading.
 */

export interface BackupAudit {
  verified: {
    ok: boolean;
    at: string;
    checked: number;
    chains: number;
    checkpoints: number;
    breakCount: number;
    /** The first few breaks (a backup sidecar is not the place for ten thousand). */
    breaks: VerifyResult['breaks'];
  };
  checkpoints: Checkpoint[];
}

export type AuditVerification = BackupAudit['verified'];

/** A verification as a backup sidecar or a drill record keeps it: the counts and the first breaks. */
export function verificationSummary(r: VerifyResult, at = new Date().toISOString()): AuditVerification {
  return {
    ok: r.ok,
    at,
    checked: r.checked,
    chains: r.chains,
    checkpoints: r.checkpoints,
    breakCount: r.breaks.length + r.moreBreaks,
    breaks: r.breaks.slice(0, 20),
  };
}

/**
 * What every database backup records (the backup writer calls this before its snapshot is taken, so the
 * snapshot holds every entry the checkpoints name): the verification of every chain and a signed checkpoint
 * of every head, also appended to the data dir's file. Never throws: a backup of a broken chain is still
 * taken, and says so.
 */
export async function auditForBackup(install: Install): Promise<BackupAudit> {
  let verified: AuditVerification;
  try {
    verified = verificationSummary(await verifyAudit(install));
  } catch (err) {
    verified = {
      ok: false,
      at: new Date().toISOString(),
      checked: 0,
      chains: 0,
      checkpoints: 0,
      breakCount: 1,
      breaks: [
        {
          tenantId: '-',
          seq: 0,
          at: null,
          kind: 'edited',
          detail: `verification failed: ${(err as Error).message}`,
        },
      ],
    };
  }
  const cps = await checkpointHeads(install.admin, install.secrets.signingKey, 'backup').catch(
    (err: unknown) => {
      warnSwallowed('audit checkpoints not signed', err);
      return [];
    },
  );
  await appendCheckpoints(install.loaded.config.dataDir, cps).catch((err: unknown) =>
    warnSwallowed('audit checkpoints not recorded', err),
  );
  return { verified, checkpoints: cps };
}

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
