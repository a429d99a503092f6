import { hostname, userInfo } from 'node:os';

/** Who did it, as recorded in the audit log for work done from the command line. */
export function cliActor(): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    user = process.env.USER ?? 'unknown';
  }
  return `cli:${user}@${hostname()}`;
}
