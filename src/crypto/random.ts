import { randomBytes, createHmac, createHash, timingSafeEqual } from 'node:crypto';

/** 32 random bytes from the CSPRNG, base64: the format of every symmetric key in the secrets file. */
export function randomKey(): string {
  return randomBytes(32).toString('base64');
}

/** A password a person can type: 24 characters from an unambiguous alphabet (~137 bits). */
export function randomPassword(length = 24): string {
  const alphabet = 'abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  const out: string[] = [];
  // Rejection sampling keeps every character equally likely.
  while (out.length < length) {
    for (const b of randomBytes(length * 2)) {
      if (b < 256 - (256 % alphabet.length) && out.length < length) out.push(alphabet[b % alphabet.length]!);
    }
  }
  return out.join('');
}

export function hmacSha256(keyBase64: string, data: string | Buffer): Buffer {
  return createHmac('sha256', Buffer.from(keyBase64, 'base64')).update(data).digest();
}

/** Peppered SHA-256 (hex) of a client identifier for the audit log: comparable, never reversible in bulk. */
export function pepperedHash(pepperBase64: string, value: string | undefined | null): string | null {
  if (value === undefined || value === null || value === '') return null;
  return createHash('sha256').update(Buffer.from(pepperBase64, 'base64')).update(value).digest('hex');
}

export function constantTimeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
