import {
  clearFailures,
  isLocked,
  passwordHashOf,
  recordFailure,
  setUserPassword,
} from '../../db/queries/users.js';
import { failure, type Tx } from '../service.js';
import { checkPassword, type Hasher } from './users.js';

export interface PasswordWorkers {
  verify(password: string, hash: string): Promise<boolean>;
  hash: Hasher;
}

export interface Lockout {
  maxFailedLogins: number;
  lockoutMinutes: number;
}

/**
 * A user changes their own password (POST /me/password). A wrong current password is counted against the
 * same (account, address) budget as logins and audited; the caller must COMMIT that although the request
 * fails, so it comes back as `refused` rather than thrown. Success sets the password the one way every
 * password is set (setUserPassword: every session ends, every lock-out clears).
 */
export async function changeOwnPassword(
  tx: Tx,
  input: { currentPassword: string; newPassword: string },
  client: { ipHash: string },
  work: PasswordWorkers,
  limits: Lockout,
): Promise<{ refused?: Error }> {
  const { tenantId } = tx.caller;
  const userId = tx.caller.userId!;
  const who = { tenantId, userId, ipHash: client.ipHash };
  checkPassword(input.newPassword, 'newPassword');
  if (await isLocked(tx.q, who))
    throw failure('RATE_LIMITED', 'too many wrong passwords; wait for the lock-out to end');
  const current = await passwordHashOf(tx.q, tenantId, userId);
  if (!current || !(await work.verify(input.currentPassword, current))) {
    const locked = await recordFailure(tx.q, {
      ...who,
      max: limits.maxFailedLogins,
      minutes: limits.lockoutMinutes,
    });
    await tx.audit('user.password_change_failed', 'user', userId, {
      reason: 'bad_current_password',
      ...(locked ? { lockedNow: true } : {}),
    });
    return { refused: failure('FORBIDDEN', 'the current password is wrong') };
  }
  await clearFailures(tx.q, who);
  const hash = await work.hash(input.newPassword);
  await setUserPassword(tx.q, tenantId, userId, hash);
  await tx.audit('user.password_change', 'user', userId);
  return {};
}
