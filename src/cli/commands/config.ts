import type { Command } from 'commander';
import { contextOf } from '../context.js';
import { AttenduxError } from '../../errors.js';

export function registerConfig(program: Command): void {
  const config = program.command('config').description('read, change and check the configuration');

  config
    .command('path')
    .description('print where the config, secrets and data live')
    .action(async (_f: unknown, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { loadConfig } = await import('../../core/config/load.js');
      const loaded = await loadConfig(ctx.location);
      const out = {
        config: loaded.path,
        secrets: loaded.secretsPath,
        dataDir: loaded.config.dataDir,
        backupDir: loaded.backupDir,
      };
      ctx.result(out, () => [
        `config   ${out.config}`,
        `secrets  ${out.secrets}`,
        `dataDir  ${out.dataDir}`,
        `backups  ${out.backupDir}`,
      ]);
    });

  config
    .command('get [key]')
    .description('print the effective value of a key (dotted, e.g. server.port), or the whole config')
    .action(async (key: string | undefined, _f: unknown, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { getConfigValue } = await import('../../core/config/edit.js');
      const value = await getConfigValue(ctx.location, key);
      ctx.result(key ? { key, value } : value, () =>
        typeof value === 'object' && value !== null ? JSON.stringify(value, null, 2) : String(value),
      );
    });

  config
    .command('set <key> [value]')
    .description('change one key (validated, written atomically, previous version kept)')
    .option('--unset', 'remove the key so its default applies')
    .action(async (key: string, value: string | undefined, flags: { unset?: boolean }, cmd: Command) => {
      const ctx = contextOf(cmd);
      if (value === undefined && !flags.unset)
        throw new AttenduxError('USAGE', 'config set needs a value (or --unset)');
      if (value !== undefined && flags.unset)
        throw new AttenduxError('USAGE', 'give a value or --unset, not both');
      const { setConfigValue } = await import('../../core/config/edit.js');
      const result = await setConfigValue(ctx.location, key, flags.unset ? undefined : value);
      if (result.changed) {
        // PRODUCT.md: a settings change triggers a config backup; its failure warns but never undoes the set.
        const { backupConfigAfterChange } = await import('../../core/backup/config-trigger.js');
        const { cliActor } = await import('../../core/actor.js');
        const backup = await backupConfigAfterChange(ctx.location, cliActor());
        if (backup.warning) ctx.important(`warning: ${backup.warning}`);
      }
      ctx.result(result, () =>
        result.changed
          ? `${key}: ${JSON.stringify(result.previous)} -> ${JSON.stringify(result.value)}`
          : `${key} unchanged`,
      );
    });

  config
    .command('validate')
    .description('check the config file and the secrets file; exit 2 naming the first bad key')
    .action(async (_f: unknown, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { validateConfigFile } = await import('../../core/config/edit.js');
      const result = await validateConfigFile(ctx.location);
      for (const w of result.warnings ?? []) ctx.note(`warning: ${w}`);
      ctx.result(result, () => `${result.path}: valid`);
    });
}
