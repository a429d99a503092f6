import { Option, type Command } from 'commander';
import { contextOf, table } from '../context.js';
import { AttenduxError } from '../../errors.js';

export function registerApiKey(program: Command): void {
  const apikey = program.command('apikey').description('API keys for integrations (kiosks, payroll exports)');
  const tenantOption = () => new Option('-t, --tenant <company>', 'company slug or id').makeOptionMandatory();

  apikey
    .command('create <name>')
    .description('create a key; the secret is shown once and stored only as an HMAC')
    .addOption(tenantOption())
    .option('--scope <scope...>', 'read, check-in, admin', ['read'])
    .option('--expires <date>', 'expiry date (ISO 8601)')
    .action(
      async (name: string, flags: { tenant: string; scope: string[]; expires?: string }, cmd: Command) => {
        const ctx = contextOf(cmd);
        const { withInstall } = await import('../../core/install.js');
        const { createApiKey, parseScopes } = await import('../../core/keys/api-keys.js');
        const { cliActor } = await import('../../core/actor.js');
        const scopes = parseScopes(flags.scope.flatMap((s) => s.split(',')).filter(Boolean));
        let expiresAt: Date | undefined;
        if (flags.expires) {
          expiresAt = new Date(flags.expires);
          if (Number.isNaN(expiresAt.getTime()))
            throw new AttenduxError('USAGE', `--expires "${flags.expires}" is not a date`);
        }
        const r = await withInstall(ctx.location, (i) =>
          createApiKey(i.admin, i.secrets.apiKeyHmacKey, {
            tenant: flags.tenant,
            name,
            scopes,
            expiresAt,
            actor: cliActor(),
          }),
        );
        ctx.result({ ...r.apiKey, key: r.key }, () => [
          `created API key ${r.apiKey.prefix} (${scopes.join(', ')})`,
          `${r.key}`,
          'This is the only time the key is shown; store it now.',
        ]);
      },
    );

  apikey
    .command('list')
    .description('list keys (prefixes only; secrets are never stored)')
    .addOption(tenantOption())
    .action(async (flags: { tenant: string }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { withInstall } = await import('../../core/install.js');
      const { listApiKeys } = await import('../../core/keys/api-keys.js');
      const rows = await withInstall(ctx.location, (i) => listApiKeys(i.admin, flags.tenant));
      ctx.result(rows, () =>
        table(
          rows.map((k) => ({ ...k, scopes: k.scopes.join(','), state: k.revokedAt ? 'revoked' : 'active' })),
          ['prefix', 'name', 'scopes', 'state', 'lastUsedAt', 'createdAt'],
        ),
      );
    });

  apikey
    .command('revoke <prefix-or-id>')
    .description('revoke a key at once')
    .addOption(tenantOption())
    .action(async (ref: string, flags: { tenant: string }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { withInstall } = await import('../../core/install.js');
      const { revokeApiKey } = await import('../../core/keys/api-keys.js');
      const { withLedgerSync } = await import('../../core/ledger/index.js');
      const { cliActor } = await import('../../core/actor.js');
      const k = await withInstall(ctx.location, (i) =>
        withLedgerSync(i, revokeApiKey(i.admin, { tenant: flags.tenant, key: ref, actor: cliActor() })),
      );
      ctx.result(k, () => `revoked API key ${k.prefix}`);
    });
}
