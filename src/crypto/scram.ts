import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores for a password (RFC 5802 / RFC 7677, the format of
 * pg_authid.rolpassword): `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`. Sending
 * `ALTER ROLE … PASSWORD '<verifier>'` instead of the password keeps the plaintext out of the statement text,
 * and so out of any server log (log_statement=ddl, pg_stat_statements) and of a replica's stream.
 */
export function scramSha256Verifier(password: string, iterations = 4096, salt = randomBytes(16)): string {
  const salted = pbkdf2Sync(Buffer.from(saslprep(password), 'utf8'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/**
 * The mapping steps of SASLprep that PostgreSQL applies before hashing (non-ASCII spaces to space, the
 * "mapped to nothing" set removed, NFKC); identity for the printable ASCII passwords attendux generates.
 */
function saslprep(password: string): string {
  return password
    .replace(/[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/g, ' ')
    .replace(/\u00AD|\u034F|\u1806|\u180B|\u180C|\u180D|\u200C|\u200D|\u2060|[\uFE00-\uFE0F]|\uFEFF/g, '')
    .normalize('NFKC');
}
