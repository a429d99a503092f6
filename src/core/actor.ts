import { hostname, userInfo } from 'node:os';

/** Who did it, as recorded in the audit log for work done from the command line. */
export function cliActor(): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry for this uid (containers): fall back to $USER
    user = process.env.USER ?? 'unknown';
  }
  return `cli:${user}@${hostname()}`;
}

/**
 * Operations that write audit entries take the actor from their caller: the CLI passes cliActor(), the
 * server the request's actor. Absent (a library caller such as a test), the work is the local user's.
 */
export interface Acting {
  actor?: string;
}

export function actorOf(a?: Acting): string {
  return a?.actor ?? cliActor();
}
