import type { ConfigLocation } from './config/load.js';
import { migrationState, runMigrations, type MigrationState } from '../db/migrate.js';
import { withInstall } from './install.js';
import { rechainAudit } from './audit/service.js';

export async function migrate(
  loc: ConfigLocation,
  opts: { direction: 'up' | 'down'; count?: number; dryRun?: boolean },
): Promise<{
  direction: 'up' | 'down';
  dryRun: boolean;
  ran: string[];
  rechain?: { rechained: number } | { error: string };
}> {
  return withInstall({ ...loc, requireMigrated: false }, async (install) => {
    const ran = await runMigrations({
      adminUrl: install.db.adminUrl,
      appRole: install.loaded.config.database.appRole,
      direction: opts.direction,
      count: opts.count,
      dryRun: opts.dryRun,
    });
    // Entries still under the old unkeyed hash are re-keyed now that the schema allows it (migrations/0007).
    let rechain: { rechained: number } | { error: string } | undefined;
    if (opts.direction === 'up' && !opts.dryRun) {
      rechain = await rechainAudit(install.admin).then(
        (r) => ({ rechained: r.rechained }),
        (err: Error) => ({ error: err.message }),
      );
    }
    return { direction: opts.direction, dryRun: opts.dryRun ?? false, ran, ...(rechain ? { rechain } : {}) };
  });
}

export async function migrationStatus(loc: ConfigLocation): Promise<MigrationState> {
  return withInstall({ ...loc, requireMigrated: false }, (install) => migrationState(install.admin));
}
