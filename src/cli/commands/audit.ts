import type { Command } from 'commander';
import { contextOf, intOption, table, type CliContext } from '../context.js';
import { AttenduxError } from '../../errors.js';

function timeOption(name: string) {
  return (v: string): Date => {
    const rel = /^(\d+)(d|h)$/.exec(v);
    const d = rel
      ? new Date(Date.now() - Number(rel[1]) * (rel[2] === 'd' ? 86_400_000 : 3_600_000))
      : new Date(v);
    if (Number.isNaN(d.getTime()))
      throw new AttenduxError('USAGE', `${name}: not a time: "${v}" (ISO 8601, or 7d / 12h ago)`);
    return d;
  };
}

interface VerifyFlags {
  tenant?: string;
  since?: Date;
  file?: string;
  checkpoints?: string[];
  publicKey?: string;
}

function printVerify(ctx: CliContext, r: import('../../core/audit/verify.js').VerifyResult) {
  ctx.result(r, () => [
    ...r.warnings.map((w) => `warning: ${w}`),
    ...r.breaks.map(
      (b) => `BROKEN ${b.kind.padEnd(9)} ${b.tenantId}#${b.seq}${b.at ? ` ${b.at}` : ''}: ${b.detail}`,
    ),
    ...(r.moreBreaks ? [`... and ${r.moreBreaks} more`] : []),
    `${r.ok ? 'ok' : 'FAILED'}: ${r.checked} entries in ${r.chains} chain(s), ${r.checkpoints} signed checkpoint(s) compared, ${r.breaks.length + r.moreBreaks} break(s)`,
  ]);
  if (!r.ok) {
    throw new AttenduxError(
      'AUDIT_BROKEN',
      `the audit log does not verify: ${r.breaks.length + r.moreBreaks} break(s)`,
      {
        hint: 'each break names the entry and what does not match; see README "Audit log"',
        resultPrinted: true,
      },
    );
  }
}

export function registerAudit(program: Command): void {
  const audit = program
    .command('audit')
    .description('the tamper-evident audit log: log, verify, purge, export');

  auditLog(audit);
  auditVerify(audit);
  auditPurge(audit);
  auditExport(audit);
  auditCheckpoint(audit);
  auditRechain(audit);
}

function auditLog(audit: Command): void {
  audit
    .command('log')
    .description('audit entries, newest first (logins, changes, backups); paged on a terminal')
    .option('-t, --tenant <company>', 'company slug or id (`system` for install-wide events)')
    .option('--actor <actor>', 'e.g. user:<id>, apikey:<prefix>, cli:<user>, anonymous')
    .option('--action <action>', 'e.g. auth.login, auth.login_failed, or a prefix: auth.*')
    .option('--entity <type[:id]>', 'e.g. user or user:<id>')
    .option('--since <time>', 'ISO time, or 7d / 12h ago', timeOption('--since'))
    .option('--until <time>', 'ISO time, or 7d / 12h ago', timeOption('--until'))
    .option('--limit <n>', 'at most n entries', intOption('--limit', 1))
    .option('--csv', 'CSV instead of text')
    .action(
      async (
        flags: {
          tenant?: string;
          actor?: string;
          action?: string;
          entity?: string;
          since?: Date;
          until?: Date;
          limit?: number;
          csv?: boolean;
        },
        cmd: Command,
      ) => {
        const ctx = contextOf(cmd);
        const { withInstall } = await import('../../core/install.js');
        const { resolveTenant, streamAuditLog, csvLine, CSV_COLUMNS } =
          await import('../../core/audit/service.js');
        await withInstall(ctx.location, async (i) => {
          const tenantId = await resolveTenant(i.admin, flags.tenant);
          const filter = { ...flags, tenantId };
          // Streams: one JSON line per entry with --json (a range of millions never sits in memory).
          let out: NodeJS.WritableStream = ctx.stdout;
          let pager: import('node:child_process').ChildProcess | undefined;
          if (!ctx.json && !flags.csv && ctx.stdout.isTTY && process.stdin.isTTY) {
            const { spawn } = await import('node:child_process');
            pager = spawn(process.env.PAGER || 'less', ['-FRX'], { stdio: ['pipe', 'inherit', 'inherit'] });
            pager.on('error', () => undefined);
            if (pager.stdin) out = pager.stdin;
          }
          const write = (s: string) =>
            out.write(s) ? undefined : new Promise<void>((r) => out.once('drain', () => r()));
          if (flags.csv) await write(csvLine(CSV_COLUMNS) + '\n');
          const n = await streamAuditLog(i.admin, filter, (r) =>
            ctx.json
              ? write(JSON.stringify(r) + '\n')
              : flags.csv
                ? write(csvLine(CSV_COLUMNS.map((c) => (r as unknown as Record<string, unknown>)[c])) + '\n')
                : write(
                    `${r.at}  ${r.tenantId.slice(0, 8)}#${r.seq}  ${r.action.padEnd(22)} ${r.actor}${r.entityType ? `  ${r.entityType}${r.entityId ? `:${r.entityId}` : ''}` : ''}${r.ipHash ? `  ip:${r.ipHash.slice(0, 12)}` : ''}  ${JSON.stringify(r.details)}\n`,
                  ),
          );
          if (pager) {
            pager.stdin?.end();
            await new Promise((r) => pager.on('close', r));
          } else if (!ctx.json && !flags.csv && n === 0) ctx.note('(no entries)');
        });
      },
    );
}

