import { AttenduxError } from '../../errors.js';
import { inTransaction, type Pool, type Queryable } from '../../db/pool.js';
import { cliTx, type Tx } from '../service.js';
import { isTimeZone } from '../schedule/cron.js';
import { appendAudit, SYSTEM_TENANT } from '../../db/queries/audit.js';
import {
  findTenant,
  insertTenant,
  listTenants as queryTenants,
  type Tenant,
} from '../../db/queries/tenants.js';

// The one time-zone check (companies, employees, schedules).
export { isTimeZone };

export const SLUG_RE = /^[a-z0-9][a-z0-9-]{1,62}$/;

export interface CreateTenantOptions {
  slug: string;
  name: string;
  timeZone?: string;
  currency?: string;
  actor: string;
}

export function validateTimeZone(tz: string): void {
  if (!isTimeZone(tz))
    throw new AttenduxError('USAGE', `unknown time zone "${tz}"`, {
      hint: 'use an IANA name such as Europe/Berlin or UTC',
    });
}

export async function createTenant(pool: Pool, opts: CreateTenantOptions): Promise<Tenant> {
  if (!SLUG_RE.test(opts.slug)) {
    throw new AttenduxError('USAGE', `company slug "${opts.slug}" is invalid`, {
      hint: 'use 2-63 lower-case letters, digits and dashes',
    });
  }
  if (!opts.name.trim()) throw new AttenduxError('USAGE', 'company name must not be empty');
  if (opts.timeZone) validateTimeZone(opts.timeZone);
  if (opts.currency && !/^[A-Z]{3}$/.test(opts.currency))
    throw new AttenduxError('USAGE', 'currency must be an ISO 4217 code such as EUR');
  return inTransaction(pool, async (c) => {
    if (await findTenant(c, opts.slug)) {
      throw new AttenduxError('ALREADY_EXISTS', `company "${opts.slug}" already exists`);
    }
    const tenant = await insertTenant(c, opts);
    const entry = {
      actor: opts.actor,
      action: 'tenant.create',
      entityType: 'tenant',
      entityId: tenant.id,
      details: { slug: tenant.slug },
    };
    await appendAudit(c, { ...entry, tenantId: SYSTEM_TENANT });
    await appendAudit(c, { ...entry, tenantId: tenant.id });
    return tenant;
  });
}

export async function listTenants(pool: Pool) {
  return queryTenants(pool);
}

export async function requireTenant(q: Queryable, ref: string): Promise<Tenant> {
  const tenant = await findTenant(q, ref);
  if (!tenant) {
    throw new AttenduxError('NOT_FOUND', `no company "${ref}"`, {
      hint: '`attendux tenant list` shows the companies',
    });
  }
  return tenant;
}

/** Run a service for a company named on the command line (slug or id): one transaction, the operator as the caller. */
export async function inCompany<T>(
  pool: Pool,
  ref: string,
  actor: string,
  fn: (tx: Tx, tenant: Tenant) => Promise<T>,
): Promise<T> {
  return inTransaction(pool, async (c) => {
    const tenant = await requireTenant(c, ref);
    return fn(cliTx(c, tenant.id, actor), tenant);
  });
}
