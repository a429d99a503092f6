import { describe, expect, it } from 'vitest';
import { apiKeySecretMatches, generateApiKey, parseApiKey } from '../../src/crypto/apikey.js';
import { pepperedHash, randomKey, randomPassword } from '../../src/crypto/random.js';
import {
  checkPasswordPolicy,
  hashPassword,
  verifyPassword,
  bcryptCost,
  BCRYPT_COST,
} from '../../src/crypto/password.js';
import { generateAgeKeyPair, formatIdentityFile, parseIdentityFile } from '../../src/crypto/age.js';

describe('API keys', () => {
  it('round-trips: the generated key parses and its secret matches the stored HMAC', () => {
    const hmacKey = randomKey();
    const k = generateApiKey(hmacKey);
    const parsed = parseApiKey(k.key);
    expect(parsed?.prefix).toBe(k.prefix);
    expect(apiKeySecretMatches(hmacKey, parsed!.secret, k.secretHmac)).toBe(true);
  });

  it('does not match under another install’s HMAC key or with a changed secret', () => {
    const hmacKey = randomKey();
    const k = generateApiKey(hmacKey);
    const { secret } = parseApiKey(k.key)!;
    expect(apiKeySecretMatches(randomKey(), secret, k.secretHmac)).toBe(false);
    const flipped = (secret[0] === 'A' ? 'B' : 'A') + secret.slice(1);
    expect(apiKeySecretMatches(hmacKey, flipped, k.secretHmac)).toBe(false);
  });

  it('refuses malformed keys', () => {
    expect(parseApiKey('atx_short_x')).toBeUndefined();
    expect(parseApiKey("atx_abcdefabcdef_' OR 1=1 --")).toBeUndefined();
  });
});

describe('passwords and secrets', () => {
  it('hashes with bcrypt at cost 12 by default', async () => {
    const hash = await hashPassword('correct horse battery staple');
    expect(bcryptCost(hash)).toBe(BCRYPT_COST);
    expect(BCRYPT_COST).toBe(12);
    expect(await verifyPassword('correct horse battery staple', hash)).toBe(true);
    expect(await verifyPassword('wrong horse battery staple', hash)).toBe(false);
  });

  it('refuses passwords bcrypt would truncate or that are too short', () => {
    expect(checkPasswordPolicy('short')).toMatch(/at least 12/);
    expect(checkPasswordPolicy('x'.repeat(73))).toMatch(/72 bytes/);
    expect(checkPasswordPolicy('a-good-long-password')).toBeUndefined();
  });

  it('generates distinct passwords from an unambiguous alphabet', () => {
    const a = randomPassword();
    expect(a).toMatch(/^[a-km-zA-HJ-NP-Z2-9]{24}$/);
    expect(randomPassword()).not.toBe(a);
  });

  it('hashes client identifiers with the pepper, never returning the raw value', () => {
    const pepper = randomKey();
    const h = pepperedHash(pepper, '203.0.113.7');
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(h).not.toContain('203.0.113.7');
    expect(pepperedHash(randomKey(), '203.0.113.7')).not.toBe(h);
    expect(pepperedHash(pepper, undefined)).toBeNull();
  });
});

describe('backup key pairs', () => {
  it('writes an identity file that age-keygen readers and our parser both understand', async () => {
    const { identity, recipient } = await generateAgeKeyPair();
    expect(recipient).toMatch(/^age1[0-9a-z]+$/);
    const text = formatIdentityFile(identity, recipient);
    expect(text).toContain(`# public key: ${recipient}`);
    expect(parseIdentityFile(text)).toEqual([identity]);
  });
});
