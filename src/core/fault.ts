/**
 * Test hook for the kill tests: `ATTENDUX_TEST_KILL_AT=<point>` makes the process SIGKILL itself at that
 * point, exactly as an operator's `kill -9` (or a power cut of the process) would. Without the variable it
 * does nothing.
 */
export function faultPoint(point: string): void {
  if (process.env.ATTENDUX_TEST_KILL_AT === point) process.kill(process.pid, 'SIGKILL');
}
