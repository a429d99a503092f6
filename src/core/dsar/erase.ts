import { createHmac } from 'node:crypto';
import type { Queryable } from '../../db/pool.js';
import { appendAudit } from '../../db/queries/audit.js';
import { closeRequest, insertRequest, openRequestFor } from '../../db/queries/dsar-requests.js';
import {
  erasureCounts,
  executeErasure,
  insertErasureLedger,
  type ErasureSpec,
} from '../../db/queries/dsar-erasure.js';
import { subjectUsers, type Subject } from '../../db/queries/dsar.js';
import { AttenduxError } from '../../errors.js';

/**
 * `dsar erase`: the plan is a value (what is deleted, redacted, kept under the legal hold and until when,
 * what remains in backups), printed by --dry-run and by the prompt; applying it re-counts under a row lock
 * and executes exactly that plan, or refuses when the data moved in between.
 */

export interface ErasurePlan {
  tenantId: string;
  tenantSlug: string;
  employeeId: string;
  pseudonym: string;
  /** Keyed hash of the subject's identifiers: what the security ledger records instead of them. */
  subjectHash: string;
  plannedAt: string;
  holdYears: number;
  /** Attendance and correction rows from this time on are kept (pseudonymised) under the hold. */
  keepSince: string;
  /** When the last held row leaves the hold. */
  heldUntil: string;
  counts: Awaited<ReturnType<typeof erasureCounts>>;
  backups: { fullDays: number; incrementalDays: number; until: string };
}

/** The keyed hashes: HMAC-SHA256 under the install's pepper, so nobody without it can test a guess. */
function keyed(pepper: string, label: string, parts: readonly (string | null)[]): string {
  const h = createHmac('sha256', Buffer.from(pepper, 'base64')).update(`attendux-dsar-${label}`);
  for (const p of parts) h.update('\x1f').update(p ?? '');
  return h.digest('hex');
}

