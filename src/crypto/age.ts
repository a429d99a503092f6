/** age X25519 key pairs for backups: the recipient goes into the config, the identity never does. */
export async function generateAgeKeyPair(): Promise<{ identity: string; recipient: string }> {
  const age = await import('age-encryption');
  const identity = await age.generateX25519Identity();
  const recipient = await age.identityToRecipient(identity);
  return { identity, recipient };
}

/** The identity file as `age-keygen` writes it, so the Go/Rust age CLIs read it too. */
export function formatIdentityFile(identity: string, recipient: string, createdAt = new Date()): string {
  return `# created: ${createdAt.toISOString()}\n# public key: ${recipient}\n${identity}\n`;
}

/** age-encryption wants the AGE-SECRET-KEY-1... line alone, not a whole age-keygen file with comments. */
export function parseIdentityFile(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('AGE-SECRET-KEY-1'));
}

/** Who may open a hand-over file (a DSAR export, a company export): a passphrase (age scrypt) or an age recipient. */
export type AgeHandover = { passphrase: string } | { recipient: string };

/**
 * A stream encrypted with age for hand-over. typage encrypts a web stream chunk by chunk (age STREAM, 64 KiB), so
 * memory stays constant whatever the size.
 */
export async function ageEncrypted(
  source: import('node:stream').Readable,
  to: AgeHandover,
): Promise<import('node:stream').Readable> {
  const { Readable } = await import('node:stream');
  const age = await import('age-encryption');
  const e = new age.Encrypter();
  if ('passphrase' in to) e.setPassphrase(to.passphrase);
  else e.addRecipient(to.recipient);
  const sealed = await e.encrypt(Readable.toWeb(source) as unknown as ReadableStream<Uint8Array>);
  return Readable.fromWeb(sealed as import('node:stream/web').ReadableStream<Uint8Array>);
}
