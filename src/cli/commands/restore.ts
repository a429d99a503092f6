import { rmSync } from 'node:fs';
import type { Command } from 'commander';
import { contextOf, type CliContext } from '../context.js';
import { PASSPHRASE_FLAG, PASSPHRASE_HELP, usePassphrase } from '../passphrase.js';
import { cliActor } from '../../core/actor.js';
import { AttenduxError } from '../../errors.js';
import type { RestoreOptions, RestoreProgress } from '../../core/restore/toolkit.js';
import type { RestorePlan } from '../../core/restore/plan.js';

interface RestoreFlags {
  backup?: string;
  at?: string;
  into?: string;
  inPlace?: boolean;
  dropOld?: boolean;
  tenant?: string;
  drill?: boolean;
  configOnly?: boolean;
  recover?: boolean;
  identity?: string;
  identityPassphraseFile?: string;
  dryRun?: boolean;
  yes?: boolean;
  force?: boolean;
  from?: string;
}

const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MB`;

function progress(ctx: CliContext) {
  return (p: RestoreProgress) =>
    ctx.progress(
      p.phase === 'decrypt'
        ? `decrypting and verifying ${p.backup ?? ''}`
        : p.phase === 'load'
          ? `loading ${p.table ?? ''}${p.bytes ? `: ${mb(p.bytes)}` : ''}`
          : p.phase === 'apply'
            ? `applying changes${p.table ? ` to ${p.table}` : ''}`
            : p.phase === 'index'
              ? 'building keys and indexes'
              : p.phase === 'constraints'
                ? 'checking foreign keys'
                : p.phase === 'migrate'
                  ? 'running newer migrations'
                  : p.phase === 'check'
                    ? 'checking the restored database'
                    : 'creating the schema',
    );
}

/** Flag combinations that make no sense are usage errors (exit 2), found before anything is opened. */
function checkFlags(f: RestoreFlags): void {
  const modes = [
    f.into !== undefined && '--into',
    f.inPlace && '--in-place',
    f.tenant !== undefined && '--tenant',
    f.drill && '--drill',
    f.configOnly && '--config-only',
    f.recover && '--recover',
  ].filter(Boolean);
  if (modes.length > 1) throw new AttenduxError('USAGE', `${modes.join(' and ')} cannot be combined`);
  if (f.backup && f.at) throw new AttenduxError('USAGE', 'give --backup ID or --at TIME, not both');
  if (f.dropOld && !f.inPlace) throw new AttenduxError('USAGE', '--drop-old only goes with --in-place');
  if (f.configOnly && f.at)
    throw new AttenduxError('USAGE', '--at does not apply to --config-only (use --backup ID)');
  if (f.drill && (f.dryRun || f.force))
    throw new AttenduxError('USAGE', '--drill takes neither --dry-run nor --force');
  if (f.at !== undefined && Number.isNaN(new Date(f.at).getTime()))
    throw new AttenduxError('USAGE', `--at "${f.at}" is not a time`, {
      hint: 'an ISO 8601 time such as 2026-11-23T14:30:00Z',
    });
}

async function printPlan(
  ctx: CliContext,
  plan: RestorePlan,
  extra: Record<string, unknown> = {},
): Promise<void> {
  const { describePlan } = await import('../../core/restore/plan.js');
  ctx.result({ dryRun: true, plan, ...extra }, () => [...describePlan(plan), 'dry run: nothing was changed']);
}

/**
 * `--from NAME`: the backups come from an off-site target. They are downloaded into a private (0700) temp
 * dir and checked against their sidecars first; the restore then reads that dir as its backup dir (through
 * the ATTENDUX_BACKUP_DIR override), so every restore mode works unchanged. The dir is removed when the
 * command ends (and swept by the next restore if this one is killed).
 */
async function backupSource(
  ctx: CliContext,
  f: RestoreFlags,
  kind: 'config' | 'database',
): Promise<{ env?: NodeJS.ProcessEnv; backupDir?: string }> {
  if (f.from === undefined) return {};
  const { fetchForRestore } = await import('../../core/offsite/fetch.js');
  const fetched = await fetchForRestore({
    ...ctx.location,
    actor: cliActor(),
    from: f.from,
    kind,
    backupId: f.backup,
    at: f.at,
    onProgress: (p) => ctx.progress(`downloading ${p.id} from ${p.target}: ${mb(p.bytes)} of ${mb(p.total)}`),
  });
  process.once('exit', () => rmSync(fetched.dir, { recursive: true, force: true }));
  ctx.progressDone();
  ctx.note(
    `downloaded and checked ${fetched.backups.join(', ')} from target ${fetched.target} (${mb(fetched.bytes)})`,
  );
  return { env: { ...process.env, ATTENDUX_BACKUP_DIR: fetched.dir }, backupDir: fetched.dir };
}

async function configOnly(ctx: CliContext, f: RestoreFlags): Promise<void> {
  const { restoreConfig } = await import('../../core/restore/config.js');
  if (f.force && !f.dryRun) await ctx.confirm('overwrite existing config, secrets and service files?', f.yes);
  const source = await backupSource(ctx, f, 'config');
  const r = await restoreConfig({
    ...ctx.location,
    backupDir: source.backupDir,
    backupId: f.backup,
    identityFile: f.identity,
    force: f.force,
    dryRun: f.dryRun,
  });
  ctx.result(r, () => [
    `${r.dryRun ? 'would restore' : 'restored'} from ${r.backup} (${r.createdAt}):`,
    ...r.files.map(
      (x) => `  ${x.path}${x.exists ? (r.dryRun ? ' (exists: needs --force)' : ' (overwritten)') : ''}`,
    ),
  ]);
}

export function registerRestore(program: Command): void {
  const restore = program
    .command('restore')
    .description(
      'restore a backup point or time: into a new database (default), --in-place, one company (--tenant), a --drill, or --config-only',
    )
    .option('--backup <id>', 'restore this backup (with the full and incrementals before it)')
    .option('--at <time>', 'restore the newest state at or before this time (ISO 8601)')
    .option('--into <dbname>', 'the new database to restore into (default <live>_restore_<time>)')
    .option('--in-place', 'replace the live database (maintenance mode, atomic swap, the old one kept)')
    .option('--drop-old', 'with --in-place: drop the replaced database instead of keeping it')
    .option('--tenant <company>', 'restore one company (slug or id) into the live database, others untouched')
    .option('--drill', 'restore into a throwaway database, check it, drop it; exit 1 on any failed check')
    .option('--config-only', 'bring back config, secrets and service files from a config backup')
    .option(
      '--recover',
      'finish or undo a killed --in-place restore, drop half-built restore databases and decrypted temp dirs',
    )
    .option(
      '-i, --identity <file>',
      'age identity file (else $ATTENDUX_BACKUP_IDENTITY, backup.identityFile)',
    )
    .option(PASSPHRASE_FLAG, PASSPHRASE_HELP)
    .option('--dry-run', 'print the plan (files, order, times, sizes, what is replaced) and change nothing')
    .option('-y, --yes', 'do not ask for confirmation')
    .option('--force', 'replace a target database (or config files) that already hold data')
    .option('--from <target>', 'restore from this backup target (downloaded and checked first)')
    .action(async (f: RestoreFlags, cmd: Command) => {
      const ctx = contextOf(cmd);
      checkFlags(f);
      usePassphrase(ctx, f.identityPassphraseFile);
      if (f.configOnly) return configOnly(ctx, f);

      if (f.recover) return recover(ctx);
      const source = await backupSource(ctx, f, 'database');
      const base = {
        ...ctx.location,
        actor: cliActor(),
        ...(source.env ? { env: source.env } : {}),
        backupId: f.backup,
        at: f.at,
        identityFile: f.identity,
        onProgress: progress(ctx),
      };

      if (f.drill) return drill(ctx, base);
      if (f.tenant !== undefined) return tenant(ctx, f, f.tenant, base);
      if (f.inPlace) return inPlace(ctx, f, base);
      return into(ctx, f, base);
    });

  restore
    .command('config')
    .description('the same as restore --config-only: config, secrets and service files from a config backup')
    .option('--backup <id>', 'this config backup (default the newest intact one)')
    .option(
      '-i, --identity <file>',
      'age identity file (else $ATTENDUX_BACKUP_IDENTITY, backup.identityFile)',
    )
    .option('--dry-run', 'list the files that would be written and write nothing')
    .option('-y, --yes', 'do not ask for confirmation')
    .option('--force', 'overwrite files that exist')
    .option('--from <target>', 'from this backup target (downloaded and checked first)')
    // The parent command parses the flags it shares with this one wherever they stand: read them merged.
    .option(PASSPHRASE_FLAG, PASSPHRASE_HELP)
    .action((_f: RestoreFlags, cmd: Command) => {
      const f = cmd.optsWithGlobals<RestoreFlags>();
      usePassphrase(contextOf(cmd), f.identityPassphraseFile);
      return configOnly(contextOf(cmd), f);
    });
}

/** What every database restore mode gets: location, actor, backup source, point, identity, progress. */
type Base = RestoreOptions;

/** restore --recover. */
async function recover(ctx: CliContext): Promise<void> {
  const { recoverRestore } = await import('../../core/restore/execute.js');
  const r = await recoverRestore({ ...ctx.location, actor: cliActor() });
  ctx.result(r, () => {
    const lines: string[] = [];
    if (r.recovered)
      lines.push(
        `${r.recovered.action === 'rolled-forward' ? 'finished' : 'undid'} the in-place restore of pid ${r.recovered.journal.pid} (${r.recovered.action}):`,
        ...r.recovered.steps.map((x) => `  ${x}`),
      );
    for (const d of r.droppedDatabases) lines.push(`dropped the half-built database ${d}`);
    for (const d of r.removedTempDirs) lines.push(`removed the decrypted temp dir ${d}`);
    if (!lines.length) lines.push('nothing to recover: no killed restore left anything behind');
    return lines;
  });
}

/** restore --drill. */
async function drill(ctx: CliContext, base: Base): Promise<void> {
  const { restoreDrill } = await import('../../core/restore/drill.js');
  const r = await restoreDrill(base);
  ctx.progressDone();
  ctx.result(r, () => [
    `restore drill ${r.ok ? 'PASSED' : 'FAILED'} (${r.plan?.steps.map((s) => s.id).join(' + ') ?? 'no plan'}, ${r.seconds.toFixed(1)} s)`,
    ...r.checks.map((c) => `  ${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.detail}`),
  ]);
  if (!r.ok)
    throw new AttenduxError(
      'RESTORE_DRILL_FAILED',
      `restore drill failed: ${r.checks
        .filter((c) => !c.ok)
        .map((c) => `${c.name}: ${c.detail}`)
        .join('; ')}`,
      {
        hint: 'the backups may not be restorable: investigate now and take a new full backup',
        resultPrinted: true,
      },
    );
}

/** restore --tenant: the plan shown is the plan carried out. */
async function tenant(ctx: CliContext, f: RestoreFlags, company: string, base: Base): Promise<void> {
  const { previewTenantRestore, restoreTenant } = await import('../../core/restore/tenant.js');
  const planned = await previewTenantRestore({ ...base, tenant: company });
  if (f.dryRun) return printPlan(ctx, planned.plan);
  await ctx.confirm(`${planned.plan.effect}. Continue?`, f.yes);
  // The plan shown is the plan carried out (backups, point in time): not made again.
  const r = await restoreTenant({ ...base, tenant: company }, planned);
  ctx.progressDone();
  ctx.result(r, () => [
    `restored company ${r.slug} (${r.tenantId}) to ${r.plan.pointInTime} in ${r.seconds.toFixed(1)} s:`,
    ...Object.entries(r.tables).map(([t, n]) => `  ${t}: ${n.removed} removed, ${n.restored} restored`),
  ]);
}

/** restore --in-place: the names shown (the kept database's timestamp included) are the names used. */
async function inPlace(ctx: CliContext, f: RestoreFlags, base: Base): Promise<void> {
  const { planInPlace, restoreInPlace } = await import('../../core/restore/in-place.js');
  const planned = await planInPlace({ ...base, dropOld: f.dropOld });
  if (f.dryRun) return printPlan(ctx, planned.plan);
  await ctx.confirm(`${planned.plan.effect}. Continue?`, f.yes);
  // The names shown (the kept database's timestamp included) are the names used.
  const r = await restoreInPlace({ ...base, dropOld: f.dropOld }, planned);
  ctx.progressDone();
  ctx.result(r, () => [
    `restored ${r.database} to ${r.plan.pointInTime} in place in ${r.seconds.toFixed(1)} s`,
    r.oldDatabase
      ? `  the replaced database is kept as ${r.oldDatabase}`
      : '  the replaced database was dropped',
  ]);
}

/** restore [--into NAME]. */
async function into(ctx: CliContext, f: RestoreFlags, base: Base): Promise<void> {
  const { planRestoreInto, restoreInto } = await import('../../core/restore/execute.js');
  const preview = await planRestoreInto({ ...base, into: f.into });
  if (f.dryRun) return printPlan(ctx, preview.plan, { database: preview.database, target: preview.target });
  if (preview.target.notEmpty) {
    if (!f.force)
      throw new AttenduxError(
        'RESTORE_TARGET_EXISTS',
        `database ${preview.database} already exists and holds tables`,
        { hint: 'pick another --into name, or pass --force to replace it' },
      );
    await ctx.confirm(`${preview.plan.effect}. Continue?`, f.yes);
  }
  const r = await restoreInto({ ...base, into: preview.database, force: f.force }, preview);
  ctx.progressDone();
  ctx.result(r, () => [
    `restored ${r.plan.steps.length} backup(s) to ${r.plan.pointInTime} into database ${r.database} in ${r.seconds.toFixed(1)} s`,
    ...r.next.map((l) => `  ${l}`),
  ]);
}
