import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { ConfigLocation } from './config/load.js';
import { AttenduxError } from '../errors.js';
import { migrationFiles, migrationState, runMigrations, type MigrationState } from '../db/migrate.js';
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

/**
 * Create an empty SQL migration in `dir` (for developers of attendux: in a checkout, `./migrations`), numbered
 * after the newest one there and in the installed package. Never into the installed package itself: that folder
 * belongs to the package manager, and a file written there is lost on the next upgrade.
 */
export async function createMigration(name: string, dir: string): Promise<string> {
  if (!/^[a-z0-9-]+$/.test(name))
    throw new AttenduxError('USAGE', 'migration name must be kebab-case (a-z, 0-9, -)');
  const target = resolve(dir);
  await mkdir(target, { recursive: true });
  const names = [...(await migrationFiles(target)), ...(await migrationFiles())].sort();
  const next = names.length ? Number(names[names.length - 1]!.slice(0, 4)) + 1 : 1;
  const file = join(target, `${String(next).padStart(4, '0')}_${name}.sql`);
  await writeFile(file, '-- Up Migration\n\n-- Down Migration\n', { flag: 'wx' });
  return file;
}
