import { faceAad, seal, vectorToBuffer, type DataKeyring } from '../../crypto/aead.js';
import {
  getEmployee as queryEmployee,
  insertEmployee,
  listEmployees as queryEmployees,
  setFaceTemplate,
  teamExists,
  updateEmployee as patchEmployee,
  type EmployeeFields,
  type Row,
} from '../../db/queries/people.js';
import type { Queryable } from '../../db/pool.js';
import { notFound, type Tx } from '../service.js';

export async function requireTeam(q: Queryable, tenantId: string, teamId: string): Promise<void> {
  if (!(await teamExists(q, tenantId, teamId))) throw notFound('team');
}

/** The employees the caller may see (a manager: their teams' and themselves; an employee: themselves). */
export function listEmployees(
  tx: Tx,
  f: { teamId?: string; status?: string; limit: number; offset: number },
): Promise<Row[]> {
  return queryEmployees(tx.q, tx.caller, f);
}

export async function getEmployee(tx: Tx, id: string): Promise<Row> {
  const row = await queryEmployee(tx.q, tx.caller, id);
  if (!row) throw notFound('employee');
  return row;
}

export async function createEmployee(tx: Tx, b: EmployeeFields & { fullName: string }): Promise<Row> {
  const { tenantId } = tx.caller;
  if (b.teamId) await requireTeam(tx.q, tenantId, b.teamId);
  const row = await insertEmployee(tx.q, tenantId, b);
  // Ids and facts only, never the number or the name: audit entries are append-only, so an erasure (dsar erase)
  // could not remove them.
  await tx.audit('employee.create', 'employee', row.id, {
    hasEmployeeNumber: b.employeeNumber != null,
    teamId: b.teamId ?? null,
  });
  return row;
}

export async function updateEmployee(tx: Tx, id: string, b: EmployeeFields): Promise<Row> {
  const { tenantId } = tx.caller;
  if (b.teamId) await requireTeam(tx.q, tenantId, b.teamId);
  const row = await patchEmployee(tx.q, tenantId, id, b);
  if (!row) throw notFound('employee');
  await tx.audit('employee.update', 'employee', id, { fields: Object.keys(b) });
  return row;
}

/** Enrol a face template, sealed under the active data key and bound to the company and employee (AAD). */
export async function enrollFace(tx: Tx, id: string, vector: number[], ring: DataKeyring): Promise<void> {
  const { tenantId } = tx.caller;
  const sealed = seal(ring, vectorToBuffer(vector), faceAad(tenantId, id));
  if (!(await setFaceTemplate(tx.q, tenantId, id, sealed))) throw notFound('employee');
  await tx.audit('employee.face_enroll', 'employee', id, { dimensions: vector.length, keyId: sealed.keyId });
}

export async function deleteFace(tx: Tx, id: string): Promise<void> {
  if (!(await setFaceTemplate(tx.q, tx.caller.tenantId, id, null))) throw notFound('employee');
  await tx.audit('employee.face_delete', 'employee', id);
}
