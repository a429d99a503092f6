import type { ChildProcess } from 'node:child_process';

/**
 * Clusters this process started and has not stopped yet: main() stops them on every way out. Kept apart
 * from embedded.ts so that the CLI's entry point can ask "anything to stop?" without loading the embedded
 * cluster's code (and its dependencies) in every command that never starts one.
 */
export const started = new Map<string, { child: ChildProcess; stop: () => Promise<void> }>();

/** Stop every cluster this process started (fast shutdown), waiting for each to exit. */
export async function stopStartedClusters(): Promise<void> {
  await Promise.all([...started.values()].map((c) => c.stop()));
}

/** Ask every cluster this process started to shut down (fast), without waiting: for a prompt exit. */
export function signalStartedClusters(): void {
  for (const { child } of started.values()) child.kill('SIGINT');
}

export function hasStartedClusters(): boolean {
  return started.size > 0;
}
