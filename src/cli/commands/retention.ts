import type { Command } from 'commander';
import { contextOf } from '../context.js';

export function registerRetention(program: Command): void {
  const retention = program.command('retention').description('data retention (per-company settings)');

  retention
    .command('apply')
    .description(
      'delete attendance events past retention.attendanceYears (unless under legal hold) and drop GPS positions past retention.locationDays',
    )
    .option('-t, --tenant <company>', 'one company (default: every company)')
    .option('--dry-run', 'print the plan, change nothing')
    .option('-y, --yes', 'do not ask for confirmation (cron)')
    .action(async (flags: { tenant?: string; dryRun?: boolean; yes?: boolean }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { withInstall } = await import('../../core/install.js');
      const { planRetention, describePlan, isEmptyPlan } = await import('../../core/retention/plan.js');
      const { applyRetention } = await import('../../core/retention/apply.js');
      const { withLedgerSync } = await import('../../core/ledger/index.js');
      const { cliActor } = await import('../../core/actor.js');
      const r = await withInstall(ctx.location, async (i) => {
        const plan = await planRetention(i.admin, { tenant: flags.tenant });
        if (flags.dryRun) return { at: plan.at, dryRun: true, plan, tenants: [] };
        if (plan.tenants.every(isEmptyPlan)) return { at: plan.at, dryRun: false, plan, tenants: [] };
        if (!flags.yes) ctx.note(describePlan(plan).join('\n'));
        await ctx.confirm('apply this retention plan?', flags.yes);
        return withLedgerSync(i, applyRetention(i.admin, plan, cliActor()));
      });
      ctx.result(r, () =>
        r.dryRun
          ? describePlan(r.plan)
          : r.tenants.length
            ? r.tenants.map(
                (t) =>
                  `${t.slug}: deleted ${t.deletedEvents} event(s) and ${t.deletedCorrections} correction request(s), dropped ${t.strippedEvents} position(s)`,
              )
            : 'nothing past retention',
      );
    });
}
