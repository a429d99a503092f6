/**
 * A warning on stderr for an error that must not fail the operation but must not vanish either (an audit
 * entry about a failure that is itself being reported, a best-effort mirror). Core code has no logger of its
 * own; stderr reaches the terminal, cron's mail and the journal alike.
 */
export function warnSwallowed(what: string, err: unknown): void {
  const reason = err instanceof Error ? err.message : String(err);
  process.stderr.write(`attendux: warning: ${what}: ${reason}\n`);
}
