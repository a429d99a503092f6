import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { CliContext, contextOf } from '../context.js';
import { printInit } from './init.js';

export const QUICKSTART_DIR = 'attendux-data';

export function registerQuickstart(program: Command): void {
  program
    .command('quickstart')
    .description(
      'what `npm start` runs: provision an embedded install in ./attendux-data on first run, then serve',
    )
    .option('--dir <dir>', 'install directory', QUICKSTART_DIR)
    .action(async (flags: { dir: string }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const dir = resolve(flags.dir);
      const configPath = join(dir, 'attendux.json');
      const { initInstall, installStatus } = await import('../../core/init.js');
      const status = await installStatus(configPath);
      if (status !== 'complete') {
        const { cliActor } = await import('../../core/actor.js');
        ctx.note(
          status === 'none'
            ? `First run: provisioning an embedded install in ${dir}`
            : `Finishing the install an earlier run began in ${dir}`,
        );
        const result = await initInstall({
          configPath,
          dataDir: dir,
          tenantSlug: 'demo',
          tenantName: 'Demo Company',
          adminEmail: 'owner@demo.example',
          actor: cliActor(),
          onStep: (s) => ctx.note(`  ${s}`),
        });
        printInit(ctx, result);
        if (result.generatedPassword) {
          const { writeFileAtomic } = await import('../../lib/fs.js');
          const file = join(dir, 'initial-owner-password.txt');
          await writeFileAtomic(file, `${result.adminEmail}\n${result.generatedPassword}\n`, 0o600);
          ctx.important(`(also saved in ${file}; delete it once you have changed the password)`);
        }
      }
      const { serve } = await import('../../server/listen.js');
      const { settingsBackup } = await import('./serve.js');
      const { gracefulStop } = await import('../lifecycle.js');
      await serve({
        stopSignal: gracefulStop(),
        configPath,
        onListening: (url) => ctx.important(`attendux is serving on ${url} (company "demo")`),
        hooks: {
          onTenantSettingsChanged: settingsBackup(new CliContext({ ...ctx.opts, config: configPath })),
        },
      });
    });
}
