import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { findSubject } from '../../db/queries/dsar.js';
import { insertRequest, listRequests, openRequestFor } from '../../db/queries/dsar-requests.js';
import { findTenant } from '../../db/queries/tenants.js';
import { notFound } from '../service.js';
import type { Tx } from '../service.js';
import { dsarSettings, markOf } from './service.js';
import { writeExportFile } from './zip.js';

/**
 * The employee's side of data subject requests (GET /me/export, POST /me/erasure-request) and the register
 * for owners and HR (GET /dsar/requests): the same exporter and register as `attendux dsar`.
 */

/** The caller's employee record, or 404: users without one (an owner account) have no export. */
async function ownSubject(tx: Tx) {
  const { tenantId, employeeId, userId } = tx.caller;
  if (!employeeId || !userId) throw notFound('employee record of your user');
  const [subject] = await findSubject(tx.q, tenantId, { employeeId });
  if (!subject) throw notFound('employee record of your user');
  return subject;
}

/**
 * Writes the caller's own export (unencrypted: it goes over TLS to them) into `dir/export.zip`, records it in
 * the register as done and audits it. `beforeWrite` runs once the subject is known (the per-user rate limit).
 */
export async function exportOwnData(
  tx: Tx,
  dir: string,
  beforeWrite: (userId: string) => void,
): Promise<{ file: string; generatedAt: Date }> {
  const subject = await ownSubject(tx);
  beforeWrite(tx.caller.userId!);
  const tenant = await findTenant(tx.q, tx.caller.tenantId);
  const generatedAt = tx.now();
  const requestId = randomUUID();
  const file = join(dir, 'export.zip');
  try {
    const m = await writeExportFile(tx.q, subject, file, {
      requestId,
      tenantSlug: tenant!.slug,
      ...(await dsarSettings(tx.q, tx.caller.tenantId)),
      generatedAt,
    });
    await insertRequest(tx.q, {
      id: requestId,
      tenantId: tx.caller.tenantId,
      kind: 'export',
      employeeId: subject.employeeId,
      source: 'api',
      handledBy: tx.caller.actor,
      done: true,
      now: generatedAt,
    });
    await tx.audit('dsar.export', 'employee', subject.employeeId, {
      requestId,
      source: 'api',
      encrypted: null,
      files: m.files.length,
      bytes: m.bytes,
    });
  } catch (err) {
    await rm(file, { force: true });
    throw err;
  }
  return { file, generatedAt };
}

/** Files an erasure request in the register for compliance staff; it erases nothing by itself. */
export async function fileErasureRequest(tx: Tx, reason: string | undefined) {
  const { tenantId, employeeId } = tx.caller;
  if (!employeeId) throw notFound('employee record of your user');
  const open = await openRequestFor(tx.q, tenantId, employeeId, 'erasure', false);
  if (open) return { created: false as const, id: open, status: 'open' };
  const r = await insertRequest(tx.q, {
    tenantId,
    kind: 'erasure',
    employeeId,
    source: 'api',
    reason: reason ?? null,
    now: tx.now(),
  });
  await tx.audit('dsar.erasure_request', 'dsar_request', r.id, { employeeId });
  return { created: true as const, id: r.id, status: r.status, receivedAt: r.receivedAt, dueAt: r.dueAt };
}

/** The company's register, each request with its due-soon/overdue mark. */
export async function companyRequests(tx: Tx, status: 'open' | 'done' | 'overdue' | undefined) {
  const now = tx.now();
  const rows = await listRequests(tx.q, { tenantId: tx.caller.tenantId, status, now });
  return rows.map((r) => ({ ...r, mark: markOf(r, now) }));
}
