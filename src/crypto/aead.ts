import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { AttenduxError } from '../errors.js';

/**
 * AES-256-GCM for data at rest (face templates). Layout: nonce (12) || tag (16) || ciphertext. The key id is
 * stored beside the ciphertext (employees.face_key_id) so rotation can find what to re-seal. The associated
 * data binds a ciphertext to its row: a template copied onto another employee does not decrypt.
 */
const NONCE = 12;
const TAG = 16;

export interface DataKeyring {
  keys: Record<string, string>;
  activeId: string;
}

function keyBytes(ring: DataKeyring, id: string): Buffer {
  const k = ring.keys[id];
  if (!k) {
    throw new AttenduxError('DATA_KEY_UNKNOWN', `data-encryption key "${id}" is not in the secrets file`, {
      hint: 'restore the secrets file that holds it; rotation keeps old keys for this reason',
    });
  }
  return Buffer.from(k, 'base64');
}

export function seal(ring: DataKeyring, plaintext: Buffer, aad: string): { keyId: string; data: Buffer } {
  const nonce = randomBytes(NONCE);
  const cipher = createCipheriv('aes-256-gcm', keyBytes(ring, ring.activeId), nonce);
  cipher.setAAD(Buffer.from(aad));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { keyId: ring.activeId, data: Buffer.concat([nonce, cipher.getAuthTag(), ct]) };
}

export function open(ring: DataKeyring, keyId: string, data: Buffer, aad: string): Buffer {
  if (data.length < NONCE + TAG) throw new AttenduxError('DECRYPT_FAILED', 'sealed data is truncated');
  const decipher = createDecipheriv('aes-256-gcm', keyBytes(ring, keyId), data.subarray(0, NONCE));
  decipher.setAAD(Buffer.from(aad));
  decipher.setAuthTag(data.subarray(NONCE, NONCE + TAG));
  try {
    return Buffer.concat([decipher.update(data.subarray(NONCE + TAG)), decipher.final()]);
  } catch (err) {
    throw new AttenduxError(
      'DECRYPT_FAILED',
      'sealed data failed authentication (wrong key, row or tampering)',
      {
        cause: err,
      },
    );
  }
}

/** The associated data of a face template: the row it belongs to. */
export function faceAad(tenantId: string, employeeId: string): string {
  return `attendux:face:${tenantId}:${employeeId}`;
}

export function vectorToBuffer(v: readonly number[]): Buffer {
  const f = Float32Array.from(v);
  return Buffer.from(f.buffer, f.byteOffset, f.byteLength);
}

export function bufferToVector(b: Buffer): number[] {
  const copy = Buffer.from(b);
  return Array.from(new Float32Array(copy.buffer, copy.byteOffset, copy.byteLength / 4));
}
