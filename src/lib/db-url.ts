/**
 * The one place that rewrites PostgreSQL connection URLs: another database on the same server, another
 * role, a password from the secrets file. Everything else passes URLs through unchanged.
 */
export interface DbUrlParts {
  database?: string;
  user?: string;
  /** `''` removes the password; undefined keeps it. */
  password?: string;
}

export function rewriteDbUrl(url: string, parts: DbUrlParts): string {
  const u = new URL(url);
  if (parts.user !== undefined) u.username = encodeURIComponent(parts.user);
  if (parts.password !== undefined) u.password = encodeURIComponent(parts.password);
  if (parts.database !== undefined) u.pathname = `/${encodeURIComponent(parts.database)}`;
  return u.toString();
}

/** The database a URL names. */
export function databaseOf(url: string): string {
  return decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
}

/** The URL with its password masked, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    // the throw is the answer: not a URL, and nothing of it is shown
    return '(unparseable database URL)';
  }
}
