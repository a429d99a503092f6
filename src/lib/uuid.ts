/** The text of a UUID (any version), for building larger patterns such as the session token. */
export const UUID_PATTERN = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';

const UUID_RE = new RegExp(`^${UUID_PATTERN}$`, 'i');

/** Whether a string is a UUID; callers use it before handing a reference to a uuid column. */
export function isUuid(text: string): boolean {
  return UUID_RE.test(text);
}
