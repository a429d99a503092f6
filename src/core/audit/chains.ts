import { readFile } from 'node:fs/promises';
import type pg from 'pg';
import type { Install } from '../install.js';
import type { LoadedConfig } from '../config/load.js';
import { SYSTEM_TENANT } from '../../db/queries/audit.js';
import type { Pool, Queryable } from '../../db/pool.js';
import { requireTenant } from '../accounts/tenants.js';
import { isUuid } from '../../lib/uuid.js';
import { AttenduxError } from '../../errors.js';
import { publicKeyOf } from '../../crypto/signing.js';
import { auditMacFor } from './mac.js';
import {
  appendCheckpoints,
  checkpointFile,
  checkpointHeads,
  readBackupCheckpoints,
  readCheckpointFile,
  type Checkpoint,
  type SourcedCheckpoint,
} from './checkpoints.js';
import { verifyWith, type VerifyResult } from './verify.js';

/* `audit verify` and `audit checkpoint` on an install: which chains, which anchors. */

/** `--tenant`: a company slug or id, or `system` for the install-wide chain. */
export async function resolveTenant(q: Queryable, ref: string | undefined): Promise<string | undefined> {
  if (!ref) return undefined;
  if (ref === 'system' || ref === SYSTEM_TENANT) return SYSTEM_TENANT;
  if (isUuid(ref)) return ref.toLowerCase();
  return (await requireTenant(q, ref)).id;
}

/** Every checkpoint attendux can find: the data dir's file, every backup sidecar, and the extra files given. */
export async function loadCheckpoints(
  loaded: LoadedConfig,
  extra: string[] = [],
): Promise<SourcedCheckpoint[]> {
  const out = [
    ...(await readCheckpointFile(checkpointFile(loaded.config.dataDir))),
    ...(await readBackupCheckpoints(loaded.backupDir)),
  ];
  for (const f of extra) {
    const text = await readFile(f, 'utf8').catch((err: Error) => {
      throw new AttenduxError('IO_ERROR', `cannot read checkpoints ${f}: ${err.message}`);
    });
    // A checkpoint file (JSON lines) or a backup sidecar / export manifest (JSON with audit.checkpoints).
    let doc: { audit?: { checkpoints?: Checkpoint[] }; checkpoints?: Checkpoint[] } | undefined;
    try {
      doc = JSON.parse(text) as typeof doc;
    } catch {
      doc = undefined; // JSON lines
    }
    if (doc && (doc.audit || doc.checkpoints)) {
      for (const c of doc.audit?.checkpoints ?? doc.checkpoints ?? []) out.push({ ...c, source: f });
      continue;
    }
    out.push(...(await readCheckpointFile(f)));
  }
  return out;
}

export interface VerifyOptions {
  tenant?: string;
  since?: Date;
  /** More checkpoint files (off-server copies). */
  checkpointFiles?: string[];
  /** Compare with exactly these checkpoints instead of the ones found on this install (a drill). */
  checkpoints?: SourcedCheckpoint[];
  /** Verify threads (default: by the table's size, see verify.ts). */
  parallel?: number;
}

/** `audit verify`: every chain (or one), in one read-only snapshot, against every checkpoint found. */
export async function verifyAudit(install: Install, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const tenantId = await resolveTenant(install.admin, opts.tenant);
  const checkpoints = opts.checkpoints ?? (await loadCheckpoints(install.loaded, opts.checkpointFiles));
  return verifyWith(install.admin, {
    mac: auditMacFor(install.admin),
    publicKey: publicKeyOf(install.secrets.signingKey),
    checkpoints,
    tenantId,
    since: opts.since,
    parallel: opts.parallel,
  });
}

/** What the older checks (restore drill, tests) asked: how many entries, and the first break per company. */
export async function verifyAuditChains(
  q: Pool | pg.ClientBase,
  publicKey?: string,
  checkpoints: SourcedCheckpoint[] = [],
): Promise<{ checked: number; broken: { tenantId: string; seq: number }[]; result: VerifyResult }> {
  const r = await verifyWith(q, { mac: auditMacFor(q), publicKey: publicKey ?? '', checkpoints });
  const first = new Map<string, number>();
  for (const b of r.breaks) if (!first.has(b.tenantId)) first.set(b.tenantId, b.seq);
  return { checked: r.checked, broken: [...first].map(([tenantId, seq]) => ({ tenantId, seq })), result: r };
}

/** Sign the head of every chain that has one and append the checkpoints to the data dir's file. */
export async function checkpointNow(install: Install, reason: Checkpoint['reason'] = 'manual') {
  const cps = await checkpointHeads(install.admin, install.secrets.signingKey, reason);
  await appendCheckpoints(install.loaded.config.dataDir, cps);
  return { file: checkpointFile(install.loaded.config.dataDir), checkpoints: cps };
}
