import { Option, type Command } from 'commander';
import { contextOf, table } from '../context.js';
import { AttenduxError } from '../../errors.js';

interface SubjectFlags {
  tenant: string;
  employee?: string;
  email?: string;
}

const tenantOption = () => new Option('-t, --tenant <company>', 'company slug or id').makeOptionMandatory();

export function registerDsar(program: Command): void {
  const dsar = program
    .command('dsar')
    .description('data subject requests (GDPR): export, erase, and the register of requests');
  registerExport(dsar);
  registerErase(dsar);
  registerList(dsar);
}

function registerExport(dsar: Command): void {
  dsar
    .command('export')
    .description("write one person's data as a zip (data.json, CSVs, README.txt, manifest.json); audited")
    .addOption(tenantOption())
    .option('--employee <id>', 'the employee id')
    .option('--email <email>', "the employee's or their login's email")
    .requiredOption('-o, --out <file>', 'the zip to write (written as .part, then renamed)')
    .option('--reason <text>', 'why (recorded in the audit log and the register)')
    .option('--passphrase-file <file>', 'encrypt with age to the passphrase in this file (scrypt)')
    .option('--recipient <age1>', "encrypt with age to the requester's key (age1...)")
    .action(
      async (
        flags: SubjectFlags & { out: string; reason?: string; passphraseFile?: string; recipient?: string },
        cmd: Command,
      ) => {
        const ctx = contextOf(cmd);
        const { withInstall } = await import('../../core/install.js');
        const { exportRequest } = await import('../../core/dsar/service.js');
        const { cliActor } = await import('../../core/actor.js');
        const r = await withInstall(ctx.location, (i) =>
          exportRequest(i, {
            tenant: flags.tenant,
            employeeId: flags.employee,
            email: flags.email,
            out: flags.out,
            reason: flags.reason,
            passphraseFile: flags.passphraseFile,
            recipient: flags.recipient,
            actor: cliActor(),
          }),
        );
        ctx.result(r, () => [
          `wrote ${r.out} (${r.bytes} bytes, ${r.manifest.files.length} files${r.encrypted ? `, age-encrypted to a ${r.encrypted}` : ', NOT encrypted'})`,
          `request ${r.requestId} is done and the export is in the audit log`,
        ]);
      },
    );
}

function registerErase(dsar: Command): void {
  dsar
    .command('erase')
    .description(
      'erase one person: delete, redact, keep payroll records under the legal hold; audited, ledgered',
    )
    .addOption(tenantOption())
    .option('--employee <id>', 'the employee id')
    .option('--email <email>', "the employee's or their login's email")
    .option('--dry-run', 'print the plan and change nothing')
    .option('--reason <text>', 'why (recorded in the audit log)')
    .option('--legal-basis <text>', 'the legal basis recorded in the audit log', 'GDPR Art. 17(1)')
    .option('--receipt-out <prefix>', 'also write the receipt to <prefix>.json and <prefix>.txt')
    .option('-y, --yes', 'do not ask')
    .action(
      async (
        flags: SubjectFlags & {
          dryRun?: boolean;
          reason?: string;
          legalBasis: string;
          receiptOut?: string;
          yes?: boolean;
        },
        cmd: Command,
      ) => {
        const ctx = contextOf(cmd);
        const { withInstall } = await import('../../core/install.js');
        const { executeErasurePlan, planErasureFor } = await import('../../core/dsar/service.js');
        const { describePlan } = await import('../../core/dsar/erase.js');
        const { cliActor } = await import('../../core/actor.js');
        await withInstall(ctx.location, async (i) => {
          const plan = await planErasureFor(i, {
            tenant: flags.tenant,
            employeeId: flags.employee,
            email: flags.email,
          });
          const lines = describePlan(plan);
          if (flags.dryRun) {
            ctx.result({ dryRun: true, plan }, () => [...lines, '(dry run: nothing was changed)']);
            return;
          }
          // The prompt shows the same plan that is then executed (or refused if the data moved).
          if (!flags.yes && !ctx.json) ctx.important(lines.join('\n'));
          await ctx.confirm(`Erase employee ${plan.employeeId} as planned above?`, flags.yes);
          const r = await executeErasurePlan(i, plan, {
            actor: cliActor(),
            reason: flags.reason,
            legalBasis: flags.legalBasis,
            receiptOut: flags.receiptOut,
          });
          ctx.result({ requestId: r.requestId, receipt: r.receipt, receiptFiles: r.receiptFiles }, () => [
            r.receiptText,
            ...r.receiptFiles.map((f) => `receipt written to ${f}`),
          ]);
        });
      },
    );
}

function registerList(dsar: Command): void {
  dsar
    .command('list')
    .description('the register of requests with due dates; exit 1 when one is overdue (for cron)')
    .option('-t, --tenant <company>', 'company slug or id')
    .addOption(new Option('--status <status>', 'only these').choices(['open', 'done', 'overdue']))
    .option('--overdue', 'only overdue requests (same as --status overdue)')
    .action(
      async (
        flags: { tenant?: string; status?: 'open' | 'done' | 'overdue'; overdue?: boolean },
        cmd: Command,
      ) => {
        const ctx = contextOf(cmd);
        const { withInstall } = await import('../../core/install.js');
        const { listDsarRequests } = await import('../../core/dsar/service.js');
        const status = flags.overdue ? 'overdue' : flags.status;
        const r = await withInstall(ctx.location, (i) =>
          listDsarRequests(i, { tenant: flags.tenant, status }),
        );
        ctx.result(r, () =>
          table(
            r.requests.map((q) => ({
              ...q,
              mark: q.mark === 'overdue' ? 'OVERDUE' : q.mark === 'due-soon' ? 'due soon' : '',
            })),
            ['id', 'tenant', 'kind', 'status', 'receivedAt', 'dueAt', 'mark', 'handledBy'],
          ),
        );
        if (r.overdue)
          throw new AttenduxError(
            'DSAR_OVERDUE',
            `${r.overdue} data subject request(s) are past their due date`,
            {
              hint: 'answer them (`dsar export` / `dsar erase`), or extend once with `dsar extend ID --reason`',
              resultPrinted: true,
            },
          );
      },
    );

  dsar
    .command('extend <id>')
    .description(
      'extend a request by two months, once (GDPR Art. 12(3)); the reason is told to the requester',
    )
    .requiredOption('--reason <text>', 'why the request needs longer')
    .action(async (id: string, flags: { reason: string }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { withInstall } = await import('../../core/install.js');
      const { extendDsarRequest } = await import('../../core/dsar/service.js');
      const { cliActor } = await import('../../core/actor.js');
      const r = await withInstall(ctx.location, (i) =>
        extendDsarRequest(i, { id, reason: flags.reason, actor: cliActor() }),
      );
      ctx.result(
        r,
        () => `request ${r.id} is now due ${r.dueAt} (extended once; it cannot be extended again)`,
      );
    });
}
