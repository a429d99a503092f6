import { hasStartedClusters, signalStartedClusters, stopStartedClusters } from '../db/started-clusters.js';

/**
 * How the process ends, in one place (main() installs it): on SIGINT/SIGTERM a running `serve` drains and
 * returns, so main() exits 0; any other command stops the embedded cluster it started and exits 128+n; a
 * second signal exits at once (the clusters are told to shut down fast and finish that on their own).
 */
const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };

let installed = false;
let received = 0;
const drains = new Set<() => void>();

/** Resolves on the first SIGINT/SIGTERM: what `serve` waits on before its ordered shutdown. */
export function gracefulStop(): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      drains.delete(done);
      resolve();
    };
    drains.add(done);
  });
}

/**
 * Call fn on the first SIGINT/SIGTERM instead of exiting (a command that stops by itself, like `schedule
 * run` waiting for its job); returns the function that unregisters it.
 */
export function onGracefulStop(fn: () => void): () => void {
  const d = () => {
    drains.delete(d);
    fn();
  };
  drains.add(d);
  return () => drains.delete(d);
}

export function installSignalHandlers(): void {
  if (installed) return;
  installed = true;
  for (const sig of Object.keys(SIGNAL_EXIT)) {
    process.on(sig, () => void onSignal(sig));
  }
}

async function onSignal(sig: string): Promise<void> {
  received++;
  if (received === 1 && drains.size) {
    for (const d of [...drains]) d();
    return;
  }
  // From here the process is ending with 128+n: the cluster going away under a running query makes pg emit
  // 'error' on the checked-out client, which must not turn into an unhandled-error crash with exit 1.
  process.on('uncaughtException', () => undefined);
  if (received === 1 && hasStartedClusters()) {
    await Promise.race([stopStartedClusters(), new Promise((r) => setTimeout(r, 15_000).unref())]);
  } else {
    signalStartedClusters();
  }
  process.exit(SIGNAL_EXIT[sig] ?? 1);
}
