import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AttenduxError } from '../../errors.js';
import { isPublicKey, publicKeyOf, signBytes, verifyBytes } from '../../crypto/signing.js';
import { loadSecrets, type LoadedConfig } from '../config/load.js';
import { writeFileAtomic } from '../../lib/fs.js';
import { sidecarFileName } from '../archive/format.js';

/**
 * Backup signatures. age encrypts but does not authenticate the sender, and the sidecar's SHA-256 is no MAC:
 * anyone who can write the backup dir could otherwise forge a backup (and `restore --config-only --force`
 * would then write its "service files"). Every backup therefore gets `<id>.sig`, an Ed25519 signature by the
 * install signing key (`signingKey` in the secrets file) over the exact bytes of its sidecar. The sidecar
 * holds the SHA-256 of the encrypted file, and restore and verify check the file (which ends with the
 * manifest, whose entries list every other entry's SHA-256) against it: the one signature covers the
 * sidecar, the manifest and every byte of the backup.
 *
 * Trusted public keys (`ed25519:...`): this install's own (from its secrets file), `backup.signingPublicKeys`
 * in the config, `# attendux-signing-key: ed25519:...` lines in the age identity file (`init` writes one, so
 * the key travels with the identity to a new server), and $ATTENDUX_BACKUP_SIGNING_KEY.
 *
 * Backups made before signing existed have no `.sig`: restore and verify refuse them like a forged one,
 * unless $ATTENDUX_ALLOW_UNSIGNED_BACKUPS=1 says the operator checked where they came from.
 */
export const SIGNATURE_FORMAT = 'attendux-backup-signature/1';
export const signatureFileName = (id: string) => `${id}.sig`;
const KEY_LINE = /^#\s*attendux-signing-key:\s*(ed25519:\S+)\s*$/;

interface SignatureFile {
  format: string;
  id: string;
  publicKey: string;
  signature: string;
}

/** Sign the sidecar of backup `id` (written right after the sidecar itself). */
export async function signBackup(backupDir: string, id: string, signingKey: string): Promise<void> {
  const sidecar = await readFile(join(backupDir, sidecarFileName(id)));
  const sig: SignatureFile = {
    format: SIGNATURE_FORMAT,
    id,
    publicKey: publicKeyOf(signingKey),
    signature: signBytes(signingKey, Buffer.concat([Buffer.from(`${SIGNATURE_FORMAT}\0${id}\0`), sidecar])),
  };
  await writeFileAtomic(join(backupDir, signatureFileName(id)), JSON.stringify(sig, null, 2) + '\n', 0o600);
}

/** The comment line `init` adds to the identity file. */
export const identityKeyLine = (publicKey: string) => `# attendux-signing-key: ${publicKey}\n`;

export function keysInIdentityText(text: string): string[] {
  return text
    .split('\n')
    .map((l) => KEY_LINE.exec(l.trim())?.[1])
    .filter((k): k is string => !!k && isPublicKey(k));
}

/** Every public key a backup of this install may be signed with. */
export async function trustedSigningKeys(opts: {
  loaded?: LoadedConfig;
  signingKey?: string;
  identityFile?: string;
  env?: NodeJS.ProcessEnv;
}): Promise<string[]> {
  const env = opts.env ?? process.env;
  const keys = new Set<string>();
  let own = opts.signingKey;
  if (!own && opts.loaded)
    own = await loadSecrets(opts.loaded.secretsPath).then(
      (s) => s.signingKey,
      () => undefined,
    );
  if (own) keys.add(publicKeyOf(own));
  for (const k of opts.loaded?.config.backup.signingPublicKeys ?? []) keys.add(k);
  const identityFile =
    opts.identityFile ?? env.ATTENDUX_BACKUP_IDENTITY ?? opts.loaded?.config.backup.identityFile;
  if (identityFile) {
    // an unreadable identity file adds no keys: a signature then fails to verify, loudly
    const text = await readFile(identityFile, 'utf8').catch(() => '');
    for (const k of keysInIdentityText(text)) keys.add(k);
  }
  for (const k of (env.ATTENDUX_BACKUP_SIGNING_KEY ?? '').split(/[\s,]+/)) if (isPublicKey(k)) keys.add(k);
  return [...keys];
}

