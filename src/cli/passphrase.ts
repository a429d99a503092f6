import { readFile } from 'node:fs/promises';
import { AttenduxError } from '../errors.js';
import { setIdentityPassphraseSource } from '../core/archive/passphrase-source.js';
import type { CliContext } from './context.js';

export const PASSPHRASE_FLAG = '--identity-passphrase-file <file>';
export const PASSPHRASE_HELP =
  'passphrase of an identity protected with `age -p` (else $ATTENDUX_BACKUP_IDENTITY_PASSPHRASE_FILE, else asked on a terminal)';

/**
 * Where a passphrase-protected identity's passphrase comes from: the file named by the flag or the
 * environment (first line, trailing newline dropped), else a hidden prompt on a terminal, else nothing (the
 * core then refuses and says why). Asked at most once per run.
 */
export function usePassphrase(ctx: CliContext, file: string | undefined): void {
  let cached: string | null | undefined;
  setIdentityPassphraseSource(async (identityFile) => {
    if (cached !== undefined) return cached;
    const f = file ?? process.env.ATTENDUX_BACKUP_IDENTITY_PASSPHRASE_FILE;
    if (f) {
      const text = await readFile(f, 'utf8').catch((err: unknown) => {
        throw new AttenduxError('USAGE', `cannot read the passphrase file ${f}: ${(err as Error).message}`);
      });
      cached = text.replace(/\r?\n$/, '');
    } else if (ctx.interactive) {
      const { password } = await import('@inquirer/prompts');
      cached = await password({ message: `passphrase of ${identityFile}`, mask: true });
    } else cached = null;
    return cached;
  });
}