/** The ledger entity id of an erasure: a UUID made of the subject hash (no personal data in the ledger). */
export function ledgerEntityId(subjectHash: string): string {
  const h = subjectHash.slice(0, 32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export async function planErasure(
  q: Queryable,
  subject: Subject,
  opts: {
    tenantSlug: string;
    pepper: string;
    holdYears: number;
    now: Date;
    backupRetention: { fullDays: number; incrementalDays: number };
  },
): Promise<ErasurePlan> {
  const users = await subjectUsers(q, subject.tenantId, subject.employeeId);
  const keepSince = new Date(opts.now);
  keepSince.setUTCFullYear(keepSince.getUTCFullYear() - opts.holdYears);
  const heldUntil = new Date(opts.now);
  heldUntil.setUTCFullYear(heldUntil.getUTCFullYear() + opts.holdYears);
  const spec: ErasureSpec = {
    tenantId: subject.tenantId,
    employeeId: subject.employeeId,
    pseudonym: '',
    keepSince: keepSince.toISOString(),
  };
  const days = Math.max(opts.backupRetention.fullDays, opts.backupRetention.incrementalDays);
  return {
    tenantId: subject.tenantId,
    tenantSlug: opts.tenantSlug,
    employeeId: subject.employeeId,
    pseudonym: keyed(opts.pepper, 'pseudonym', [subject.tenantId, subject.employeeId]).slice(0, 12),
    subjectHash: keyed(opts.pepper, 'subject', [
      subject.tenantId,
      subject.employeeId,
      subject.employeeNumber,
      subject.fullName,
      subject.email?.toLowerCase() ?? null,
      ...users.map((u) => u.email),
    ]),
    plannedAt: opts.now.toISOString(),
    holdYears: opts.holdYears,
    keepSince: spec.keepSince,
    heldUntil: heldUntil.toISOString(),
    counts: await erasureCounts(q, spec),
    backups: {
      ...opts.backupRetention,
      until: new Date(opts.now.getTime() + days * 86_400_000).toISOString(),
    },
  };
}

export function specOf(plan: ErasurePlan): ErasureSpec {
  return {
    tenantId: plan.tenantId,
    employeeId: plan.employeeId,
    pseudonym: plan.pseudonym,
    keepSince: plan.keepSince,
  };
}

/** The plan in plain words: the --dry-run output, the prompt, and the text receipt. */
export function describePlan(p: ErasurePlan): string[] {
  const c = p.counts;
  const day = (iso: string) => iso.slice(0, 10);
  return [
    `Erasure of employee ${p.employeeId} in company "${p.tenantSlug}" (pseudonym ${p.pseudonym})`,
    'Deleted:',
    `  - face template: ${c.face ? 'yes (the biometric template and its enrolment date)' : 'none enrolled'}`,
    `  - ${c.eventsDelete} attendance event(s) before ${day(p.keepSince)} (older than the ${p.holdYears}-year hold)`,
    `  - ${c.correctionsDelete} correction request(s) before ${day(p.keepSince)}`,
    `  - ${c.teamManagers} team manager assignment(s), ${c.throttles} login throttle row(s)`,
    'Redacted:',
    '  - name -> "Erased ' + p.pseudonym + '", employee number and email removed, status inactive',
    `  - ${c.users} login account(s): email -> erased-${p.pseudonym}@erased.invalid, display name, password, login times`,
    `  - GPS position, accuracy, distance, face score and device id removed from ${c.eventsPosition} kept event(s) (geofence verdict kept)`,
    `  - reasons and notes of ${c.correctionsKeep} kept correction request(s) and ${c.requests} earlier request(s)`,
    'Revoked:',
    `  - login disabled and every session ended for ${c.users} account(s); ${c.apiKeys} API key(s) they created revoked`,
    `Kept under the legal hold (${p.holdYears} years, until ${day(p.heldUntil)} at the latest), under the pseudonym:`,
    `  - ${c.eventsKeep} attendance event(s) (times, method, geofence verdict), ${c.correctionsKeep} correction(s), hourly rate and team`,
    '  - audit log entries (append-only evidence; they hold ids, never names)',
    'Backups:',
    `  - backups taken before now still hold the person's data until they expire: full backups after ${p.backups.fullDays} days,`,
    `    incrementals after ${p.backups.incrementalDays} days (by ${day(p.backups.until)}); off-site copies follow their own retention.`,
    '  - every restore re-applies this erasure (security ledger), so a restore never brings the person back.',
  ];
}

export interface ErasureResult {
  requestId: string;
  plan: ErasurePlan;
  receipt: Record<string, unknown>;
  receiptText: string;
}

/** The receipt of a done erasure (stored with the closed request) and its printable text. */
function erasureReceipt(
  plan: ErasurePlan,
  requestId: string,
  opts: { actor: string; legalBasis: string; now: Date },
) {
  const receipt = {
    requestId,
    tenant: plan.tenantSlug,
    employeeId: plan.employeeId,
    pseudonym: plan.pseudonym,
    erasedAt: opts.now.toISOString(),
    actor: opts.actor,
    legalBasis: opts.legalBasis,
    holdYears: plan.holdYears,
    keepSince: plan.keepSince,
    heldUntil: plan.heldUntil,
    counts: plan.counts,
    backupsUntil: plan.backups.until,
  };
  const receiptText = [
    `Erasure receipt ${requestId}`,
    `Done ${receipt.erasedAt} by ${opts.actor}; legal basis: ${opts.legalBasis}.`,
    ...describePlan(plan),
  ].join('\n');
  return { receipt, receiptText };
}

/**
 * Execute the plan in one transaction on `c` (the caller's): re-count under a lock on the employee row,
 * refuse when anything moved, erase, record the ledger entry, the audit entry and the receipt.
 */
export async function applyErasure(
  c: Queryable,
  plan: ErasurePlan,
  opts: { actor: string; reason?: string; legalBasis: string; now: Date },
): Promise<ErasureResult> {
  const spec = specOf(plan);
  await c.query('SELECT 1 FROM employees WHERE tenant_id = $1 AND id = $2 FOR UPDATE', [
    plan.tenantId,
    plan.employeeId,
  ]);
  const now = await erasureCounts(c, spec);
  if (JSON.stringify(now) !== JSON.stringify(plan.counts)) {
    throw new AttenduxError(
      'DSAR_PLAN_CHANGED',
      `the data of employee ${plan.employeeId} changed since the plan`,
      {
        hint: 'run the erasure again: it shows the new plan',
        details: { planned: plan.counts, now },
      },
    );
  }
  const requestId =
    (await openRequestFor(c, plan.tenantId, plan.employeeId, 'erasure')) ??
    (
      await insertRequest(c, {
        tenantId: plan.tenantId,
        kind: 'erasure',
        employeeId: plan.employeeId,
        source: 'cli',
        now: opts.now,
      })
    ).id;
  await executeErasure(c, spec);
  await insertErasureLedger(c, {
    tenantId: plan.tenantId,
    entityId: ledgerEntityId(plan.subjectHash),
    data: { employeeId: plan.employeeId, pseudonym: plan.pseudonym, keepSince: plan.keepSince, requestId },
  });
  const { receipt, receiptText } = erasureReceipt(plan, requestId, opts);
  await closeRequest(c, {
    tenantId: plan.tenantId,
    id: requestId,
    handledBy: opts.actor,
    now: opts.now,
    receipt,
    receiptText,
  });
  // The action, the legal basis and the actor; none of the erased data.
  await appendAudit(c, {
    tenantId: plan.tenantId,
    actor: opts.actor,
    action: 'dsar.erase',
    entityType: 'employee',
    entityId: plan.employeeId,
    details: {
      requestId,
      legalBasis: opts.legalBasis,
      reason: opts.reason ?? null,
      holdYears: plan.holdYears,
      counts: plan.counts,
    },
  });
  return { requestId, plan, receipt, receiptText };
}
