import { hostname } from 'node:os';
import type { Config } from '../config/schema.js';
import type { JobRun } from './runs.js';

/** What the notify command gets on stdin (one JSON object) and what `schedule exec --json` prints. */
export interface NotifyPayload {
  /** `offsite-failure`: the backup succeeded locally but its copy to a target failed (see `offsite`). */
  event: 'failure' | 'overdue' | 'offsite-failure';
  job: string;
  host: string;
  description: string;
  /** The run that failed; for `overdue`, the job's last run (or null if it never ran). */
  run: JobRun | null;
  /** For `overdue`: the scheduled time that did not run. */
  missed?: string;
  problem: string;
  /** For `offsite-failure`: the backup and each target's failed copy. */
  offsite?: { backup: string; failed: { target: string; error: { code: string; message: string } | null }[] };
}

export function payload(p: Omit<NotifyPayload, 'host'>): NotifyPayload {
  return { ...p, host: hostname() };
}

/**
 * Run `notify.command` with the payload on stdin: a string runs through /bin/sh (so `mail -s ... root`
 * works), an array runs as it is. Bounded by notify.timeoutSeconds; its failure is reported, never thrown,
 * because the job's own failure is what the caller reports.
 */
export async function runNotify(config: Config, p: NotifyPayload): Promise<string | undefined> {
  const cmd = config.notify.command;
  if (!cmd) return undefined;
  const opts = {
    input: JSON.stringify(p) + '\n',
    timeout: config.notify.timeoutSeconds * 1000,
    reject: false,
    stdout: 'ignore',
    env: { ATTENDUX_EVENT: p.event, ATTENDUX_JOB: p.job },
  } as const;
  // execa and its ~140 modules load only when a hook runs: offsite/copy.ts imports this into every backup.
  const { execa } = await import('execa');
  const r =
    typeof cmd === 'string'
      ? await execa(cmd, { ...opts, shell: '/bin/sh' })
      : await execa(cmd[0]!, cmd.slice(1), opts);
  if (r.timedOut) return `notify command timed out after ${config.notify.timeoutSeconds} s`;
  if (r.failed) {
    const last = String(r.stderr ?? '')
      .trim()
      .split('\n')
      .pop();
    return `notify command failed (${r.exitCode ?? r.signal ?? 'not started'})${last ? `: ${last}` : r.shortMessage ? `: ${r.shortMessage}` : ''}`;
  }
  return undefined;
}

/**
 * healthchecks.io-style ping: `<url>/start` when the job starts, `<url>` on success, `<url>/fail` on failure
 * (the run's JSON as the body). `{job}` in the URL is replaced by the job's name, so one check per job is
 * one URL pattern. A ping that cannot be delivered is reported, never fatal.
 */
export async function ping(
  config: Config,
  job: string,
  kind: 'start' | 'success' | 'fail',
  body?: unknown,
): Promise<string | undefined> {
  const base = config.notify.pingUrl;
  if (!base) return undefined;
  const url =
    base.replaceAll('{job}', encodeURIComponent(job)).replace(/\/+$/, '') +
    (kind === 'success' ? '' : `/${kind}`);
  try {
    const res = await fetch(url, {
      method: body === undefined ? 'GET' : 'POST',
      ...(body === undefined
        ? {}
        : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
      signal: AbortSignal.timeout(10_000),
    });
    // Drain the body so the socket is released; the status below is the answer, the body is not read.
    await res.arrayBuffer().catch(() => undefined);
    if (!res.ok) return `ping ${kind} answered HTTP ${res.status}`;
    return undefined;
  } catch (err) {
    return `ping ${kind} failed: ${(err as Error).message}`;
  }
}
