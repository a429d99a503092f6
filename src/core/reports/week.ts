import { addDays, dayIn, mondayOf } from '../../lib/time-zone.js';
import { findTenant } from '../../db/queries/tenants.js';
import { listEvents } from '../attendance/checkin.js';
import { forbidden, invalid, type Tx } from '../service.js';
import { timesheet } from './timesheets.js';

const DAY = /^\d{4}-\d{2}-\d{2}$/;

/**
 * My week (Monday to Sunday, in the company's time zone): the timesheet of each day, and my checks of the week
 * for the page to list. `weekOf` is any day of the week; absent: this week.
 */
export async function myWeek(tx: Tx, weekOf: string | undefined) {
  if (!tx.caller.employeeId) throw forbidden('your user is not linked to an employee');
  const tenant = await findTenant(tx.q, tx.caller.tenantId);
  const timeZone = tenant?.timeZone ?? 'UTC';
  if (weekOf !== undefined && (!DAY.test(weekOf) || Number.isNaN(Date.parse(`${weekOf}T00:00:00Z`))))
    throw invalid('query.week', 'not a date', 'the week must be given as a date, YYYY-MM-DD');
  const from = mondayOf(weekOf ?? dayIn(tx.now(), timeZone));
  const to = addDays(from, 6);
  const sheet = await timesheet(tx, { from, to }, undefined);
  // A day on each side covers every zone's offset; the checks are then kept by their local day.
  const events = await listEvents(tx, {
    employeeId: tx.caller.employeeId,
    from: new Date(`${addDays(from, -1)}T00:00:00Z`),
    to: new Date(`${addDays(to, 2)}T00:00:00Z`),
    limit: 500,
  });
  const inWeek = events.filter((e) => {
    const day = dayIn(e.occurredAt as Date, timeZone);
    return day >= from && day <= to;
  });
  return { ...sheet, timeZone, prev: addDays(from, -7), next: addDays(from, 7), events: inWeek.reverse() };
}
