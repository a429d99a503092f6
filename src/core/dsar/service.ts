import { randomUUID } from 'node:crypto';
import { warnSwallowed } from '../../lib/log.js';
import { readFile, unlink } from 'node:fs/promises';
import type pg from 'pg';
import type { Install } from '../install.js';
import { inTransaction, type Queryable } from '../../db/pool.js';
import { appendAudit } from '../../db/queries/audit.js';
import {
  closeRequest,
  extendRequest,
  findRequest,
  insertRequest,
  listRequests,
  openRequestFor,
  type DsarRequest,
} from '../../db/queries/dsar-requests.js';
import { findSubject, type Subject } from '../../db/queries/dsar.js';
import { AttenduxError } from '../../errors.js';
import { loadSettings } from '../settings/settings.js';
import { requireTenant } from '../accounts/tenants.js';
import { syncLedgerFile } from '../ledger/index.js';
import { writeFileAtomic } from '../../lib/fs.js';
import { applyErasure, planErasure, type ErasurePlan, type ErasureResult } from './erase.js';
import { writeExportFile, type ExportEncryption, type ExportManifest } from './zip.js';

/** `--tenant T (--employee ID | --email E)`. */
export interface SubjectRef {
  tenant: string;
  employeeId?: string;
  email?: string;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function resolveSubject(
  q: Queryable,
  ref: SubjectRef,
): Promise<{ tenantSlug: string; subject: Subject }> {
  if (!ref.employeeId === !ref.email)
    throw new AttenduxError('USAGE', 'name the person with exactly one of --employee ID or --email E');
  if (ref.employeeId && !UUID_RE.test(ref.employeeId))
    throw new AttenduxError('USAGE', `--employee "${ref.employeeId}" is not an employee id (a UUID)`);
  const tenant = await requireTenant(q, ref.tenant);
  const found = await findSubject(q, tenant.id, ref);
  if (!found.length)
    throw new AttenduxError('NOT_FOUND', `no such employee in company "${tenant.slug}"`, {
      hint: 'check the id or email (an email matches the employee record or its login)',
    });
  if (found.length > 1)
    throw new AttenduxError('USAGE', `that email names ${found.length} employees; use --employee ID`, {
      details: { employees: found.map((s) => s.employeeId) },
    });
  return { tenantSlug: tenant.slug, subject: found[0]! };
}

/** The company's settings an export or erasure needs. */
export async function dsarSettings(q: Queryable, tenantId: string) {
  const s = await loadSettings(q, tenantId);
  return {
    overtime: {
      dailyMinutes: s['overtime.dailyMinutes'],
      multiplierPercent: s['overtime.multiplierPercent'],
    },
    holdYears: s['dsar.holdYears'],
  };
}

export interface ExportRequestOptions extends SubjectRef {
  out: string;
  reason?: string;
  passphraseFile?: string;
  recipient?: string;
  actor: string;
  now?: Date;
}

async function encryptionOf(o: ExportRequestOptions): Promise<ExportEncryption | undefined> {
  if (o.passphraseFile && o.recipient)
    throw new AttenduxError('USAGE', 'give --passphrase-file or --recipient, not both');
  if (o.recipient) {
    if (typeof o.recipient !== 'string' || !/^age1[0-9a-z]+$/.test(o.recipient))
      throw new AttenduxError('USAGE', `--recipient "${o.recipient}" is not an age recipient (age1...)`);
    return { recipient: o.recipient };
  }
  if (!o.passphraseFile) return undefined;
  const text = await readFile(o.passphraseFile, 'utf8').catch((err: Error) => {
    throw new AttenduxError('IO_ERROR', `cannot read ${o.passphraseFile}: ${err.message}`);
  });
  const passphrase = text.replace(/\r?\n$/, '');
  if (!passphrase) throw new AttenduxError('USAGE', `${o.passphraseFile} is empty`);
  return { passphrase };
}

/** Run `fn` in one REPEATABLE READ transaction: an export is one consistent snapshot. */
function snapshot<T>(install: Install, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  return inTransaction(install.admin, async (c) => {
    await c.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ');
    return fn(c);
  });
}

/**
 * `dsar export`: the zip from one REPEATABLE READ snapshot, then (in its own transaction, so that the audit
 * chain's head is read fresh) the register entry (an open export request of the person is answered, else
 * one is filed and closed) and the audit entry: who exported whom, when and why. When that fails, the zip
 * is removed: no unrecorded export is left behind.
 */
export async function exportRequest(
  install: Install,
  o: ExportRequestOptions,
): Promise<{
  requestId: string;
  out: string;
  bytes: number;
  encrypted: string | null;
  manifest: ExportManifest;
}> {
  const encryption = await encryptionOf(o);
  const now = o.now ?? new Date();
  const made = await snapshot(install, async (c) => {
    const { tenantSlug, subject } = await resolveSubject(c, o);
    const settings = await dsarSettings(c, subject.tenantId);
    const open = await openRequestFor(c, subject.tenantId, subject.employeeId, 'export', false);
    const requestId = open ?? randomUUID();
    const m = await writeExportFile(c, subject, o.out, {
      requestId,
      tenantSlug,
      ...settings,
      generatedAt: now,
      encryption,
    });
    return { subject, open, requestId, m };
  });
  const { subject, open, requestId, m } = made;
  const encrypted = encryption ? ('passphrase' in encryption ? 'passphrase' : 'recipient') : null;
  try {
    await inTransaction(install.admin, async (c) => {
      if (open) await closeRequest(c, { tenantId: subject.tenantId, id: open, handledBy: o.actor, now });
      else
        await insertRequest(c, {
          id: requestId,
          tenantId: subject.tenantId,
          kind: 'export',
          employeeId: subject.employeeId,
          source: 'cli',
          reason: o.reason,
          handledBy: o.actor,
          done: true,
          now,
        });
      await appendAudit(c, {
        tenantId: subject.tenantId,
        actor: o.actor,
        action: 'dsar.export',
        entityType: 'employee',
        entityId: subject.employeeId,
        details: { requestId, reason: o.reason ?? null, encrypted, files: m.files.length, bytes: m.bytes },
      });
    });
  } catch (err) {
    await unlink(o.out).catch(() => undefined); // removing the partial export: its error is rethrown
    throw err;
  }
  const { bytes, ...manifest } = m;
  return { requestId, out: o.out, bytes, encrypted, manifest };
}

export interface EraseOptions extends SubjectRef {
  now?: Date;
}

export async function planErasureFor(install: Install, o: EraseOptions): Promise<ErasurePlan> {
  const { tenantSlug, subject } = await resolveSubject(install.admin, o);
  const settings = await dsarSettings(install.admin, subject.tenantId);
  return planErasure(install.admin, subject, {
    tenantSlug,
    pepper: install.secrets.auditPepper,
    holdYears: settings.holdYears,
    now: o.now ?? new Date(),
    backupRetention: install.loaded.config.backup.retention,
  });
}

/** Execute a plan made by planErasureFor, in one transaction; then mirror the ledger and write receipts. */
export async function executeErasurePlan(
  install: Install,
  plan: ErasurePlan,
  o: { actor: string; reason?: string; legalBasis: string; receiptOut?: string; now?: Date },
): Promise<ErasureResult & { receiptFiles: string[] }> {
  const r = await inTransaction(install.admin, (c) =>
    applyErasure(c, plan, { ...o, now: o.now ?? new Date() }),
  );
  await syncLedgerFile(install.admin, install.loaded.config.dataDir).catch((err: unknown) =>
    warnSwallowed('ledger mirror not synced (the next config backup syncs it)', err),
  );
  const receiptFiles: string[] = [];
  if (o.receiptOut) {
    await writeFileAtomic(`${o.receiptOut}.json`, JSON.stringify(r.receipt, null, 2) + '\n', 0o600);
    await writeFileAtomic(`${o.receiptOut}.txt`, r.receiptText + '\n', 0o600);
    receiptFiles.push(`${o.receiptOut}.json`, `${o.receiptOut}.txt`);
  }
  return { ...r, receiptFiles };
}

export type RequestMark = 'overdue' | 'due-soon' | null;
export interface ListedRequest extends DsarRequest {
  mark: RequestMark;
}

const WEEK_MS = 7 * 86_400_000;

/** `dsar list`: the register, oldest due first; open requests due within 7 days or past due are marked. */
export async function listDsarRequests(
  install: Install,
  o: { tenant?: string; status?: 'open' | 'done' | 'overdue'; now?: Date },
): Promise<{ requests: ListedRequest[]; overdue: number }> {
  const now = o.now ?? new Date();
  const tenantId = o.tenant ? (await requireTenant(install.admin, o.tenant)).id : undefined;
  const rows = await listRequests(install.admin, { tenantId, status: o.status, now });
  const requests = rows.map((r) => ({ ...r, mark: markOf(r, now) }));
  return { requests, overdue: requests.filter((r) => r.mark === 'overdue').length };
}

export function markOf(r: DsarRequest, now: Date): RequestMark {
  if (r.status !== 'open') return null;
  const due = Date.parse(r.dueAt);
  return due < now.getTime() ? 'overdue' : due - now.getTime() <= WEEK_MS ? 'due-soon' : null;
}

/** `dsar extend ID --reason`: two more months, once, while the request is open; audited. */
export async function extendDsarRequest(
  install: Install,
  o: { id: string; reason: string; actor: string; now?: Date },
): Promise<DsarRequest> {
  if (!UUID_RE.test(o.id)) throw new AttenduxError('USAGE', `"${o.id}" is not a request id`);
  if (!o.reason.trim())
    throw new AttenduxError('USAGE', '--reason must say why (it is told to the requester)');
  const now = o.now ?? new Date();
  return inTransaction(install.admin, async (c) => {
    const r = await findRequest(c, o.id);
    if (!r) throw new AttenduxError('NOT_FOUND', `no request ${o.id}`);
    if (r.status !== 'open' || r.extendedAt)
      throw new AttenduxError(
        'DSAR_EXTEND_REFUSED',
        r.status !== 'open'
          ? `request ${o.id} is ${r.status}`
          : `request ${o.id} was already extended on ${r.extendedAt}`,
      );
    await extendRequest(c, { tenantId: r.tenantId, id: r.id, reason: o.reason, now });
    await appendAudit(c, {
      tenantId: r.tenantId,
      actor: o.actor,
      action: 'dsar.extend',
      entityType: 'dsar_request',
      entityId: r.id,
      details: { reason: o.reason },
    });
    return (await findRequest(c, o.id))!;
  });
}
