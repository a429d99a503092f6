import type { Command } from 'commander';
import { contextOf, table, type CliContext } from '../context.js';
import { PASSPHRASE_FLAG, PASSPHRASE_HELP, usePassphrase } from '../passphrase.js';
import { cliActor } from '../../core/actor.js';
import { AttenduxError } from '../../errors.js';
import type { BackupProgress, BackupRunResult } from '../../core/backup/run.js';
import type { CopyOutcome } from '../../core/offsite/copy.js';
import { backupAuditWarning } from '../../core/audit/backup-warning.js';
import {
  addRecipientAction,
  listTargetAction,
  mb,
  offsiteProgress,
  registerSync,
  throttled,
  verifyTargetAction,
} from './backup-targets.js';
import { registerStatus } from './backup-status.js';

function progressLine(ctx: CliContext) {
  let last = 0;
  return (p: BackupProgress) => {
    // Callbacks come per 64 KiB chunk; a terminal needs a few updates a second.
    const now = Date.now();
    if (now - last < 200) return;
    last = now;
    ctx.progress(
      p.phase === 'copy'
        ? `copying ${p.table ?? ''}: ${mb(p.bytes)} compressed`
        : p.phase === 'archive'
          ? `encrypting: ${mb(p.bytes)} written`
          : 'config',
    );
  };
}

/** A failed off-site copy does not fail the backup, but it is never silent: stderr even in cron. */
function warnOffsite(ctx: CliContext, copies: CopyOutcome[] | undefined): void {
  for (const c of copies ?? [])
    if (!c.ok)
      ctx.important(
        `warning: backup ${c.id} was not copied to target ${c.target}: ${c.error?.message ?? 'failed'} (recorded; \`attendux backup sync\` retries)`,
      );
}

/** Backups are run by cron: silent on success unless someone watches a terminal (or asked for --json). */
function printRun(ctx: CliContext, r: BackupRunResult): void {
  ctx.progressDone();
  warnOffsite(ctx, r.offsite);
  const s = r.sidecar;
  // A backup of a broken audit chain is taken, but never silently (cron mails stderr).
  const auditWarning = backupAuditWarning(s.audit);
  if (auditWarning) ctx.important(auditWarning);
  if (ctx.json) {
    ctx.result({ ...r }, () => undefined);
    return;
  }
  if (ctx.opts.quiet || !process.stdout.isTTY) return;
  const lines = [
    `${s.kind} backup ${s.id}: ${mb(s.bytes)}, ${s.rows} ${s.kind === 'incremental' ? 'changes' : 'rows'}, ${(s.durationMs / 1000).toFixed(1)} s`,
  ];
  if (s.parent) lines.push(`  parent ${s.parent}`);
  if (r.note && r.note !== auditWarning) lines.push(`  ${r.note}`);
  if (r.cleanedUp.length) lines.push(`  removed leftovers of an earlier run: ${r.cleanedUp.join(', ')}`);
  for (const c of r.offsite ?? [])
    if (c.ok) lines.push(`  copied to ${c.target} and checked (${c.seconds.toFixed(1)} s)`);
  ctx.result(r, () => lines);
}

interface VerifyFlags {
  all?: boolean;
  identity?: string;
  identityPassphraseFile?: string;
  target?: string;
}

export function registerBackup(program: Command): void {
  const backup = program
    .command('backup')
    .description('encrypted backups: full, incremental, config; list, verify, prune, status');
  registerRuns(backup);
  registerInspect(backup);
  registerRepair(backup);
  registerVerify(backup);
  registerRetention(backup);
  registerStatus(backup);
  registerSync(backup);
  backup
    .command('add-recipient <recipient>')
    .description('encrypt future backups also to this age public key (age1...), e.g. an escrow key')
    .action(addRecipientAction);
}

