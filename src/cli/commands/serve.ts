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
    .action(
      async (flags: { host?: string; port?: number; tlsCert?: string; tlsKey?: string }, cmd: Command) => {
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
          onListening: (url) => ctx.important(`attendux is serving on ${url}`),
          onWarning: (m) => ctx.important(`warning: ${m}`),
          hooks: { onTenantSettingsChanged: settingsBackup(ctx) },
        });
      },
    );
}

/**
 * A company's settings changed in the server: take a config backup (it carries every company's settings).
 * Runs after the response, one at a time; changes made meanwhile are folded into the next run.
 */
export function settingsBackup(ctx: CliContext): (tenantId: string) => void {
  let running = false;
  let again = false;
  const run = async (): Promise<void> => {
    running = true;
    try {
      do {
        again = false;
        const { backupConfigAfterChange } = await import('../../core/backup/config.js');
        const r = await backupConfigAfterChange(ctx.location);
        if (r.warning) ctx.important(`warning: ${r.warning}`);
      } while (again);
    } finally {
      running = false;
    }
  };
  return () => {
    if (running) {
      again = true;
      return;
    }
    void run();
  };
}
