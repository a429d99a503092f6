import type { Command } from 'commander';
import { contextOf, table, type CliContext } from '../context.js';
import { AttenduxError } from '../../errors.js';
import type { BackupProgress, BackupRunResult } from '../../core/backup/run.js';
import { backupAuditWarning } from '../../core/audit/backup.js';

const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MB`;

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

function throttled<T>(fn: (v: T) => void): (v: T) => void {
  let last = 0;
  return (v: T) => {
    const now = Date.now();
    if (now - last >= 200) {
      last = now;
      fn(v);
    }
  };
}

/** Backups are run by cron: silent on success unless someone watches a terminal (or asked for --json). */
function printRun(ctx: CliContext, r: BackupRunResult): void {
  ctx.progressDone();
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
  ctx.result(r, () => lines);
}

export function registerBackup(program: Command): void {
  const backup = program
    .command('backup')
    .description('encrypted backups: full, incremental, config; list, verify, prune, status');

  backup
    .command('full')
    .description('back up all data at one consistent snapshot (COPY, gzip, tar, age), in constant memory')
    .action(async (_f: unknown, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { backupFull } = await import('../../core/backup/full.js');
      printRun(ctx, await backupFull({ ...ctx.location, onProgress: progressLine(ctx) }));
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
          fullIfNeeded: flags.fullIfNeeded,
          onProgress: progressLine(ctx),
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
      const r = await backupConfig({ ...ctx.location, ifChanged: flags.ifChanged });
      if (r.auditSkipped) ctx.note(`note: no audit entry written (${r.auditSkipped})`);
      if (ctx.json) return ctx.result(r, () => undefined);
      if (ctx.opts.quiet || !process.stdout.isTTY) return;
      ctx.result(r, () =>
        r.sidecar
          ? `config backup ${r.sidecar.id}: ${r.files.join(', ')}`
          : `config unchanged since ${r.previous ?? 'the last config backup'}; nothing written`,
      );
    });

  backup
    .command('list')
    .description('the backups in the backup dir with their chain status (no key needed)')
    .action(async (_f: unknown, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { loadConfig } = await import('../../core/config/load.js');
      const { readCatalog } = await import('../../core/backup/catalog.js');
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
      ctx.result({ backupDir: cat.backupDir, backups: cat.backups, invalid: cat.invalid }, () => [
        ...table(
          rows.map((r) => ({ ...r, size: mb(r.size) })),
          ['id', 'kind', 'created', 'size', 'parent', 'chain'],
        ),
        ...cat.invalid.map((i) => `unreadable sidecar ${i.file}: ${i.problem}`),
      ]);
    });

  backup
    .command('verify [id]')
    .description('decrypt in a stream and check every checksum (without --identity: the file checksum only)')
    .option('--all', 'verify every backup')
    .option(
      '-i, --identity <file>',
      'age identity file (else $ATTENDUX_BACKUP_IDENTITY, backup.identityFile)',
    )
    .action(async (id: string | undefined, flags: { all?: boolean; identity?: string }, cmd: Command) => {
      const ctx = contextOf(cmd);
      if (id && flags.all) throw new AttenduxError('USAGE', 'give a backup id or --all, not both');
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

  backup
    .command('prune')
    .description(
      'delete backups past retention (never a full that a kept incremental needs, never the newest)',
    )
    .option('--dry-run', 'print what would be deleted and why, delete nothing')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(async (flags: { dryRun?: boolean; yes?: boolean }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { pruneBackups } = await import('../../core/backup/prune.js');
      const plan = await pruneBackups({ ...ctx.location, dryRun: true });
      if (!flags.dryRun && plan.delete.length) {
        // cron runs prune with --yes; on a terminal we ask.
        await ctx.confirm(
          `delete ${plan.delete.length} backup(s)?`,
          flags.yes || !ctx.interactive ? flags.yes : undefined,
        );
      }
      const r =
        flags.dryRun || !plan.delete.length ? plan : await pruneBackups({ ...ctx.location, dryRun: false });
      ctx.result(r, () => [
        ...r.delete.map((d) => `${r.dryRun ? 'would delete' : 'deleted'} ${d.id}: ${d.reason}`),
        ...r.keep.filter((k) => k.protected).map((k) => `kept ${k.id}: ${k.reason}`),
        r.delete.length
          ? `${r.delete.length} backup(s) ${r.dryRun ? 'to delete' : 'deleted'}`
          : 'nothing to prune',
      ]);
    });

  backup
    .command('status')
    .description('age of the newest backup of each kind against its schedule; exit 1 when stale or failing')
    .option('--prometheus <file>', 'also write node_exporter textfile metrics to this file')
    .action(async (flags: { prometheus?: string }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { backupStatus, writePrometheus } = await import('../../core/backup/status.js');
      const st = await backupStatus(ctx.location);
      if (flags.prometheus) await writePrometheus(flags.prometheus, st);
      ctx.result(st, () =>
        st.kinds.map(
          (k) =>
            `${k.ok ? 'ok   ' : 'STALE'} ${k.kind.padEnd(11)} ${k.newest ? `${k.newest.id} (${k.ageHours!.toFixed(1)} h ago)` : 'never'}${k.problem ? `: ${k.problem}` : k.audit ? `; ${k.audit.line}` : ''}`,
        ),
      );
      if (!st.ok) {
        const bad = st.kinds.filter((k) => !k.ok);
        throw new AttenduxError(
          'BACKUP_STALE',
          `backups need attention: ${bad.map((k) => `${k.kind} ${k.problem ?? ''}`).join('; ')}`,
          {
            hint: 'see `attendux backup list`; run the missing backup or fix the failing run',
            resultPrinted: true,
          },
        );
      }
    });

  backup
    .command('add-recipient <recipient>')
    .description('encrypt future backups also to this age public key (age1...), e.g. an escrow key')
    .action(addRecipientAction);
}

/** `backup add-recipient` and `keys add-recipient` are one command under two names. */
export async function addRecipientAction(recipient: string, _f: unknown, cmd: Command): Promise<void> {
  const ctx = contextOf(cmd);
  const { addRecipient } = await import('../../core/backup/recipients.js');
  const r = await addRecipient(ctx.location, recipient);
  if (r.configBackup?.warning) ctx.important(`warning: ${r.configBackup.warning}`);
  ctx.result(r, () =>
    r.changed
      ? `added ${recipient} (${r.recipients.length} recipient(s))`
      : `${recipient} is already a recipient`,
  );
}
