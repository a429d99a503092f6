import { actorOf, type Acting } from '../actor.js';
import type { ConfigLocation } from '../config/load.js';
import { appendAudit, SYSTEM_TENANT } from '../../db/queries/audit.js';
import { warnSwallowed } from '../../lib/log.js';

/**
 * An install-wide audit entry (entity `backup`) for file operations that do not need the database: prune,
 * repair, off-site sync/prune/fetch. Best effort by design: the database may be down (or not there yet, in a
 * disaster recovery), and the operation on the files has happened and must stand.
 */
export async function auditBackupOperation(
  loc: ConfigLocation & Acting,
  action: string,
  details: Record<string, unknown>,
  entityId?: string,
): Promise<void> {
  try {
    const { withInstall } = await import('../install.js');
    await withInstall({ ...loc, requireMigrated: false }, (i) =>
      appendAudit(i.admin, {
        tenantId: SYSTEM_TENANT,
        actor: actorOf(loc),
        action,
        entityType: 'backup',
        entityId,
        details,
      }),
    );
  } catch (err) {
    // See above: the files were changed; an unreachable database must not turn that into a failure, but the
    // admin is told that the operation is not on the record.
    warnSwallowed(`${action} is not in the audit log`, err);
  }
}
