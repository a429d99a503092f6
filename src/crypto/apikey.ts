import { randomBytes } from 'node:crypto';
import { constantTimeEqual, hmacSha256 } from './random.js';

/**
 * API keys look like `atx_<prefix>_<secret>`. The prefix (public, unique) finds the key's row before any
 * company is known; the secret is stored only as HMAC-SHA256 under the install's key and compared in
 * constant time.
 */
export interface NewApiKey {
  key: string;
  prefix: string;
  secretHmac: Buffer;
}

const KEY_RE = /^atx_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$/;

export function generateApiKey(hmacKey: string): NewApiKey {
  const prefix = randomBytes(9)
    .toString('base64url')
    .toLowerCase()
    .replace(/[^a-z0-9]/g, '0')
    .slice(0, 12);
  const secret = randomBytes(32).toString('base64url');
  return { key: `atx_${prefix}_${secret}`, prefix, secretHmac: hmacSha256(hmacKey, secret) };
}

export function parseApiKey(key: string): { prefix: string; secret: string } | undefined {
  const m = KEY_RE.exec(key);
  return m ? { prefix: m[1]!, secret: m[2]! } : undefined;
}

export function apiKeySecretMatches(hmacKey: string, secret: string, stored: Buffer): boolean {
  return constantTimeEqual(hmacSha256(hmacKey, secret), stored);
}
