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
