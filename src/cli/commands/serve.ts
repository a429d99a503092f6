import type { Command } from 'commander';
import { contextOf, intOption } from '../context.js';

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
        await serve({
          configPath: ctx.opts.config,
          host: flags.host,
          port: flags.port,
          tlsCert: flags.tlsCert,
          tlsKey: flags.tlsKey,
          onListening: (url) => ctx.important(`attendux is serving on ${url}`),
        });
      },
    );
}
