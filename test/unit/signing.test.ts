import { describe, expect, it } from 'vitest';
import {
  generateSigningKey,
  isPublicKey,
  publicKeyOf,
  signBytes,
  verifyBytes,
} from '../../src/crypto/signing.js';

describe('install signing key (Ed25519)', () => {
  it('signs and verifies; a flipped byte, another key or garbage fails', () => {
    const k = generateSigningKey();
    const pub = publicKeyOf(k);
    expect(isPublicKey(pub)).toBe(true);
    const sig = signBytes(k, 'manifest');
    expect(verifyBytes(pub, 'manifest', sig)).toBe(true);
    expect(verifyBytes(pub, 'manifesT', sig)).toBe(false);
    expect(verifyBytes(publicKeyOf(generateSigningKey()), 'manifest', sig)).toBe(false);
    expect(verifyBytes(pub, 'manifest', 'not-a-signature')).toBe(false);
    expect(verifyBytes('ed25519:bogus', 'manifest', sig)).toBe(false);
  });
});
