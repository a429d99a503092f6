import { describe, expect, it } from 'vitest';
import { stamp } from '../../src/core/restore/toolkit.js';

describe('generated database names', () => {
  it('differ for restores started in the same second, so a rerun never meets its killed predecessor', () => {
    const t = Date.parse('2026-11-23T17:47:05.123Z');
    expect(stamp(new Date(t))).toBe('20261123_174705123');
    expect(stamp(new Date(t + 1))).not.toBe(stamp(new Date(t)));
  });
});
