import { availableParallelism } from 'node:os';
import { hashPassword, verifyPassword } from '../crypto/password.js';
import type { Queryable } from '../db/pool.js';
import { httpError } from './errors.js';

/**
 * Server-wide bound on concurrent bcrypt work. bcrypt runs in libuv's thread pool (4 threads by default):
 * without a bound, one user firing 48 password guesses at once queues 48 hashes ahead of every login. Here at
 * most `slots` hashes run at once and at most `queue` wait; beyond that the request is refused with 429
 * straight away, so the wait of a login stays bounded by queue/slots hash times.
 */
export class PasswordWork {
  private running = 0;
  private waiting: (() => void)[] = [];
  /** bcrypt computations done (each failure path of login costs exactly one: see auth routes). */
  done = 0;

  private readonly cost: number;
  readonly slots: number;
  readonly queue: number;

  /** Called after each computation (the metrics counter). */
  onDone: () => void = () => undefined;

  constructor(cost: number, slots = Math.max(1, Math.min(4, availableParallelism())), queue = 64) {
    this.cost = cost;
    this.slots = slots;
    this.queue = queue;
  }

  private async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.slots) {
      if (this.waiting.length >= this.queue)
        throw httpError('RATE_LIMITED', 'the server is busy checking passwords; retry in a few seconds');
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else this.running++;
    try {
      return await fn();
    } finally {
      this.done++;
      this.onDone();
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }

  verify(password: string, hash: string): Promise<boolean> {
    return this.run(() => verifyPassword(password, hash));
  }

  hash(password: string): Promise<string> {
    return this.run(() => hashPassword(password, this.cost));
  }
}

/**
 * Failed attempts (wrong password at login, wrong current password at /me/password) per (account, peppered
 * client address): an attacker elsewhere fills only their own counter, never the owner's. The counter starts
 * again after a lock has expired, or when the last failure is older than the lock-out time.
 * Returns whether this failure locked the pair.
 */
/** The next count: 1 again once a lock has expired or the last failure is older than the lock-out time. */
const NEXT = `(CASE WHEN (l.locked_until IS NOT NULL AND l.locked_until <= now())
                     OR l.updated_at < now() - make_interval(mins => $5)
                   THEN 1 ELSE l.failures + 1 END)`;

export async function recordFailure(
  c: Queryable,
  t: { tenantId: string; userId: string; ipHash: string; max: number; minutes: number },
): Promise<boolean> {
  const { rows } = await c.query<{ locked: boolean }>(
    `INSERT INTO login_throttle AS l (tenant_id, user_id, ip_hash, failures, locked_until, updated_at)
     VALUES ($1, $2, $3, 1, CASE WHEN 1 >= $4 THEN now() + make_interval(mins => $5) END, now())
     ON CONFLICT (tenant_id, user_id, ip_hash) DO UPDATE SET
       failures = ${NEXT},
       locked_until = CASE WHEN ${NEXT} >= $4 THEN now() + make_interval(mins => $5) END,
       updated_at = now()
     RETURNING l.locked_until IS NOT NULL AND l.locked_until > now() AS locked`,
    [t.tenantId, t.userId, t.ipHash, t.max, t.minutes],
  );
  return rows[0]?.locked ?? false;
}

export async function isLocked(
  c: Queryable,
  t: { tenantId: string; userId: string; ipHash: string },
): Promise<boolean> {
  const { rows } = await c.query<{ locked: boolean }>(
    `SELECT locked_until > now() AS locked FROM login_throttle
      WHERE tenant_id = $1 AND user_id = $2 AND ip_hash = $3`,
    [t.tenantId, t.userId, t.ipHash],
  );
  return rows[0]?.locked ?? false;
}

export async function clearFailures(
  c: Queryable,
  t: { tenantId: string; userId: string; ipHash: string },
): Promise<void> {
  await c.query('DELETE FROM login_throttle WHERE tenant_id = $1 AND user_id = $2 AND ip_hash = $3', [
    t.tenantId,
    t.userId,
    t.ipHash,
  ]);
}