function auditVerify(audit: Command): void {
  audit
    .command('verify')
    .description('walk every chain and report every broken link and checkpoint mismatch; exit 1 on any')
    .option('-t, --tenant <company>', 'only this chain (slug, id or `system`)')
    .option('--since <time>', 'only entries from this time on', timeOption('--since'))
    .option('--file <export>', 'verify an `audit export` file offline instead of the database')
    .option(
      '--public-key <ed25519:...>',
      'with --file: the install public key to trust (else the manifest’s)',
    )
    .option('--checkpoints <file...>', 'also compare with these checkpoint files (off-server copies)')
    .action(async (flags: VerifyFlags, cmd: Command) => {
      const ctx = contextOf(cmd);
      if (flags.file) {
        const { verifyExportFile } = await import('../../core/audit/service.js');
        // On the install the MACs are checked too; an auditor elsewhere checks links, checksums, signatures.
        let auditKey: string | undefined;
        try {
          const { loadConfig, loadSecrets } = await import('../../core/config/load.js');
          auditKey = (await loadSecrets((await loadConfig(ctx.location)).secretsPath)).auditKey;
        } catch {
          // no readable config here (an offline check on another host): verify without the audit key
          auditKey = undefined;
        }
        const r = await verifyExportFile(flags.file, { publicKey: flags.publicKey, auditKey });
        ctx.result(r, () => [
          ...r.problems.map((p) => `BROKEN ${p.kind.padEnd(9)} ${p.seq ?? '-'}: ${p.detail}`),
          `${r.ok ? 'ok' : 'FAILED'}: ${r.entries} entries in ${r.file}, signed by ${r.publicKey}${r.macsChecked ? ', MACs checked' : ' (MACs not checked: no audit key here; links, checksums and signatures were)'}`,
        ]);
        if (!r.ok)
          throw new AttenduxError(
            'AUDIT_BROKEN',
            `the export does not verify: ${r.problems.length} problem(s)`,
            {
              resultPrinted: true,
            },
          );
        return;
      }
      const { withInstall } = await import('../../core/install.js');
      const { verifyAudit } = await import('../../core/audit/service.js');
      const r = await withInstall(ctx.location, (i) =>
        verifyAudit(i, { tenant: flags.tenant, since: flags.since, checkpointFiles: flags.checkpoints }),
      );
      printVerify(ctx, r);
    });
}

