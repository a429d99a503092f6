import {
  deleteSite as queryDelete,
  insertSite,
  listSites as querySites,
  siteInUse,
  updateSite as queryUpdate,
  type Row,
  type SiteFields,
} from '../../db/queries/people.js';
import { conflict, notFound, type Tx } from '../service.js';

export function listSites(tx: Tx): Promise<Row[]> {
  return querySites(tx.q, tx.caller.tenantId);
}

export async function createSite(tx: Tx, b: SiteFields): Promise<Row> {
  const row = await insertSite(tx.q, tx.caller.tenantId, b);
  await tx.audit('site.create', 'site', row.id, { ...b });
  return row;
}

export async function updateSite(tx: Tx, id: string, b: Partial<SiteFields>): Promise<Row> {
  const row = await queryUpdate(tx.q, tx.caller.tenantId, id, b);
  if (!row) throw notFound('site');
  await tx.audit('site.update', 'site', id, { ...b });
  return row;
}

/** A site that attendance events name stays: deleting it would rewrite where people checked in. */
export async function deleteSite(tx: Tx, id: string): Promise<void> {
  const used = await siteInUse(tx.q, tx.caller.tenantId, id);
  if (used === undefined) throw notFound('site');
  if (used) throw conflict('the site has attendance events; it cannot be deleted');
  if (!(await queryDelete(tx.q, tx.caller.tenantId, id))) throw notFound('site');
  await tx.audit('site.delete', 'site', id);
}
