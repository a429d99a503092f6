import { AttenduxError } from '../errors.js';
import { rewriteDbUrl } from '../lib/db-url.js';
import type { EmbeddedCluster } from './embedded.js';

/** Names the embedded default uses inside its own cluster. */
export const EMBEDDED_DATABASE = 'attendux';
export const EMBEDDED_OWNER_ROLE = 'attendux_owner';

/**
 * The parts of the loaded config and the secrets file that locate the database. Declared here, shaped like
 * core's LoadedConfig and Secrets (which satisfy them), because src/db must not import src/core.
 */
export interface DatabaseConfig {
  config: {
    dataDir: string;
    database: { url?: string; adminUrl?: string; appRole: string; embedded: { port: number } };
  };
}
export interface DatabaseSecrets {
  database: { superuserPassword?: string; adminPassword?: string; appPassword?: string };
}

export interface DatabaseTarget {
  /** The server's unprivileged connection (row-level security applies). */
  appUrl: string;
  /** The schema owner's connection (migrations, backups, restore, CLI administration). */
  adminUrl: string;
  /** The embedded cluster's superuser connection to its maintenance database, when embedded. */
  superuserUrl?: string;
  embedded?: EmbeddedCluster;
  /** Stops the embedded cluster if this process started it. */
  release(): Promise<void>;
}

export function withPassword(url: string, password: string | undefined): string {
  if (!password) return url;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new AttenduxError('CONFIG_INVALID', 'database URL is not a valid postgres:// URL');
  }
  return u.password ? url : rewriteDbUrl(url, { password });
}

export function isEmbedded(loaded: DatabaseConfig): boolean {
  return !loaded.config.database.url && !loaded.config.database.adminUrl;
}

export function embeddedUrl(port: number, user: string, password: string, database: string): string {
  return `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
}

/**
 * Work out where the database is: the URLs from the config (passwords from the secrets file when the URL has
 * none), or the embedded cluster in <dataDir>/pg, started on demand.
 */
export async function resolveDatabase(
  loaded: DatabaseConfig,
  secrets: DatabaseSecrets,
): Promise<DatabaseTarget> {
  const db = loaded.config.database;
  if (!isEmbedded(loaded)) {
    if (!db.url || !db.adminUrl) {
      const missing = db.url ? 'database.adminUrl' : 'database.url';
      throw new AttenduxError(
        'CONFIG_INVALID',
        `key "${missing}" is required when the other database URL is set`,
        {
          hint: 'set both database.url and database.adminUrl, or neither for the embedded default',
        },
      );
    }
    return {
      appUrl: withPassword(db.url, secrets.database.appPassword),
      adminUrl: withPassword(db.adminUrl, secrets.database.adminPassword),
      release: () => Promise.resolve(),
    };
  }
  const su = secrets.database.superuserPassword;
  const admin = secrets.database.adminPassword;
  const app = secrets.database.appPassword;
  if (!su || !admin || !app) {
    throw new AttenduxError('SECRETS_INVALID', 'the secrets file has no embedded database passwords', {
      hint: 'run `attendux init` for the embedded default, or configure database.url and database.adminUrl',
    });
  }
  // Loaded only here: a command on a configured PostgreSQL never loads the embedded cluster's code.
  const { ensureEmbeddedCluster, EMBEDDED_SUPERUSER } = await import('./embedded.js');
  const cluster = await ensureEmbeddedCluster({
    dataDir: loaded.config.dataDir,
    port: db.embedded.port,
    superuserPassword: su,
  });
  return {
    appUrl: embeddedUrl(cluster.port, db.appRole, app, EMBEDDED_DATABASE),
    adminUrl: embeddedUrl(cluster.port, EMBEDDED_OWNER_ROLE, admin, EMBEDDED_DATABASE),
    superuserUrl: embeddedUrl(cluster.port, EMBEDDED_SUPERUSER, su, 'postgres'),
    embedded: cluster,
    release: () => (cluster.owned ? cluster.stop() : Promise.resolve()),
  };
}
