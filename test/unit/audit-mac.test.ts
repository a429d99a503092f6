import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AuditMac, encodeFields, MAC_TAG, type MacFields } from '../../src/core/audit/mac.js';

const base: MacFields = {
  tenantId: '3f0c8a52-2b1e-4c2a-9a51-0d3f1b2c4d5e',
  seq: 42,
  atUs: 1_764_590_000_123_456,
  actor: 'user:1',
  action: 'thing.change',
  entityType: 'thing',
  entityId: '7',
  ipHash: null,
  uaHash: null,
  details: '{"a": 1}',
  prevMac: Buffer.alloc(32, 9),
};

describe('audit MAC', () => {
  it('is HMAC-SHA256 over the tag and the encoded fields, for short and long entries', () => {
    const key = randomBytes(32);
    const mac = new AuditMac(key);
    for (const details of ['{}', `{"x": "${'y'.repeat(10_000)}"}`, '{"a": 1}']) {
      const f = { ...base, details };
      const want = createHmac('sha256', key).update(MAC_TAG).update(encodeFields(f)).digest();
      expect(mac.of(f).equals(want)).toBe(true);
    }
  });

  it('encodes unambiguously: moving a separator between fields changes the MAC', () => {
    const mac = new AuditMac(randomBytes(32));
    const a = mac.of({ ...base, actor: 'a\x1fb', action: 'c' });
    const b = mac.of({ ...base, actor: 'a', action: 'b\x1fc' });
    expect(a.equals(b)).toBe(false);
    // NULL and empty differ too
    expect(mac.of({ ...base, entityId: null }).equals(mac.of({ ...base, entityId: '' }))).toBe(false);
  });

  it('depends on the key, the previous MAC and every field', () => {
    const k = randomBytes(32);
    const m = new AuditMac(k).of(base);
    expect(new AuditMac(randomBytes(32)).of(base).equals(m)).toBe(false);
    expect(new AuditMac(k).of({ ...base, prevMac: Buffer.alloc(32, 8) }).equals(m)).toBe(false);
    expect(new AuditMac(k).of({ ...base, seq: 43 }).equals(m)).toBe(false);
    expect(new AuditMac(k).of({ ...base, atUs: base.atUs + 1 }).equals(m)).toBe(false);
  });

  it('verifyEncoded (the bulk check) agrees with createHmac', () => {
    for (const keyLength of [32, 64, 100]) {
      const key = randomBytes(keyLength);
      const mac = new AuditMac(key);
      for (let n = 0; n < 200; n++) {
        const f = { ...base, seq: n, details: `{"x": "${randomBytes(n * 7).toString('hex')}"}` };
        const encoded = encodeFields(f);
        const want = createHmac('sha256', key).update(MAC_TAG).update(encoded).digest();
        expect(mac.verifyEncoded(encoded, want)).toBe(true);
        // every single bit of the MAC matters
        const bit = n % 256;
        const flipped = Buffer.from(want);
        flipped[bit >> 3]! ^= 1 << (bit & 7);
        expect(mac.verifyEncoded(encoded, flipped)).toBe(false);
      }
      const encoded = encodeFields(base);
      const good = createHmac('sha256', key).update(MAC_TAG).update(encoded).digest();
      expect(mac.verifyEncoded(encoded, good.subarray(0, 31))).toBe(false);
      expect(mac.verifyEncoded(encodeFields({ ...base, seq: 43 }), good)).toBe(false);
    }
  });
});
