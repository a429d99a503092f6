import {
  ensureInstallKeys,
  loadConfig,
  loadSecrets,
  type ConfigLocation,
  type InstallSecrets,
  type LoadedConfig,
} from './config/load.js';
import { resolveDatabase, type DatabaseTarget } from '../db/connect.js';
import { createPool, dbUnavailable, type Pool } from '../db/pool.js';
import { migrationState } from '../db/migrate.js';
import { AttenduxError } from '../errors.js';
import { registerAuditKey } from './audit/mac.js';

/** An opened install: config, secrets, the database (embedded started if needed) and an admin pool. */
export interface Install {
  loaded: LoadedConfig;
  secrets: InstallSecrets;
  db: DatabaseTarget;
  admin: Pool;
  /**
   * The newest applied migration, as read when opening checked that none is pending (undefined when that
   * check was skipped): a backup records it without asking the database again.
   */
  schemaVersion?: string | null;
  close(): Promise<void>;
}

export interface OpenOptions extends ConfigLocation {
  /** Fail with SCHEMA_OUTDATED when migrations are pending (default true). */
  requireMigrated?: boolean;
  /** The config the caller has already loaded from these options: it is not read and validated again. */
  loaded?: LoadedConfig;
}

export async function openInstall(opts: OpenOptions = {}): Promise<Install> {
  const loaded = opts.loaded ?? (await loadConfig(opts));
  const secrets = await ensureInstallKeys(loaded.secretsPath, await loadSecrets(loaded.secretsPath));
  const db = await resolveDatabase(loaded, secrets);
  const admin = createPool(db.adminUrl, 4, 'attendux-cli');
  // Audit entries written through this pool are MAC'd with this install's key (src/crypto/audit-mac.ts).
  registerAuditKey(admin, secrets.auditKey);
  const close = async () => {
    await admin.end().catch(() => undefined); // closing the pool at the end: nothing is pending on it
    await db.release();
  };
  let schemaVersion: string | null | undefined;
  try {
    const client = await admin.connect().catch(async (err: unknown) => {
      throw (await unfinishedInstall(loaded, err)) ?? dbUnavailable(db.adminUrl, err);
    });
    try {
      if (opts.requireMigrated !== false) {
        const state = await migrationState(client);
        schemaVersion = state.applied.length ? state.applied[state.applied.length - 1]!.name : null;
        if (state.pending.length) {
          throw new AttenduxError(
            'SCHEMA_OUTDATED',
            `the database has ${state.pending.length} pending migration(s)`,
            {
              hint: 'run `attendux migrate up`',
            },
          );
        }
      }
    } finally {
      client.release();
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { loaded, secrets, db, admin, schemaVersion, close };
}

/**
 * A connection refused because provisioning never finished (the roles do not exist yet): say so, and how
 * to finish it, instead of a bare "password authentication failed".
 */
async function unfinishedInstall(loaded: LoadedConfig, err: unknown): Promise<AttenduxError | undefined> {
  const { installStatus, readInstallState } = await import('./init/state.js');
  if ((await installStatus(loaded.path)) !== 'incomplete') return undefined;
  const state = await readInstallState(loaded.config.dataDir);
  const where = state?.failed ? ` (it stopped at step "${state.failed.step}": ${state.failed.message})` : '';
  return new AttenduxError('DB_UNAVAILABLE', `the install in ${loaded.path} was never finished${where}`, {
    cause: err,
    hint: `run \`attendux init --yes --config-out ${loaded.path}\` (or npm start for the quickstart) to finish it with the secrets already written`,
  });
}

/** Open, run fn, and always close (pool, embedded cluster) afterwards. */
export async function withInstall<T>(opts: OpenOptions, fn: (install: Install) => Promise<T>): Promise<T> {
  const install = await openInstall(opts);
  try {
    return await fn(install);
  } finally {
    await install.close();
  }
}