/**
 * Refuse a backup whose sidecar is not signed by a trusted key. Returns 'signed', or 'unsigned-allowed'
 * when $ATTENDUX_ALLOW_UNSIGNED_BACKUPS=1 lets an unsigned (pre-signing) backup through.
 */
export async function checkBackupSignature(
  backupDir: string,
  id: string,
  trusted: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<'signed' | 'unsigned-allowed'> {
  const text = await readFile(join(backupDir, signatureFileName(id)), 'utf8').catch(
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    },
  );
  if (text === undefined) {
    if (env.ATTENDUX_ALLOW_UNSIGNED_BACKUPS === '1') return 'unsigned-allowed';
    throw new AttenduxError('BACKUP_UNSIGNED', `backup ${id} has no signature (${signatureFileName(id)})`, {
      hint: 'a backup made before attendux signed backups: if you know where it came from, set ATTENDUX_ALLOW_UNSIGNED_BACKUPS=1 for this command',
    });
  }
  let sig: SignatureFile;
  try {
    sig = JSON.parse(text) as SignatureFile;
  } catch {
    throw new AttenduxError('BACKUP_BAD_SIGNATURE', `${signatureFileName(id)} is not a signature file`);
  }
  const sidecar = await readFile(join(backupDir, sidecarFileName(id)));
  const data = Buffer.concat([Buffer.from(`${SIGNATURE_FORMAT}\0${id}\0`), sidecar]);
  const ok =
    sig.format === SIGNATURE_FORMAT &&
    sig.id === id &&
    typeof sig.signature === 'string' &&
    trusted.some((k) => verifyBytes(k, data, sig.signature));
  if (!ok)
    throw new AttenduxError(
      'BACKUP_BAD_SIGNATURE',
      trusted.length
        ? `backup ${id} is not signed by a trusted key (signed by ${String(sig.publicKey).slice(0, 60)})`
        : `backup ${id} cannot be checked: no trusted signing key is known`,
      {
        hint: trusted.length
          ? 'the backup was not made by this install (or was altered): do not restore it'
          : 'keep the identity file init wrote (it names the key), or set backup.signingPublicKeys or $ATTENDUX_BACKUP_SIGNING_KEY',
      },
    );
  return 'signed';
}

/**
 * Companion files (written beside a backup after it was signed, e.g. `<id>.drill.json`): each gets
 * `<name>.sig`, an Ed25519 signature by the install signing key over its exact bytes. The domain prefix
 * differs from the sidecar's, so a companion signature can never pass for a backup's and the other way round.
 */
export const COMPANION_SIGNATURE_FORMAT = 'attendux-companion-signature/1';
export const companionSignatureName = (name: string) => `${name}.sig`;
const companionBytes = (name: string, content: Buffer) =>
  Buffer.concat([Buffer.from(`${COMPANION_SIGNATURE_FORMAT}\0${name}\0`), content]);

/** Sign the companion file `name` in the backup dir (written right after the file itself). */
export async function signCompanion(backupDir: string, name: string, signingKey: string): Promise<void> {
  const content = await readFile(join(backupDir, name));
  const sig = {
    format: COMPANION_SIGNATURE_FORMAT,
    name,
    publicKey: publicKeyOf(signingKey),
    signature: signBytes(signingKey, companionBytes(name, content)),
  };
  await writeFileAtomic(
    join(backupDir, companionSignatureName(name)),
    JSON.stringify(sig, null, 2) + '\n',
    0o600,
  );
}

/** Whether companion file `name` carries a valid signature by one of the trusted keys (never throws). */
export async function verifyCompanion(
  backupDir: string,
  name: string,
  trusted: readonly string[],
): Promise<boolean> {
  try {
    const content = await readFile(join(backupDir, name));
    const sig = JSON.parse(await readFile(join(backupDir, companionSignatureName(name)), 'utf8')) as {
      format?: unknown;
      name?: unknown;
      signature?: unknown;
    };
    if (sig.format !== COMPANION_SIGNATURE_FORMAT || sig.name !== name || typeof sig.signature !== 'string')
      return false;
    const data = companionBytes(name, content);
    return trusted.some((k) => verifyBytes(k, data, sig.signature as string));
  } catch {
    // a malformed signature file does not verify: false is the answer
    return false;
  }
}
