/**
 * Where the passphrase of an `age -p` identity comes from (set by the CLI; the server never sets one, so it
 * never prompts). In a module of its own, with no imports, so that the CLI can set it without loading the
 * identity and age code in every command.
 */
export type PassphraseSource = (identityFile: string) => Promise<string | null>;
let passphraseSource: PassphraseSource | null = null;

export function setIdentityPassphraseSource(source: PassphraseSource | null): void {
  passphraseSource = source;
}

export function identityPassphraseSource(): PassphraseSource | null {
  return passphraseSource;
}
