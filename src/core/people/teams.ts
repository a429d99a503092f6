import {
  addTeamManager,
  insertTeam,
  listTeams as queryTeams,
  removeTeamManager,
  renameTeam as queryRename,
  type Row,
} from '../../db/queries/people.js';
import { findUser } from '../../db/queries/users.js';
import { notFound, type Tx } from '../service.js';
import { requireTeam } from './employees.js';

export function listTeams(tx: Tx): Promise<Row[]> {
  return queryTeams(tx.q, tx.caller);
}

export async function createTeam(tx: Tx, name: string): Promise<Row> {
  const row = await insertTeam(tx.q, tx.caller.tenantId, name);
  await tx.audit('team.create', 'team', row.id, { name });
  return row;
}

export async function renameTeam(tx: Tx, id: string, name: string): Promise<Row> {
  const row = await queryRename(tx.q, tx.caller.tenantId, id, name);
  if (!row) throw notFound('team');
  await tx.audit('team.update', 'team', id, { name });
  return row;
}

/** Make a user a manager of a team (add) or no longer (remove); both are idempotent. */
export async function setTeamManager(tx: Tx, teamId: string, userId: string, add: boolean): Promise<void> {
  const { tenantId } = tx.caller;
  await requireTeam(tx.q, tenantId, teamId);
  if (!(await findUser(tx.q, tenantId, userId))) throw notFound('user');
  await (add ? addTeamManager : removeTeamManager)(tx.q, tenantId, teamId, userId);
  await tx.audit(add ? 'team.manager_add' : 'team.manager_remove', 'team', teamId, { userId });
}
