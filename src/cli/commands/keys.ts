import type { Command } from 'commander';
import { addRecipientAction } from './backup-targets.js';
import { contextOf, intOption, table } from '../context.js';

export function registerKeys(program: Command): void {
  const keys = program.command('keys').description('data-encryption keys and backup recipients');

  keys
    .command('show')
    .description(
      'key ids (which is active, how many face templates each seals) and backup recipients; never key material',
    )
    .action(async (_flags: unknown, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { withInstall } = await import('../../core/install.js');
      const { showKeys } = await import('../../core/keys.js');
      const r = await withInstall(ctx.location, (i) => showKeys(i));
      ctx.result(r, () => [
        'data-encryption keys (AES-256-GCM, face templates):',
        ...table(
          r.dataKeys.map((k) => ({ ...k, active: k.active ? 'yes' : '' })),
          ['id', 'active', 'templates'],
        ).map((l) => `  ${l}`),
        'backup recipients (age):',
        ...(r.backupRecipients.length ? r.backupRecipients.map((x) => `  ${x}`) : ['  (none)']),
        ...(r.backupIdentityFile ? [`backup identity file on this server: ${r.backupIdentityFile}`] : []),
      ]);
    });

  keys
    .command('rotate-data-key')
    .description(
      'add a new data-encryption key, make it active, re-encrypt every face template (old keys are kept)',
    )
    .option('--batch-size <n>', 'templates per transaction', intOption('--batch-size', 1, 100_000), 500)
    .action(async (flags: { batchSize: number }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { withInstall } = await import('../../core/install.js');
      const { rotateDataKey } = await import('../../core/keys.js');
      const { cliActor } = await import('../../core/actor.js');
      const r = await withInstall(ctx.location, (i) =>
        rotateDataKey(i, {
          actor: cliActor(),
          batchSize: flags.batchSize,
          onProgress: (n) => ctx.progress(`re-encrypted ${n}`),
        }),
      );
      ctx.progressDone();
      // The secrets file now holds a key no backup has: without it the re-encrypted templates are lost.
      const { backupConfigAfterChange } = await import('../../core/backup/config-trigger.js');
      const configBackup = await backupConfigAfterChange(ctx.location, cliActor());
      if (configBackup.warning) ctx.important(`warning: ${configBackup.warning}`);
      ctx.result({ ...r, configBackup }, () => [
        `new active data key ${r.newKeyId} (previous ${r.previousKeyId} kept in ${r.secretsPath})`,
        `re-encrypted ${r.reencrypted} face template(s)`,
      ]);
    });

  keys
    .command('add-recipient <recipient>')
    .description('encrypt future backups also to this age public key (same as `backup add-recipient`)')
    .action(addRecipientAction);
}
