import { describe, expect, it } from 'vitest';
import { PasswordWork } from '../../src/server/password-work.js';
import { hashPassword } from '../../src/crypto/password.js';
import { AttenduxError } from '../../src/errors.js';

describe('PasswordWork (server-wide bound on bcrypt work)', () => {
  it('runs at most `slots` computations at once, queues `queue` more and refuses the rest with 429', async () => {
    const hash = await hashPassword('x'.repeat(12), 4);
    const w = new PasswordWork(4, 1, 2);
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => w.verify('x'.repeat(12), hash)));
    const ok = results.filter((r) => r.status === 'fulfilled');
    const refused = results.filter(
      (r) => r.status === 'rejected' && r.reason instanceof AttenduxError && r.reason.code === 'RATE_LIMITED',
    );
    expect(ok.length).toBe(3);
    expect(refused.length).toBe(3);
    expect(w.done).toBe(3);
    // Afterwards the slots are free again.
    expect(await w.verify('x'.repeat(12), hash)).toBe(true);
  });
});
