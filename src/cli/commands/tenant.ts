import type { Command } from 'commander';
import { contextOf, table } from '../context.js';

export function registerTenant(program: Command): void {
  const tenant = program.command('tenant').description('companies');

  tenant
    .command('create <slug>')
    .description('create a company')
    .option('--name <name>', 'display name (default: the slug)')
    .option('--time-zone <tz>', 'IANA time zone', 'UTC')
    .option('--currency <code>', 'ISO 4217 currency', 'EUR')
    .action(
      async (slug: string, flags: { name?: string; timeZone: string; currency: string }, cmd: Command) => {
        const ctx = contextOf(cmd);
        const { withInstall } = await import('../../core/install.js');
        const { createTenant } = await import('../../core/accounts/tenants.js');
        const { cliActor } = await import('../../core/actor.js');
        const t = await withInstall(ctx.location, (i) =>
          createTenant(i.admin, {
            slug,
            name: flags.name ?? slug,
            timeZone: flags.timeZone,
            currency: flags.currency,
            actor: cliActor(),
          }),
        );
        ctx.result(t, () => `created company ${t.slug} (${t.id})`);
      },
    );

  tenant
    .command('list')
    .description('list companies')
    .action(async (_f: unknown, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { withInstall } = await import('../../core/install.js');
      const { listTenants } = await import('../../core/accounts/tenants.js');
      const rows = await withInstall(ctx.location, (i) => listTenants(i.admin));
      ctx.result(rows, () => table(rows, ['slug', 'name', 'status', 'users', 'employees', 'id']));
    });
}
