import { readFile } from 'node:fs/promises';
import { AttenduxError } from '../../errors.js';
import { parseIdentityFile } from '../../crypto/age.js';
import { identityPassphraseSource } from './passphrase-source.js';

// Identities: the age private keys that open backups. The one place that finds the identity file and reads
// it (restore, config restore, verify, offsite verify and repair all come here).

/**
 * Where the passphrase of a passphrase-protected identity file (`age -p`) comes from. The CLI sets it (from
 * --identity-passphrase-file, $ATTENDUX_BACKUP_IDENTITY_PASSPHRASE_FILE, or a prompt on a terminal); core code
 * never prompts. Without one, such a file is refused with the reason.
 */
export { setIdentityPassphraseSource, type PassphraseSource } from './passphrase-source.js';

/**
 * The identity file to use: the one given (--identity), else $ATTENDUX_BACKUP_IDENTITY of `env` (the
 * injected environment, not necessarily process.env), else the config's backup.identityFile.
 */
export function identityFileFrom(opts: {
  identityFile?: string;
  env?: NodeJS.ProcessEnv;
  configured?: string | null;
}): string | undefined {
  const env = opts.env ?? process.env;
  return opts.identityFile ?? env.ATTENDUX_BACKUP_IDENTITY ?? opts.configured ?? undefined;
}

/** Like identityFileFrom, but a restore cannot go on without one: USAGE with how to give it. */
export function requireIdentityFile(
  opts: Parameters<typeof identityFileFrom>[0] & { hint?: string },
): string {
  const file = identityFileFrom(opts);
  if (!file)
    throw new AttenduxError(
      'USAGE',
      'restore needs the backup identity (the age private key) to decrypt the backups',
      { hint: opts.hint ?? 'pass --identity FILE or set $ATTENDUX_BACKUP_IDENTITY' },
    );
  return file;
}

/** The file is an age-encrypted file (binary or armored): an identity file protected with `age -p`. */
export function isEncryptedIdentity(bytes: Buffer): boolean {
  const head = bytes.subarray(0, 64).toString('latin1');
  return head.startsWith('age-encryption.org/v1\n') || head.startsWith('-----BEGIN AGE ENCRYPTED FILE-----');
}

async function decryptIdentityFile(path: string, bytes: Buffer): Promise<string> {
  const source = identityPassphraseSource();
  const passphrase = source ? await source(path) : null;
  if (passphrase === null)
    throw new AttenduxError(
      'BACKUP_BAD_IDENTITY',
      `${path} is a passphrase-protected identity (age -p) and no passphrase was given`,
      {
        hint: 'run on a terminal to be asked for it, or pass --identity-passphrase-file FILE (or set $ATTENDUX_BACKUP_IDENTITY_PASSPHRASE_FILE)',
      },
    );
  const age = await import('age-encryption');
  const d = new age.Decrypter();
  d.addPassphrase(passphrase);
  const text = bytes.subarray(0, 64).toString('latin1').startsWith('-----BEGIN')
    ? age.armor.decode(bytes.toString('latin1'))
    : new Uint8Array(bytes);
  try {
    return await d.decrypt(text, 'text');
  } catch (err) {
    throw new AttenduxError(
      'BACKUP_BAD_IDENTITY',
      `cannot open the passphrase-protected identity ${path}: ${/passphrase|scrypt|no identity matched|header/i.test((err as Error).message) ? 'wrong passphrase' : (err as Error).message}`,
      { hint: 'check the passphrase (the one given to `age -p` when the identity was protected)' },
    );
  }
}

/**
 * Read an age identity file (age-keygen format, comments allowed; one or more AGE-SECRET-KEY-1 lines), or
 * one protected with a passphrase (`age-keygen | age -p > key.age`, binary or armored).
 */
export async function readIdentityFile(path: string): Promise<string[]> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new AttenduxError(
      'BACKUP_BAD_IDENTITY',
      `cannot read identity file ${path}: ${(err as Error).message}`,
      {
        hint: 'pass --identity FILE (the age key written by `attendux init`) or set $ATTENDUX_BACKUP_IDENTITY',
      },
    );
  }
  const text = isEncryptedIdentity(bytes) ? await decryptIdentityFile(path, bytes) : bytes.toString('utf8');
  const ids = parseIdentityFile(text);
  if (!ids.length)
    throw new AttenduxError('BACKUP_BAD_IDENTITY', `${path} holds no AGE-SECRET-KEY-1... line`, {
      hint: 'an age identity file as written by age-keygen or `attendux init` (or one protected with age -p)',
    });
  return ids;
}
