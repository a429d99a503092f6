import { Chalk, type ChalkInstance } from 'chalk';

/**
 * Whether to colour output on a stream. `--no-color` wins, then FORCE_COLOR (colour even into a pipe, as CI
 * logs want; `0`/`false` turns it off), then NO_COLOR (https://no-color.org: any non-empty value), then
 * whether the stream is a terminal that is not `dumb`. chalk's own detection reads `--no-color` from the
 * whole argv and ignores NO_COLOR, so the level is decided here and given to chalk.
 */
export function colorLevel(
  stream: { isTTY?: boolean },
  opts: { color?: boolean },
  env: NodeJS.ProcessEnv = process.env,
): 0 | 1 | 2 | 3 {
  if (opts.color === false) return 0;
  const force = env.FORCE_COLOR;
  if (force !== undefined) {
    if (force === '' || force === 'true') return 1;
    if (force === 'false') return 0;
    const n = Number.parseInt(force, 10);
    return Number.isNaN(n) ? 1 : (Math.min(Math.max(n, 0), 3) as 0 | 1 | 2 | 3);
  }
  if (env.NO_COLOR) return 0;
  return stream.isTTY === true && env.TERM !== 'dumb' ? 1 : 0;
}

/** A chalk for one stream: plain strings pass through unchanged at level 0. */
export function paintFor(
  stream: { isTTY?: boolean },
  opts: { color?: boolean },
  env: NodeJS.ProcessEnv = process.env,
): ChalkInstance {
  return new Chalk({ level: colorLevel(stream, opts, env) });
}

export type Status = 'pass' | 'warn' | 'fail' | 'skip';

/** The one colour scheme for check results: doctor, schedule and backup status. */
export function statusColor(paint: ChalkInstance, status: Status, text: string): string {
  switch (status) {
    case 'pass':
      return paint.green(text);
    case 'warn':
      return paint.yellow(text);
    case 'fail':
      return paint.red(text);
    case 'skip':
      return paint.dim(text);
  }
}
