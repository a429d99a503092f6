import { AttenduxError } from '../../errors.js';
import { loadConfig, type ConfigLocation } from '../config/load.js';
import { setConfigValue } from '../config/edit.js';
import { checkRecipient } from '../../crypto/age-stream.js';
import { backupConfigAfterChange } from './config-trigger.js';

export interface AddRecipientResult {
  recipient: string;
  changed: boolean;
  recipients: string[];
  configBackup?: { id?: string; warning?: string };
}

/**
 * Add an age public key to backup.recipients (for example an escrow key): every backup from now on is
 * encrypted to it too. The key is checked by encrypting to it before the config is touched.
 */
export async function addRecipient(
  loc: ConfigLocation,
  recipient: string,
  actor: string,
): Promise<AddRecipientResult> {
  const r = recipient.trim();
  if (!/^age1[0-9a-z]+$/.test(r) || !(await checkRecipient(r))) {
    throw new AttenduxError('USAGE', `"${recipient}" is not an age public key`, {
      hint: 'an X25519 recipient as printed by `age-keygen -y KEYFILE` (age1...)',
    });
  }
  const loaded = await loadConfig(loc);
  const current = loaded.config.backup.recipients;
  if (current.includes(r)) return { recipient: r, changed: false, recipients: current };
  const next = [...current, r];
  await setConfigValue(loc, 'backup.recipients', JSON.stringify(next));
  const configBackup = await backupConfigAfterChange(loc, actor);
  return { recipient: r, changed: true, recipients: next, configBackup };
}
