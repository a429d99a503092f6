import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';

/**
 * The install signing key: Ed25519. Its private half lives in the secrets file as base64 PKCS#8 DER
 * (`signingKey`); its public half is printed at `init`, kept with the backup identity, and published as
 * `ed25519:<base64 raw 32 bytes>` so a new server can check backups and audit checkpoints made by the old one.
 * Used for backup manifests/sidecars (security issue) and audit checkpoints (audit issue).
 */

/** A fresh private key, in the secrets-file encoding. */
export function generateSigningKey(): string {
  const { privateKey } = generateKeyPairSync('ed25519');
  return privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64');
}

/** Parsed once per key: the server signs a checkpoint per moved chain (50 companies: 50 parses per checkpoint). */
const privateKeys = new Map<string, KeyObject>();

function privateKeyObject(signingKey: string): KeyObject {
  let k = privateKeys.get(signingKey);
  if (!k) {
    k = createPrivateKey({ key: Buffer.from(signingKey, 'base64'), format: 'der', type: 'pkcs8' });
    privateKeys.set(signingKey, k);
  }
  return k;
}

/** `ed25519:<base64 of the raw 32-byte public key>`: short enough to print, copy and put in a config. */
export function publicKeyOf(signingKey: string): string {
  const jwk = createPublicKey(privateKeyObject(signingKey)).export({ format: 'jwk' });
  return `ed25519:${Buffer.from(jwk.x!, 'base64url').toString('base64')}`;
}

function publicKeyObject(publicKey: string): KeyObject {
  const m = /^ed25519:([A-Za-z0-9+/]{43}=)$/.exec(publicKey);
  // Never escapes: verifyBytes, its only caller, turns it into "does not verify".
  if (!m) throw new Error(`not an attendux public key (ed25519:...): ${publicKey.slice(0, 20)}`);
  const x = Buffer.from(m[1]!, 'base64').toString('base64url');
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
}

/** Detached signature, base64. */
export function signBytes(signingKey: string, data: Uint8Array | string): string {
  return sign(null, Buffer.from(data), privateKeyObject(signingKey)).toString('base64');
}

/** True only for a valid signature by that public key; malformed input is false, never a throw. */
export function verifyBytes(publicKey: string, data: Uint8Array | string, signature: string): boolean {
  try {
    return verify(null, Buffer.from(data), publicKeyObject(publicKey), Buffer.from(signature, 'base64'));
  } catch {
    // malformed input is false, as documented above
    return false;
  }
}

export function isPublicKey(text: string): boolean {
  return /^ed25519:[A-Za-z0-9+/]{43}=$/.test(text);
}
