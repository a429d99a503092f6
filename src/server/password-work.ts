import { availableParallelism } from 'node:os';
import { hashPassword, verifyPassword } from '../crypto/password.js';
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
