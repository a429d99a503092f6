import cluster from 'node:cluster';
import { readFile } from 'node:fs/promises';
import { openInstall } from '../core/install.js';
import { AttenduxError } from '../errors.js';
import { buildApp, type AppHooks } from './app.js';
import { DEFAULT_SECURITY_CONTACT, type Config } from '../core/config/schema.js';
import { reportListening, superviseWorkers, workerStopSignal } from './cluster.js';

export interface ServeOptions {
  configPath?: string;
  host?: string;
  port?: number;
  /** PEM files for built-in HTTPS (else server.tlsCert / server.tlsKey from the config, else plain HTTP). */
  tlsCert?: string;
  tlsKey?: string;
  hooks?: AppHooks;
  onListening?: (url: string) => void;
  /** Configuration problems worth a look at start (default: logged as warnings). */
  onWarning?: (message: string) => void;
  /** Resolves to stop the server (default: SIGTERM or SIGINT). */
  stopSignal?: Promise<void>;
  /** Processes serving the port (node:cluster, src/server/cluster.ts); default 1: this process serves. */
  workers?: number;
}

function signalled(): Promise<void> {
  return new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
}

/**
 * The primary of `serve --workers N`: opens the install once (starting the embedded cluster if that is the
 * setup, so the workers find it running; checking the schema), says the warnings once, supervises.
 */
async function servePrimary(opts: ServeOptions & { workers: number }): Promise<void> {
  const install = await openInstall({ configPath: opts.configPath });
  try {
    const warn = opts.onWarning ?? ((m: string) => process.stderr.write(`warning: ${m}\n`));
    for (const w of startupWarnings(install.loaded.config.server)) warn(w);
    await superviseWorkers({
      workers: opts.workers,
      onListening: (url) => opts.onListening?.(`${url} (${opts.workers} workers)`),
      onWorkerExit: warn,
      stopSignal: opts.stopSignal ?? signalled(),
    });
  } finally {
    await install.close();
  }
}

async function readPem(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new AttenduxError(
      'CONFIG_INVALID',
      `cannot read the TLS ${what} ${path}: ${(err as Error).message}`,
      {
        hint: 'pass --tls-cert and --tls-key (PEM files readable by this user)',
      },
    );
  }
}

/** What `serve` warns about at start. */
export function startupWarnings(server: Config['server']): string[] {
  const out: string[] = [];
  if (server.securityContact === DEFAULT_SECURITY_CONTACT)
    out.push(
      `server.securityContact is still the placeholder ${DEFAULT_SECURITY_CONTACT}: /.well-known/security.txt names nobody (attendux config set server.securityContact mailto:you@example.com)`,
    );
  return out;
}

/**
 * Open the install, build the app, listen; on SIGTERM/SIGINT stop accepting, let in-flight requests finish,
 * close the pool and the install (and the embedded cluster if this process started it).
 */
export async function serve(opts: ServeOptions): Promise<void> {
  if ((opts.workers ?? 1) > 1 && cluster.isPrimary)
    return servePrimary({ ...opts, workers: opts.workers ?? 1 });
  // A worker of servePrimary: it listens and drains like a single server, but the primary says the address
  // and the warnings, and tells it when to stop.
  const worker = cluster.isWorker;
  const install = await openInstall({ configPath: opts.configPath });
  try {
    const server = install.loaded.config.server;
    const certPath = opts.tlsCert ?? server.tlsCert;
    const keyPath = opts.tlsKey ?? server.tlsKey;
    if (!!certPath !== !!keyPath) {
      throw new AttenduxError('USAGE', 'TLS needs both a certificate and a key', {
        hint: 'pass both --tls-cert and --tls-key',
      });
    }
    const https =
      certPath && keyPath
        ? { cert: await readPem(certPath, 'certificate'), key: await readPem(keyPath, 'key') }
        : undefined;
    const app = await buildApp({ install, https, hooks: opts.hooks });
    // The CLI passes lifecycle.ts's gracefulStop(); in-process callers without one stop on the first signal.
    if (!worker) for (const w of startupWarnings(server)) (opts.onWarning ?? ((m) => app.log.warn(m)))(w);
    const stop = worker
      ? Promise.race([workerStopSignal(), ...(opts.stopSignal ? [opts.stopSignal] : [])])
      : (opts.stopSignal ?? signalled());
    try {
      const url = await app.listen({ host: opts.host ?? server.host, port: opts.port ?? server.port });
      if (worker) reportListening(url);
      else opts.onListening?.(url);
      await stop;
      app.log.info('shutting down: finishing in-flight requests');
    } finally {
      // Keep-alive connections that go idle after their last in-flight response would otherwise hold the
      // shutdown for the whole keep-alive timeout.
      const reaper = setInterval(() => app.server.closeIdleConnections(), 100);
      try {
        await app.close();
      } finally {
        clearInterval(reaper);
      }
    }
  } finally {
    await install.close();
    // The IPC channel to the primary would keep the worker's event loop alive after the drain.
    if (worker) process.disconnect();
  }
}
