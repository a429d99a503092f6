import type { Command } from 'commander';
import { contextOf, intOption, type CliContext } from '../context.js';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the HTTP server (JSON API under /api/v1, /healthz, /readyz, /metrics)')
    .option('--host <host>', 'address to listen on (default: server.host)')
    .option('--port <port>', 'port to listen on (default: server.port)', intOption('--port', 0, 65535))
    .option('--tls-cert <file>', 'PEM certificate for built-in HTTPS (TLS 1.2 minimum)')
    .option('--tls-key <file>', 'PEM private key for built-in HTTPS')
    .option(
      '--workers <n>',
      'processes serving the port (node:cluster; crashed ones restarted); default 1',
      intOption('--workers', 1, 64),
    )
    .action(
      async (
        flags: { host?: string; port?: number; tlsCert?: string; tlsKey?: string; workers?: number },
        cmd: Command,
      ) => {
        const ctx = contextOf(cmd);
        const { serve } = await import('../../server/listen.js');
        const { gracefulStop } = await import('../lifecycle.js');
        await serve({
          stopSignal: gracefulStop(),
          configPath: ctx.opts.config,
          host: flags.host,
          port: flags.port,
          tlsCert: flags.tlsCert,
          tlsKey: flags.tlsKey,
          workers: flags.workers,
          onListening: (url) => ctx.important(`attendux is serving on ${url}`),
          onWarning: (m) => ctx.important(`warning: ${m}`),
          hooks: { onTenantSettingsChanged: settingsBackup(ctx) },
        });
      },
    );
}

/**
 * A company's settings changed in the server: take a config backup (it carries every company's settings),
 * audited as the user who made the change (core/backup/config-trigger.ts).
 */
export function settingsBackup(ctx: CliContext): (tenantId: string, actor: string) => void {
  let trigger: ((tenantId: string, actor: string) => Promise<void>) | undefined;
  const fire = async (tenantId: string, actor: string) => {
    const { settingsChangeTrigger } = await import('../../core/backup/config-trigger.js');
    trigger ??= settingsChangeTrigger(ctx.location, (r) => {
      if (r.warning) ctx.important(`warning: ${r.warning}`);
    });
    await trigger(tenantId, actor);
  };
  // After the response, in the background: backupConfigAfterChange never throws (problems are warnings).
  return (tenantId, actor) => void fire(tenantId, actor);
}
