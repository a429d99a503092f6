import type { Pool } from '../db/pool.js';
import type { Config, Secrets } from '../core/config/schema.js';
import type { DataKeyring } from '../crypto/aead.js';
import type { Metrics } from './metrics.js';
import type { PasswordWork } from './password-work.js';
import type { Checkpointer } from '../core/audit/checkpoints.js';
import type { MaintenanceState } from '../core/maintenance.js';

/** Called after a commit; onTenantSettingsChanged takes a config backup audited as `actor`. */
export interface AppHooks {
  onTenantSettingsChanged?: (tenantId: string, actor: string) => void;
}

/** What every route needs, built once per app. */
export interface ServerDeps {
  pool: Pool;
  server: Config['server'];
  secrets: Secrets;
  /** The data keys; reloaded from the secrets file when a template names a key id it does not hold. */
  keyring(): Promise<DataKeyring>;
  reloadKeyring(): Promise<DataKeyring>;
  hooks: AppHooks;
  metrics: Metrics;
  maintenance(): Promise<MaintenanceState | undefined>;
  bcryptCost: number;
  /** Every bcrypt computation of the server goes through this bound (logins, password changes). */
  passwords: PasswordWork;
  /** The install's data dir (the security ledger's mirror file lives there). */
  dataDir: string;
  /** Audit anchors (issue 13): the checkpointer to tell about appended entries, the install's public key. */
  audit: { checkpointer?: Checkpointer; publicKey: string };
}
