import { Option, type Command } from 'commander';
import { contextOf, intOption, table } from '../context.js';

export function registerMigrate(program: Command): void {
  const migrate = program.command('migrate').description('apply, revert or inspect schema migrations');

  const run =
    (direction: 'up' | 'down') => async (flags: { count?: number; dryRun?: boolean }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { migrate: doMigrate } = await import('../../core/migrate.js');
      const result = await doMigrate(ctx.location, { direction, count: flags.count, dryRun: flags.dryRun });
      const rc = result.rechain;
      if (rc && 'error' in rc && result.ran.length)
        ctx.important(`warning: audit log not re-keyed: ${rc.error}`);
      ctx.result(result, () => [
        ...(result.ran.length
          ? [`${flags.dryRun ? 'would run' : 'ran'} ${direction}: ${result.ran.join(', ')}`]
          : ['nothing to migrate']),
        ...(rc && 'rechained' in rc && rc.rechained
          ? [`re-keyed ${rc.rechained} audit entries under the audit key (HMAC-SHA256)`]
          : []),
      ]);
    };

  migrate
    .command('up')
    .description('apply pending migrations (all by default); concurrent runs wait for each other')
    .addOption(new Option('--count <n>', 'apply at most n').argParser(intOption('--count', 1)))
    .option('--dry-run', 'list what would run, change nothing')
    .action(run('up'));
  migrate
    .command('down')
    .description('revert the newest migration (or --count n)')
    .addOption(new Option('--count <n>', 'revert n').argParser(intOption('--count', 1)))
    .option('--dry-run', 'list what would run, change nothing')
    .action(run('down'));
  migrate
    .command('status')
    .description('list applied and pending migrations')
    .action(async (_flags: unknown, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { migrationStatus } = await import('../../core/migrate.js');
      const state = await migrationStatus(ctx.location);
      ctx.result(state, () => [
        ...table(
          [
            ...state.applied.map((a) => ({ migration: a.name, state: 'applied', at: a.runOn })),
            ...state.pending.map((p) => ({ migration: p, state: 'pending', at: null })),
          ],
          ['migration', 'state', 'at'],
        ),
      ]);
    });
  migrate
    .command('create <name>')
    .description(
      'create an empty SQL migration in --dir (default ./migrations of the current directory; for attendux developers)',
    )
    .option(
      '--dir <path>',
      'the folder to write it to (a checkout of attendux: its migrations/)',
      'migrations',
    )
    .action(async (name: string, flags: { dir: string }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { createMigration } = await import('../../core/migrate.js');
      const file = await createMigration(name, flags.dir);
      ctx.result({ file }, () => `created ${file} (in --dir ${flags.dir}, not the installed package)`);
    });
}
