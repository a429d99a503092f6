import type { AttenduxError } from '../../errors.js';
import type { ConfigLocation } from '../config/load.js';
import { backupConfig } from './config.js';

/**
 * The rule "a change triggers a config backup" (PRODUCT.md), in one place. `config set`, `backup
 * add-recipient`, `keys rotate` and a company's settings change in the server all call here, naming who made
 * the change: the config backup's audit entry is theirs.
 */

export interface ConfigChangeBackup {
  id?: string;
  /** Why the change is not (fully) backed up; the change itself stands. */
  warning?: string;
}

/**
 * After a successful change: a config backup if anything changed (`--if-changed`). Never throws: the change
 * itself succeeded; problems come back as a warning to print.
 */
export async function backupConfigAfterChange(
  loc: ConfigLocation,
  actor: string,
): Promise<ConfigChangeBackup> {
  try {
    const r = await backupConfig({ ...loc, ifChanged: true, actor });
    const notCopied = (r.offsite ?? []).filter((o) => !o.ok);
    if (notCopied.length)
      return {
        id: r.sidecar?.id,
        warning: `config backup ${r.sidecar?.id ?? ''} was not copied to ${notCopied.map((o) => `${o.target} (${o.error?.message ?? 'failed'})`).join(', ')}; \`attendux backup sync\` retries`,
      };
    return { id: r.sidecar?.id };
  } catch (err) {
    const e = err as AttenduxError;
    if (e.code === 'BACKUP_NO_RECIPIENTS')
      return { warning: 'the change was not backed up: no backup recipients configured (backup.recipients)' };
    return { warning: `the change was not backed up: ${e.message}` };
  }
}

/**
 * For the server: a company's settings changed (after the commit). Runs one config backup at a time (it
 * carries every company's settings); changes made meanwhile are folded into one more run, audited as the
 * last of their actors. Returns the hook to call with the tenant and the request's actor.
 */
export function settingsChangeTrigger(
  loc: ConfigLocation,
  onDone: (r: ConfigChangeBackup) => void = () => undefined,
): (tenantId: string, actor: string) => Promise<void> {
  let running: Promise<void> | undefined;
  let next: string | undefined;
  const run = async (actor: string): Promise<void> => {
    for (let who: string | undefined = actor; who; who = next) {
      next = undefined;
      onDone(await backupConfigAfterChange(loc, who));
    }
  };
  return (_tenantId, actor) => {
    if (running) {
      next = actor;
      return running;
    }
    running = run(actor).finally(() => (running = undefined));
    return running;
  };
}