/** backup full, incremental, config. */
function registerRuns(backup: Command): void {
  backup
    .command('full')
    .description('back up all data at one consistent snapshot (COPY, gzip, tar, age), in constant memory')
    .action(async (_f: unknown, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { backupFull } = await import('../../core/backup/full.js');
      printRun(
        ctx,
        await backupFull({
          ...ctx.location,
          actor: cliActor(),
          onProgress: progressLine(ctx),
          onOffsiteProgress: offsiteProgress(ctx),
        }),
      );
    });

  backup
    .command('incremental')
    .description('back up the changes committed since the newest backup of the chain')
    .option('--full-if-needed', 'take a full backup when there is no usable parent')
    .action(async (flags: { fullIfNeeded?: boolean }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { backupIncremental } = await import('../../core/backup/incremental.js');
      printRun(
        ctx,
        await backupIncremental({
          ...ctx.location,
          actor: cliActor(),
          fullIfNeeded: flags.fullIfNeeded,
          onProgress: progressLine(ctx),
          onOffsiteProgress: offsiteProgress(ctx),
        }),
      );
    });

  backup
    .command('config')
    .description('back up the config file, the secrets file and the rendered service files')
    .option('--if-changed', 'do nothing when nothing changed since the last config backup')
    .action(async (flags: { ifChanged?: boolean }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { backupConfig } = await import('../../core/backup/config.js');
      const r = await backupConfig({ ...ctx.location, actor: cliActor(), ifChanged: flags.ifChanged });
      warnOffsite(ctx, r.offsite);
      if (r.auditSkipped) ctx.note(`note: no audit entry written (${r.auditSkipped})`);
      if (ctx.json) return ctx.result(r, () => undefined);
      if (ctx.opts.quiet || !process.stdout.isTTY) return;
      ctx.result(r, () =>
        r.sidecar
          ? `config backup ${r.sidecar.id}: ${r.files.join(', ')}`
          : `config unchanged since ${r.previous ?? 'the last config backup'}; nothing written`,
      );
    });
}

/** backup list. */
function registerInspect(backup: Command): void {
  backup
    .command('list')
    .description('the backups in the backup dir (or on a target) with their chain status (no key needed)')
    .option('--target <name>', 'list the copies on this backup target instead')
    .action(async (f: { target?: string }, cmd: Command) => {
      const ctx = contextOf(cmd);
      if (f.target !== undefined) return listTargetAction(ctx, f.target);
      const { loadConfig } = await import('../../core/config/load.js');
      const { readCatalog } = await import('../../core/archive/catalog.js');
      const loaded = await loadConfig(ctx.location);
      const cat = await readCatalog(loaded.backupDir);
      const rows = cat.backups.map((b) => ({
        id: b.id,
        kind: b.kind,
        created: b.createdAt,
        size: b.bytes,
        parent: b.parent,
        chain: b.status === 'ok' ? 'ok' : `${b.status}: ${b.problem ?? ''}`,
      }));
      ctx.result(
        { backupDir: cat.backupDir, backups: cat.backups, invalid: cat.invalid, problems: cat.problems },
        () => [
          ...table(
            rows.map((r) => ({ ...r, size: mb(r.size) })),
            ['id', 'kind', 'created', 'size', 'parent', 'chain'],
          ),
          ...cat.problems.map((p) => `BAD  ${p.id} (${p.file}): ${p.problem}`),
        ],
      );
      if (cat.problems.length) {
        const { describeProblems } = await import('../../core/archive/catalog.js');
        throw new AttenduxError(
          'BACKUP_CORRUPT',
          `${cat.problems.length} backup(s) cannot be read: ${describeProblems(cat.problems)}`,
          {
            hint: 'run `attendux backup repair -i IDENTITY` to rebuild their sidecars from the encrypted files',
            resultPrinted: true,
          },
        );
      }
    });
}

/** backup repair. */
function registerRepair(backup: Command): void {
  backup
    .command('repair')
    .description(
      'rebuild missing or unreadable sidecars from the encrypted files (needs the identity); never deletes',
    )
    .option(
      '-i, --identity <file>',
      'age identity file (else $ATTENDUX_BACKUP_IDENTITY, backup.identityFile)',
    )
    .option(PASSPHRASE_FLAG, PASSPHRASE_HELP)
    .option('--dry-run', 'say what would be repaired, change nothing')
    .action(
      async (
        flags: { identity?: string; dryRun?: boolean; identityPassphraseFile?: string },
        cmd: Command,
      ) => {
        const ctx = contextOf(cmd);
        usePassphrase(ctx, flags.identityPassphraseFile);
        const { repairBackups } = await import('../../core/backup/repair.js');
        const r = await repairBackups({
          ...ctx.location,
          actor: cliActor(),
          identityFile: flags.identity,
          dryRun: flags.dryRun,
        });
        ctx.result(r, () =>
          r.items.length
            ? r.items.map((i) => `${i.outcome.padEnd(12)} ${i.id} (${i.was}): ${i.detail}`)
            : 'nothing to repair: every backup has a readable sidecar',
        );
        const bad = r.items.filter((i) => i.outcome !== 'repaired');
        if (bad.length)
          throw new AttenduxError(
            'BACKUP_CORRUPT',
            `${bad.length} backup(s) could not be repaired: ${bad.map((i) => `${i.id}: ${i.detail}`).join('; ')}`,
            {
              hint: `they are kept in ${r.backupDir}/quarantine for inspection; take a new full backup now`,
              resultPrinted: true,
            },
          );
      },
    );
}

