import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { AttenduxError } from '../../errors.js';
import { contextOf, table, type CliContext } from '../context.js';

/** `tenant export` and `tenant delete`, registered beside the other `tenant` subcommands. */
export function registerTenantData(program: Command): void {
  const tenant = program.commands.find((c) => c.name() === 'tenant');
  // A programming assertion (registration order in cli/index.ts), not reachable by input.
  if (!tenant) throw new Error('registerTenant must run first');

  tenant
    .command('export <company>')
    .description('the whole company’s data, per table and per person, in one zip (streamed)')
    .requiredOption('--out <file>', 'the zip to write (.part until complete)')
    .option('--passphrase-file <file>', 'encrypt with age, to the passphrase on the first line of this file')
    .option('--recipient <key>', 'encrypt with age, to this public key (age1...)')
    .action(
      async (
        ref: string,
        flags: { out: string; passphraseFile?: string; recipient?: string },
        cmd: Command,
      ) => {
        const ctx = contextOf(cmd);
        const passphrase = flags.passphraseFile ? await readPassphrase(flags.passphraseFile) : undefined;
        const { withInstall } = await import('../../core/install.js');
        const { exportTenant } = await import('../../core/tenant-data/export.js');
        const { cliActor } = await import('../../core/actor.js');
        const r = await withInstall(ctx.location, (i) =>
          exportTenant(i.admin, {
            tenant: ref,
            out: flags.out,
            passphrase,
            recipient: flags.recipient,
            actor: cliActor(),
          }),
        );
        ctx.result(
          r,
          () =>
            `exported ${r.slug}: ${r.files} files, ${r.people} people, to ${r.out}${r.encrypted ? ` (age, ${r.encrypted})` : ''}`,
        );
      },
    );

  tenant
    .command('delete <company>')
    .description('delete every row of a company (its audit log is kept); restores never bring it back')
    .option('--dry-run', 'print the preview, delete nothing')
    .option('-y, --yes', 'do not ask (needs --confirm-slug)')
    .option('--confirm-slug <slug>', 'the company slug, as the typed confirmation')
    .action(
      async (ref: string, flags: { dryRun?: boolean; yes?: boolean; confirmSlug?: string }, cmd: Command) => {
        const ctx = contextOf(cmd);
        const { withInstall } = await import('../../core/install.js');
        const { previewTenantDelete, deleteTenant } = await import('../../core/tenant-data/delete.js');
        const { withLedgerSync } = await import('../../core/ledger/index.js');
        const { cliActor } = await import('../../core/actor.js');
        const r = await withInstall(ctx.location, async (i) => {
          const preview = await previewTenantDelete(i.admin, ref);
          if (flags.dryRun) return { ...preview, dryRun: true, auditChain: null };
          const slug = await typedConfirmation(ctx, preview.slug, preview.total, preview.rows, flags);
          return withLedgerSync(
            i,
            deleteTenant(i.admin, { tenant: preview.tenantId, confirmSlug: slug, actor: cliActor() }),
          );
        });
        ctx.result(r, () => [
          `${r.dryRun ? 'would delete' : 'deleted'} company ${r.slug} (${r.tenantId}): ${r.total} rows`,
          ...table(
            Object.entries(r.rows).map(([t, n]) => ({ table: t, rows: n })),
            ['table', 'rows'],
          ).map((l) => `  ${l}`),
          r.dryRun
            ? 'its audit log is kept; nothing was deleted'
            : `its audit log is kept (audit list --tenant ${r.tenantId}); restores will not bring it back`,
        ]);
      },
    );
}

async function readPassphrase(file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch((err: unknown) => {
    throw new AttenduxError('USAGE', `cannot read the passphrase file ${file}: ${(err as Error).message}`);
  });
  const p = text.split(/\r?\n/)[0] ?? '';
  if (!p) throw new AttenduxError('USAGE', `the passphrase file ${file} is empty`);
  return p;
}

/** --yes needs --confirm-slug; else the slug typed on a terminal after the preview. */
async function typedConfirmation(
  ctx: CliContext,
  slug: string,
  total: number,
  rows: Record<string, number>,
  flags: { yes?: boolean; confirmSlug?: string },
): Promise<string> {
  if (flags.yes) {
    if (!flags.confirmSlug)
      throw new AttenduxError('USAGE', 'tenant delete --yes needs --confirm-slug <slug>', {
        hint: `add --confirm-slug ${slug}, or --dry-run to preview`,
      });
    return flags.confirmSlug;
  }
  if (!ctx.interactive)
    throw new AttenduxError(
      'CONFIRMATION_REQUIRED',
      `delete company ${slug} and its ${total} rows? (no terminal to confirm on)`,
      {
        hint: `pass --yes --confirm-slug ${slug}, or --dry-run to preview`,
      },
    );
  ctx.note(`this deletes company ${slug} and its ${total} rows for good:`);
  for (const l of table(
    Object.entries(rows).map(([t, n]) => ({ table: t, rows: n })),
    ['table', 'rows'],
  ))
    ctx.note(`  ${l}`);
  const { input } = await import('@inquirer/prompts');
  return input({ message: `type the company slug (${slug}) to confirm:` });
}
