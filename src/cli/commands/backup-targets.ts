import type { Command } from 'commander';
import { contextOf, table, type CliContext } from '../context.js';
import { cliActor } from '../../core/actor.js';
import { AttenduxError } from '../../errors.js';
import type { OffsiteProgress } from '../../core/offsite/copy.js';

// The backup subcommands about backup targets and recipients (sync, list/verify --target, add-recipient).

export const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MB`;

export function throttled<T>(fn: (v: T) => void): (v: T) => void {
  let last = 0;
  return (v: T) => {
    const now = Date.now();
    if (now - last >= 200) {
      last = now;
      fn(v);
    }
  };
}

export function offsiteProgress(ctx: CliContext) {
  return throttled((p: OffsiteProgress) =>
    ctx.progress(
      `${p.phase === 'upload' ? 'copying' : p.phase === 'verify' ? 'checking' : 'downloading'} ${p.id} ${p.phase === 'download' ? 'from' : 'on'} ${p.target}: ${mb(p.bytes)} of ${mb(p.total)}`,
    ),
  );
}

/** backup sync. */
export function registerSync(backup: Command): void {
  backup
    .command('sync')
    .description('copy to each backup target what it lacks (after an outage, a new target, a killed upload)')
    .option('--target <name>', 'only this target')
    .option('--dry-run', 'list what would be copied, copy nothing')
    .action(async (f: { target?: string; dryRun?: boolean }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { syncTargets } = await import('../../core/offsite/remote.js');
      const r = await syncTargets({
        ...ctx.location,
        actor: cliActor(),
        target: f.target,
        dryRun: f.dryRun,
        onProgress: offsiteProgress(ctx),
      });
      ctx.progressDone();
      // Like the backups themselves: silent on success in cron; failures below always speak.
      const silent = !ctx.json && (ctx.opts.quiet || !process.stdout.isTTY) && r.ok;
      if (!silent)
        ctx.result(r, () =>
          r.targets.flatMap((t) => [
            t.error
              ? `FAIL ${t.target}: ${t.error.message}`
              : r.dryRun
                ? `${t.target}: ${t.missing.length ? `would copy ${t.missing.join(', ')}` : 'up to date'}`
                : `${t.target}: ${t.copied.length ? `copied ${t.copied.filter((c) => c.ok).length} of ${t.missing.length}` : 'up to date'}`,
            ...t.copied.map((c) =>
              c.ok
                ? `  copied ${c.id} (${mb(c.bytes)}, ${c.seconds.toFixed(1)} s)`
                : `  FAILED ${c.id}: ${c.error?.message ?? ''}`,
            ),
            ...(t.removedLeftovers.length
              ? [`  removed interrupted uploads: ${t.removedLeftovers.join(', ')}`]
              : []),
          ]),
        );
      if (!r.ok)
        throw new AttenduxError('OFFSITE_FAILED', 'backup sync did not complete on every target', {
          hint: 'see the lines above; run it again once the target answers',
          resultPrinted: true,
        });
    });
}

/** `backup add-recipient` and `keys add-recipient` are one command under two names. */
export async function addRecipientAction(recipient: string, _f: unknown, cmd: Command): Promise<void> {
  const ctx = contextOf(cmd);
  const { addRecipient } = await import('../../core/backup/recipients.js');
  const r = await addRecipient(ctx.location, recipient, cliActor());
  if (r.configBackup?.warning) ctx.important(`warning: ${r.configBackup.warning}`);
  ctx.result(r, () =>
    r.changed
      ? `added ${recipient} (${r.recipients.length} recipient(s))`
      : `${recipient} is already a recipient`,
  );
}

export async function listTargetAction(ctx: CliContext, name: string): Promise<void> {
  const { listTarget } = await import('../../core/offsite/remote.js');
  const cat = await listTarget(ctx.location, name);
  ctx.result(cat, () => [
    `target ${cat.target} (${cat.url})`,
    ...table(
      cat.backups.map((b) => ({
        id: b.id,
        kind: b.kind,
        created: b.createdAt,
        size: mb(b.bytes),
        parent: b.parent,
        chain: b.status === 'ok' ? 'ok' : `${b.status}: ${b.problem ?? ''}`,
      })),
      ['id', 'kind', 'created', 'size', 'parent', 'chain'],
    ),
    ...cat.invalid.map((i) => `unreadable sidecar ${i.file}: ${i.problem}`),
    ...cat.incomplete.map((n) => `incomplete upload ${n} (not a backup; \`attendux backup sync\` redoes it)`),
  ]);
}

export async function verifyTargetAction(
  ctx: CliContext,
  target: string,
  id: string | undefined,
  flags: { all?: boolean; identity?: string },
): Promise<void> {
  const { verifyTarget } = await import('../../core/offsite/remote.js');
  const r = await verifyTarget({
    ...ctx.location,
    target,
    id,
    all: flags.all,
    identityFile: flags.identity,
    onProgress: offsiteProgress(ctx),
  });
  ctx.progressDone();
  ctx.result(r, () =>
    r.backups.map((b) =>
      b.ok
        ? `ok   ${target}:${b.id} (${b.depth === 'full' ? `${b.entries} entries decrypted and checked` : 'file checksum only: pass --identity to check the contents'}, ${mb(b.bytes)} in ${b.seconds.toFixed(1)} s)`
        : `BAD  ${target}:${b.id}: ${b.error?.message ?? 'failed'}`,
    ),
  );
  const bad = r.backups.find((b) => !b.ok);
  if (bad)
    throw new AttenduxError(
      'BACKUP_CORRUPT',
      `the copy of ${bad.id} on target ${target} failed verification: ${bad.error?.message ?? ''}`,
      {
        hint: 'run `attendux backup sync` after removing it, or take a new full backup',
        resultPrinted: true,
      },
    );
}