/** backup verify. */
function registerVerify(backup: Command): void {
  backup
    .command('verify [id]')
    .description('decrypt in a stream and check every checksum (without --identity: the file checksum only)')
    .option('--all', 'verify every backup')
    .option(
      '-i, --identity <file>',
      'age identity file (else $ATTENDUX_BACKUP_IDENTITY, backup.identityFile)',
    )
    .option(
      '--target <name>',
      'verify the copies on this target (streamed; no local copy without --identity)',
    )
    .option(PASSPHRASE_FLAG, PASSPHRASE_HELP)
    .action(async (id: string | undefined, flags: VerifyFlags, cmd: Command) => {
      const ctx = contextOf(cmd);
      usePassphrase(ctx, flags.identityPassphraseFile);
      if (id && flags.all) throw new AttenduxError('USAGE', 'give a backup id or --all, not both');
      if (flags.target !== undefined) return verifyTargetAction(ctx, flags.target, id, flags);
      const { verifyBackups } = await import('../../core/backup/verify.js');
      const r = await verifyBackups({
        ...ctx.location,
        id,
        all: flags.all,
        identityFile: flags.identity,
        onProgress: throttled((p: { id: string; bytes: number; total: number }) =>
          ctx.progress(`verifying ${p.id}: ${mb(p.bytes)} of ${mb(p.total)}`),
        ),
      });
      ctx.progressDone();
      ctx.result(r, () =>
        r.backups.map((b) =>
          b.ok
            ? `ok   ${b.id} (${b.depth === 'full' ? `${b.entries} entries decrypted and checked` : 'file checksum only: pass --identity to check the contents'}, ${mb(b.bytes)} in ${b.seconds.toFixed(1)} s)`
            : `BAD  ${b.id}: ${b.error?.message ?? 'failed'}`,
        ),
      );
      const bad = r.backups.find((b) => !b.ok);
      if (bad) {
        throw new AttenduxError(
          'BACKUP_CORRUPT',
          `backup ${bad.id} failed verification: ${bad.error?.message ?? ''}`,
          {
            hint: 'take a new full backup now; keep the damaged file for inspection',
            resultPrinted: true,
          },
        );
      }
    });
}

/** backup prune. */
function registerRetention(backup: Command): void {
  backup
    .command('prune')
    .description(
      'delete backups past retention (never a full that a kept incremental needs, never the newest)',
    )
    .option('--dry-run', 'print what would be deleted and why, delete nothing')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(async (flags: { dryRun?: boolean; yes?: boolean }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { applyPrune, planBackupPrune } = await import('../../core/backup/prune.js');
      const loc = { ...ctx.location, actor: cliActor() };
      const plan = await planBackupPrune(loc);
      const remote = (plan.offsite ?? []).reduce((n, t) => n + t.delete.length, 0);
      const total = plan.delete.length + remote;
      if (!flags.dryRun && total) {
        // cron runs prune with --yes; on a terminal we ask.
        await ctx.confirm(
          `delete ${plan.delete.length} backup(s)${remote ? ` here and ${remote} on targets` : ''}?`,
          flags.yes || !ctx.interactive ? flags.yes : undefined,
        );
      }
      // Exactly what was shown (and confirmed) is deleted: the plan is applied, not made again.
      const r =
        flags.dryRun || !total ? { ...plan, dryRun: true, cleanedUp: [] } : await applyPrune(loc, plan);
      ctx.result(r, () => [
        ...r.delete.map((d) => `${r.dryRun ? 'would delete' : 'deleted'} ${d.id}: ${d.reason}`),
        ...r.keep.filter((k) => k.protected).map((k) => `kept ${k.id}: ${k.reason}`),
        r.delete.length
          ? `${r.delete.length} backup(s) ${r.dryRun ? 'to delete' : 'deleted'}`
          : 'nothing to prune',
        ...(r.offsite ?? []).flatMap((t) =>
          t.error
            ? [`target ${t.target}: FAILED: ${t.error.message}`]
            : [
                ...t.delete.map(
                  (d) => `target ${t.target}: ${r.dryRun ? 'would delete' : 'deleted'} ${d.id}: ${d.reason}`,
                ),
                `target ${t.target}: ${t.delete.length ? `${t.delete.length} backup(s) ${r.dryRun ? 'to delete' : 'deleted'}` : 'nothing to prune'}`,
              ],
        ),
      ]);
      const failed = (r.offsite ?? []).filter((t) => t.error);
      if (failed.length)
        throw new AttenduxError(
          'OFFSITE_FAILED',
          `pruning failed on ${failed.map((t) => `${t.target} (${t.error!.message})`).join(', ')}`,
          {
            hint: 'the local prune is done; run `attendux backup prune` again once the target answers',
            resultPrinted: true,
          },
        );
    });
}
