import { describe, expect, it } from 'vitest';
import { bufferToVector, faceAad, open, seal, vectorToBuffer } from '../../src/crypto/aead.js';
import { randomKey } from '../../src/crypto/random.js';
import { cosineSimilarity } from '../../src/core/attendance/face.js';

const ring = { keys: { k1: randomKey(), k2: randomKey() }, activeId: 'k2' };

describe('AES-256-GCM sealing', () => {
  it('round-trips a face vector under the active key id', () => {
    const v = [0.25, -1.5, 3.75];
    const s = seal(ring, vectorToBuffer(v), faceAad('t', 'e'));
    expect(s.keyId).toBe('k2');
    expect(bufferToVector(open(ring, s.keyId, s.data, faceAad('t', 'e')))).toEqual(v);
  });

  it('uses a fresh nonce each time', () => {
    const a = seal(ring, Buffer.from('x'), 'aad').data;
    const b = seal(ring, Buffer.from('x'), 'aad').data;
    expect(a.equals(b)).toBe(false);
  });

  it('refuses a ciphertext moved to another row', () => {
    const s = seal(ring, Buffer.from('secret'), faceAad('t', 'alice'));
    expect(() => open(ring, s.keyId, s.data, faceAad('t', 'bob'))).toThrow(/authentication/);
  });

  it('refuses a tampered ciphertext', () => {
    const s = seal(ring, Buffer.from('secret'), 'aad');
    s.data[s.data.length - 1]! ^= 1;
    expect(() => open(ring, s.keyId, s.data, 'aad')).toThrow(/authentication/);
    // Its own code: a wrong key or tampering is not a file that could not be read (IO_ERROR).
    expect(() => open(ring, s.keyId, s.data, 'aad')).toThrow(
      expect.objectContaining({ code: 'DECRYPT_FAILED' }),
    );
    expect(() => open(ring, s.keyId, s.data.subarray(0, 8), 'aad')).toThrow(
      expect.objectContaining({ code: 'DECRYPT_FAILED' }),
    );
  });

  it('names a key id the keyring does not hold', () => {
    const s = seal(ring, Buffer.from('secret'), 'aad');
    expect(() => open({ keys: { k1: ring.keys.k1 }, activeId: 'k1' }, s.keyId, s.data, 'aad')).toThrow(
      /"k2"/,
    );
  });
});

describe('cosine similarity', () => {
  it('is 1 for the same direction and -1 for opposite', () => {
    expect(cosineSimilarity([1, 2, 3], [2, 4, 6])).toBeCloseTo(1);
    expect(cosineSimilarity([1, 2, 3], [-1, -2, -3])).toBeCloseTo(-1);
  });

  it('never matches vectors of different length or zero vectors', () => {
    expect(cosineSimilarity([1, 2], [1, 2, 3])).toBe(-1);
    expect(cosineSimilarity([0, 0], [0, 0])).toBe(-1);
  });
});
