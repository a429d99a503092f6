import type { ConfigLocation } from './config/load.js';
import { migrationState, runMigrations, type MigrationState } from '../db/migrate.js';
import { withInstall } from './install.js';

export async function migrate(
  loc: ConfigLocation,
  opts: { direction: 'up' | 'down'; count?: number; dryRun?: boolean },
): Promise<{ direction: 'up' | 'down'; dryRun: boolean; ran: string[] }> {
  return withInstall({ ...loc, requireMigrated: false }, async (install) => {
    const ran = await runMigrations({
      adminUrl: install.db.adminUrl,
      appRole: install.loaded.config.database.appRole,
      direction: opts.direction,
      count: opts.count,
      dryRun: opts.dryRun,
    });
    return { direction: opts.direction, dryRun: opts.dryRun ?? false, ran };
  });
}

export async function migrationStatus(loc: ConfigLocation): Promise<MigrationState> {
  return withInstall({ ...loc, requireMigrated: false }, (install) => migrationState(install.admin));
}
