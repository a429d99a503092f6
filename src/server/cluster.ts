import cluster, { type Worker } from 'node:cluster';
import { AttenduxError } from '../errors.js';

/**
 * `serve --workers N`: the primary forks N workers (node:cluster) that each build the app and listen on the
 * same port (the primary hands out connections round-robin); the primary serves nothing itself. A worker
 * that dies is forked again, after 0.25 s, doubling per crash in a row up to 30 s (a worker that stayed up
 * 30 s resets it); on stop every worker drains its in-flight requests, then the primary returns.
 */

const STOP = 'attendux:stop';
const LISTENING = 'attendux:listening';
const BACKOFF_FIRST_MS = 250;
const BACKOFF_MAX_MS = 30_000;
const STABLE_MS = 30_000;

interface Listening {
  type: typeof LISTENING;
  url: string;
}

function isListening(m: unknown): m is Listening {
  return typeof m === 'object' && m !== null && (m as Listening).type === LISTENING;
}

/** The delay before forking again after `crashes` crashes in a row. */
export function restartDelay(crashes: number): number {
  return Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.max(0, crashes - 1));
}

/** In a worker: resolves when the primary asks it to stop, or is gone (a primary killed with -9). */
export function workerStopSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.on('message', (m) => {
      if (m === STOP) resolve();
    });
    process.once('disconnect', () => resolve());
  });
}

/** In a worker: tell the primary the address it listens on. */
export function reportListening(url: string): void {
  process.send?.({ type: LISTENING, url } satisfies Listening);
}

export interface SuperviseOptions {
  workers: number;
  /** Once, when every first-generation worker listens. */
  onListening?: (url: string) => void;
  /** A worker died and is forked again (or not, while stopping). */
  onWorkerExit?: (message: string) => void;
  stopSignal: Promise<void>;
}

/** Run N workers until stopSignal, then stop them all and wait for their drains. */
export async function superviseWorkers(opts: SuperviseOptions): Promise<void> {
  let stopping = false;
  let everListened = false;
  let crashes = 0;
  let lastStart = 0;
  const timers = new Set<NodeJS.Timeout>();
  const listening = new Set<number>();
  let failStartup: (err: Error) => void = () => undefined;
  const startupFailed = new Promise<never>((_resolve, reject) => (failStartup = reject));
  // Unobserved until raced below: a rejection before then must not count as unhandled.
  startupFailed.catch(() => undefined);

  const fork = (): Worker => {
    lastStart = Date.now();
    const w = cluster.fork();
    w.on('message', (m: unknown) => {
      if (!isListening(m)) return;
      listening.add(w.id);
      if (!everListened && listening.size >= opts.workers) {
        everListened = true;
        opts.onListening?.(m.url);
      }
    });
    return w;
  };
  const onExit = (w: Worker, code: number | null, signal: string | null) => {
    listening.delete(w.id);
    if (stopping) return;
    const how = signal ?? `code ${code}`;
    if (!everListened) {
      failStartup(
        new AttenduxError('INTERNAL', `a serve worker exited (${how}) before it was listening`, {
          hint: 'its error is printed above (port in use, database unreachable, configuration)',
        }),
      );
      return;
    }
    crashes = Date.now() - lastStart > STABLE_MS ? 1 : crashes + 1;
    const delay = restartDelay(crashes);
    opts.onWorkerExit?.(`serve worker ${w.process.pid} exited (${how}); starting another in ${delay} ms`);
    const t = setTimeout(() => {
      timers.delete(t);
      if (!stopping) fork();
    }, delay);
    timers.add(t);
  };
  cluster.on('exit', onExit);
  try {
    for (let i = 0; i < opts.workers; i++) fork();
    await Promise.race([opts.stopSignal, startupFailed]);
  } finally {
    stopping = true;
    for (const t of timers) clearTimeout(t);
    await stopAll();
    cluster.off('exit', onExit);
  }
}

/** Ask every live worker to drain and wait until each has exited. */
async function stopAll(): Promise<void> {
  const live = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w && !w.isDead());
  await Promise.all(
    live.map(
      (w) =>
        new Promise<void>((resolve) => {
          w.once('exit', () => resolve());
          // A worker that is already going away cannot take the message: its exit is what we wait for.
          if (w.isConnected()) w.send(STOP, (err: Error | null) => void err);
        }),
    ),
  );
}