function auditPurge(audit: Command): void {
  audit
    .command('purge')
    .description('delete entries older than the retention (audit.retentionDays); the chain stays verifiable')
    .option('--older-than <age>', 'e.g. 365d, 52w, 2y (default: audit.retentionDays)')
    .option('--dry-run', 'count what would be deleted, delete nothing')
    .option('--yes', 'do not ask')
    .action(async (flags: { olderThan?: string; dryRun?: boolean; yes?: boolean }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { withInstall } = await import('../../core/install.js');
      const { purgeAudit, parseDuration } = await import('../../core/audit/service.js');
      const { cliActor } = await import('../../core/actor.js');
      const r = await withInstall(ctx.location, async (i) => {
        const days = flags.olderThan ? parseDuration(flags.olderThan) : i.loaded.config.audit.retentionDays;
        if (days < 1) throw new AttenduxError('USAGE', '--older-than must be at least 1d');
        if (!flags.dryRun) await ctx.confirm(`delete audit entries older than ${days} days?`, flags.yes);
        return purgeAudit(i, { olderThanDays: days, dryRun: flags.dryRun, actor: cliActor() });
      });
      ctx.result(r, () => [
        `${r.dryRun ? 'would delete' : 'deleted'} ${r.deleted} entries older than ${r.olderThanDays} days (before ${r.cutoff})`,
        ...table(r.tenants, ['tenantId', 'deleted', 'throughSeq']).map((l) => `  ${l}`),
      ]);
    });
}

function auditExport(audit: Command): void {
  audit
    .command('export')
    .description(
      'one company’s entries as JSON lines or CSV, with a signed manifest, checksums and checkpoints',
    )
    .requiredOption('-t, --tenant <company>', 'company slug or id (`system` for install-wide events)')
    .option('--since <time>', 'from (ISO time, or 7d ago)', timeOption('--since'))
    .option('--until <time>', 'until, exclusive', timeOption('--until'))
    .requiredOption(
      '--out <file>',
      'the export file (.jsonl or .csv); the manifest goes to <file>.manifest.json',
    )
    .option('--csv', 'CSV (default: JSON lines, or CSV when --out ends in .csv)')
    .action(
      async (
        flags: { tenant: string; since?: Date; until?: Date; out: string; csv?: boolean },
        cmd: Command,
      ) => {
        const ctx = contextOf(cmd);
        const { withInstall } = await import('../../core/install.js');
        const { exportAudit } = await import('../../core/audit/service.js');
        const { cliActor } = await import('../../core/actor.js');
        const path = await import('node:path');
        const m = await withInstall(ctx.location, (i) =>
          exportAudit(i, {
            ...flags,
            out: path.resolve(flags.out),
            format: flags.csv ? 'csv' : undefined,
            actor: cliActor(),
          }),
        );
        ctx.result(m, () => [
          `exported ${m.entries} entries (seq ${m.firstSeq ?? '-'}..${m.lastSeq ?? '-'}) to ${flags.out}`,
          `manifest ${flags.out}.manifest.json, signed by ${m.publicKey}; ${m.checkpoints.length} checkpoint(s)`,
          ...(m.verified.ok
            ? []
            : [`WARNING: the range did not verify at export: ${m.verified.breaks.length} break(s)`]),
        ]);
      },
    );
}

function auditCheckpoint(audit: Command): void {
  audit
    .command('checkpoint')
    .description('sign the head of every chain now and append it to <dataDir>/audit/checkpoints.jsonl')
    .action(async (_f: unknown, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { withInstall } = await import('../../core/install.js');
      const { checkpointNow } = await import('../../core/audit/service.js');
      const r = await withInstall(ctx.location, (i) => checkpointNow(i, 'manual'));
      ctx.result(r, () => `signed ${r.checkpoints.length} checkpoint(s) into ${r.file}`);
    });
}

function auditRechain(audit: Command): void {
  audit
    .command('rechain')
    .description('re-key entries still under the old unkeyed hash (migrate up does this too)')
    .option('--force', 're-key even when the old chain is already broken (the break is recorded)')
    .action(async (flags: { force?: boolean }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { withInstall } = await import('../../core/install.js');
      const { rechainAudit } = await import('../../core/audit/service.js');
      const r = await withInstall(ctx.location, (i) => rechainAudit(i.admin, { force: flags.force }));
      ctx.result(r, () =>
        r.legacy ? `re-keyed ${r.rechained} audit entries` : 'nothing to re-key: every entry has its MAC',
      );
    });
}
