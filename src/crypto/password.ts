import bcrypt from 'bcrypt';

/** The seeds promise bcrypt with cost 12 (~200 ms on this class of machine, in a worker thread). */
export const BCRYPT_COST = 12;

export async function hashPassword(password: string, cost = BCRYPT_COST): Promise<string> {
  return bcrypt.hash(password, cost);
}

export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  return bcrypt.compare(password, hash);
}

export function bcryptCost(hash: string): number {
  return Number(hash.split('$')[2]);
}

/** bcrypt reads at most 72 bytes; longer passwords would be silently truncated, so they are refused. */
export function checkPasswordPolicy(password: string): string | undefined {
  if (password.length < 12) return 'must be at least 12 characters';
  if (Buffer.byteLength(password) > 72) return 'must be at most 72 bytes';
  return undefined;
}
