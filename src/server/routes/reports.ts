import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { payrollCsv, payrollExport, timesheet } from '../../core/reports/timesheets.js';
import { isoDate, uuid } from '../validate.js';
import { ALL_ROLES, defineRoute } from '../route.js';
import type { ServerDeps } from '../deps.js';

const TimesheetQuery = z.strictObject({ from: isoDate, to: isoDate, employeeId: uuid.optional() });
const PayrollQuery = z.strictObject({
  from: isoDate,
  to: isoDate,
  format: z.enum(['json', 'csv']).default('json'),
});

/** Timesheets and the payroll export: core/reports. */
export function reportRoutes(app: FastifyInstance, deps: ServerDeps) {
  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/timesheets',
    roles: ALL_ROLES,
    scope: 'read',
    query: TimesheetQuery,
    async handler({ tx, query }) {
      const { employeeId, ...range } = query;
      return timesheet(tx, range, employeeId);
    },
  });

  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/payroll/export',
    roles: ['owner', 'admin', 'hr'],
    scope: 'read',
    query: PayrollQuery,
    produces: ['application/json', 'text/csv'],
    async handler({ tx, query, reply }) {
      const { format, ...range } = query;
      const r = await payrollExport(tx, range, format);
      if (format === 'json') return r;
      reply
        .type('text/csv; charset=utf-8')
        .header('content-disposition', `attachment; filename="payroll-${range.from}-${range.to}.csv"`);
      return payrollCsv(r.employees);
    },
  });
}
