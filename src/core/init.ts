import { dirname, join, resolve } from 'node:path';
import { AttenduxError, isAttenduxError } from '../errors.js';
import { pathExists, writeFileAtomic } from '../lib/fs.js';
import { warnSwallowed } from '../lib/log.js';
import { loadConfig, loadSecrets, type LoadedConfig } from './config/load.js';
import type { Secrets } from './config/schema.js';
import { publicKeyOf } from '../crypto/signing.js';
import {
  EMBEDDED_DATABASE,
  EMBEDDED_OWNER_ROLE,
  resolveDatabase,
  type DatabaseTarget,
} from '../db/connect.js';
import { provisionDatabase } from '../db/provision.js';
import { runMigrations } from '../db/migrate.js';
import { createPool, type Pool } from '../db/pool.js';
import { registerAuditKey } from './audit/mac.js';
import { findTenant, listTenants, type Tenant } from '../db/queries/tenants.js';
import { findUserByEmail } from '../db/queries/users.js';
import { createTenant } from './accounts/tenants.js';
import { createUser } from './accounts/users.js';
import { describeExisting, mergeSecrets, writeConfigAndSecrets } from './init/files.js';
import {
  installStatus,
  newState,
  readInstallState,
  requestOf,
  writeState,
  type InitStep,
  type InstallState,
} from './init/state.js';

// The progress file and the status check live in init/state.ts, the config and secrets writers in
// init/files.ts; this file runs the steps in order.
export { installStatus, type InstallStatus } from './init/state.js';

export interface InitOptions {
  /** Where the config file goes; the secrets file goes beside it. */
  configPath: string;
  dataDir: string;
  /**
   * A superuser URL of an existing PostgreSQL (e.g. postgres://postgres@127.0.0.1:5432/postgres) to create
   * the install's roles and database on. Absent: the embedded default in <dataDir>/pg.
   */
  superuserUrl?: string;
  databaseName?: string;
  ownerRole?: string;
  appRole?: string;
  embeddedPort?: number;
  /** Use this age public key instead of generating a key pair. */
  backupRecipient?: string;
  /** Where the generated age identity is written (default: beside the config). */
  identityPath?: string;
  /** Required for a new install; a resumed one takes them from its progress file when absent. */
  tenantSlug?: string;
  tenantName?: string;
  timeZone?: string;
  currency?: string;
  adminEmail?: string;
  /** When absent, a password is generated and returned once. */
  adminPassword?: string;
  serverHost?: string;
  serverPort?: number;
  force?: boolean;
  actor: string;
  bcryptCost?: number;
  onStep?: (step: string) => void;
}

export interface InitResult {
  alreadyInstalled: boolean;
  configPath: string;
  secretsPath: string;
  dataDir: string;
  database: { embedded: boolean; name: string };
  backupRecipient: string;
  /** Set when a new identity was generated: the user must move it off the server. */
  identityPath?: string;
  /** Public half of the install signing key: backups are signed with it (keep it with the identity). */
  signingPublicKey?: string;
  tenant: { id: string; slug: string };
  adminEmail: string;
  generatedPassword?: string;
  /** True when this run finished an install an earlier run had left part way. */
  resumed?: boolean;
  steps: string[];
}

/** One run of init: what it loaded, its progress, and the step it is at (for the failure record). */
interface Run {
  opts: InitOptions;
  configPath: string;
  loaded: LoadedConfig;
  secrets: Secrets;
  state: InstallState;
  identityPath?: string;
  resumed: boolean;
  embedded: boolean;
  current: InitStep;
  steps: string[];
  step(s: string): void;
  mark(s: InitStep): Promise<void>;
  target?: DatabaseTarget;
}

/**
 * Provision an install: config + secrets, backup key pair, cluster (embedded), roles, database, schema, the
 * first company and its owner. Every step is idempotent and recorded in <dataDir>/install-state.json, so a
 * run that failed part way (port taken, server down, killed) is finished by running init (or `npm start`)
 * again, with the secrets it already wrote. Re-running on a complete install changes nothing and says so;
 * --force rewrites the config from the given options but keeps every existing secret.
 */
export async function initInstall(opts: InitOptions): Promise<InitResult> {
  const configPath = resolve(opts.configPath);
  const status = await installStatus(configPath);
  if (status === 'complete' && !opts.force) return describeExisting(configPath, opts);

  const run = await startRun(opts, configPath, status === 'incomplete' && !opts.force);
  try {
    const { db, database } = await provisionSchema(run);
    return await companyAndOwner(run, db, database);
  } catch (err) {
    throw await recordFailure(run, err);
  } finally {
    await run.target?.release();
  }
}

/** Resume (keep config and secrets, generate only what is missing) or write a fresh config and secrets. */
async function startRun(opts: InitOptions, configPath: string, resume: boolean): Promise<Run> {
  const steps: string[] = [];
  const step = (s: string) => {
    steps.push(s);
    opts.onStep?.(s);
  };
  const configDir = dirname(configPath);
  let loaded: LoadedConfig;
  let secrets: Secrets;
  let state: InstallState;
  let identityPath: string | undefined;
  if (resume) {
    // A port fixed meanwhile with `config set database.embedded.port` is used.
    loaded = await loadConfig({ configPath });
    const existing = (await pathExists(loaded.secretsPath))
      ? await loadSecrets(loaded.secretsPath)
      : undefined;
    secrets = mergeSecrets(existing, !loaded.config.database.url);
    if (!existing || JSON.stringify(existing) !== JSON.stringify(secrets)) {
      await writeFileAtomic(loaded.secretsPath, JSON.stringify(secrets, null, 2) + '\n', 0o600);
    }
    const old = await readInstallState(loaded.config.dataDir);
    state = old ?? { version: 1, done: {}, ownRoles: [] };
    // An install from before progress was recorded may have no request: it is checked at the company step.
    state.request = opts.tenantSlug || opts.adminEmail || old?.request ? requestOf(opts, old) : undefined;
    const identity = join(configDir, 'attendux-backup-identity.txt');
    if (await pathExists(identity)) identityPath = identity;
    step(`resuming the install in ${configPath} (existing config and secrets kept)`);
  } else {
    const fresh = await writeConfigAndSecrets(opts, configPath, configDir, step);
    loaded = fresh.loaded;
    secrets = fresh.secrets;
    identityPath = fresh.identityPath;
    state = newState(opts, await readInstallState(loaded.config.dataDir));
  }
  const dataDir = loaded.config.dataDir;
  state.done.config ??= new Date().toISOString();
  state.done.secrets ??= new Date().toISOString();
  delete state.completedAt;
  await writeState(dataDir, state);
  return {
    opts,
    configPath,
    loaded,
    secrets,
    state,
    identityPath,
    resumed: resume,
    embedded: !loaded.config.database.url,
    current: 'cluster',
    steps,
    step,
    mark: async (s) => {
      state.done[s] = new Date().toISOString();
      await writeState(dataDir, state);
    },
  };
}

/** The cluster (embedded), roles, database and schema. */
async function provisionSchema(run: Run): Promise<{ db: DatabaseTarget; database: string }> {
  const { opts, loaded, secrets, state, embedded } = run;
  // A configured server names the database and owner in its admin URL; the embedded default has fixed ones.
  const adminUrl = new URL(loaded.config.database.adminUrl ?? 'postgres://x@127.0.0.1/attendux');
  const database = decodeURIComponent(adminUrl.pathname.slice(1)) || EMBEDDED_DATABASE;
  const ownerRole = embedded ? EMBEDDED_OWNER_ROLE : decodeURIComponent(adminUrl.username);
  const appRole = loaded.config.database.appRole;
  let superuserUrl: string;
  if (embedded) {
    run.target = await resolveDatabase(loaded, secrets);
    superuserUrl = run.target.superuserUrl!;
    run.step(
      `embedded PostgreSQL running on 127.0.0.1:${run.target.embedded!.port} (${run.target.embedded!.dir})`,
    );
  } else {
    if (!opts.superuserUrl) {
      throw new AttenduxError(
        'USAGE',
        'finishing this install needs --database-url (a superuser URL of its server)',
        {
          hint: 're-run init with the same --database-url as the first run',
        },
      );
    }
    superuserUrl = opts.superuserUrl;
  }
  await run.mark('cluster');

  run.current = 'roles';
  // Passwords of existing roles are (re)set only where they are this install's: its own embedded cluster,
  // roles an earlier run of this install created, or --force. On a shared server they may be another's.
  const own = embedded || opts.force || [ownerRole, appRole].every((r) => state.ownRoles.includes(r));
  const prov = await provisionDatabase({
    superuserUrl,
    database,
    ownerRole,
    ownerPassword: secrets.database.adminPassword!,
    appRole,
    appPassword: secrets.database.appPassword!,
    existingRoles: own ? 'reset' : 'refuse',
    onRoleCreated: async (role) => {
      if (!state.ownRoles.includes(role)) state.ownRoles.push(role);
      await writeState(loaded.config.dataDir, state);
    },
  });
  await run.mark('roles');
  run.current = 'database';
  await run.mark('database');
  run.step(
    `${prov.createdDatabase ? 'created' : 'kept'} database ${database} (roles ${ownerRole}, ${appRole}${prov.resetRoles.length ? `; passwords of ${prov.resetRoles.join(', ')} set from the secrets file` : ''})`,
  );

  run.current = 'migrations';
  const db = run.target ?? (await resolveDatabase(loaded, secrets));
  const ran = await runMigrations({ adminUrl: db.adminUrl, appRole, direction: 'up' });
  run.step(ran.length ? `applied ${ran.length} migration(s)` : 'schema already current');
  await run.mark('migrations');
  return { db, database };
}

/** The first company and its owner; then the install is complete. */
async function companyAndOwner(run: Run, db: DatabaseTarget, database: string): Promise<InitResult> {
  const { opts, loaded, state } = run;
  run.current = 'company';
  const pool = createPool(db.adminUrl, 2, 'attendux-init');
  registerAuditKey(pool, run.secrets.auditKey!); // the first company's audit entries are MACed (audit chain)
  const base = {
    configPath: run.configPath,
    secretsPath: loaded.secretsPath,
    dataDir: loaded.config.dataDir,
    database: { embedded: run.embedded, name: database },
    backupRecipient: loaded.config.backup.recipients[0] ?? '',
    steps: run.steps,
  };
  try {
    if (!state.request) {
      // An embedded install from before progress was recorded: complete if it has a company.
      const first = (await listTenants(pool))[0];
      if (!first) requestOf(opts, undefined); // throws: init --yes needs --company and --admin-email
      await complete(run);
      run.step(`found company ${first!.slug}: the install was complete`);
      return {
        ...base,
        alreadyInstalled: true,
        tenant: { id: first!.id, slug: first!.slug },
        adminEmail: '',
      };
    }
    const req = state.request;
    const tenant = await ensureTenant(run, pool, req);
    await run.mark('company');
    run.current = 'owner';
    let generatedPassword: string | undefined;
    if (!(await findUserByEmail(pool, tenant.id, req.adminEmail))) {
      const created = await createUser(pool, {
        tenant: tenant.id,
        email: req.adminEmail,
        role: 'owner',
        password: opts.adminPassword,
        actor: opts.actor,
        bcryptCost: opts.bcryptCost,
      });
      generatedPassword = created.generatedPassword;
      run.step(`created owner ${created.user.email}`);
    }
    state.done.owner = new Date().toISOString();
    await complete(run, state.done.owner);
    return {
      ...base,
      alreadyInstalled: false,
      identityPath: run.identityPath,
      signingPublicKey: publicKeyOf(run.secrets.signingKey!),
      tenant: { id: tenant.id, slug: tenant.slug },
      adminEmail: req.adminEmail.toLowerCase(),
      generatedPassword,
      resumed: run.resumed,
    };
  } finally {
    await pool.end();
  }
}

async function ensureTenant(
  run: Run,
  pool: Pool,
  req: NonNullable<InstallState['request']>,
): Promise<Tenant> {
  const found = await findTenant(pool, req.tenantSlug);
  if (found) return found;
  const tenant = await createTenant(pool, {
    slug: req.tenantSlug,
    name: req.tenantName,
    timeZone: req.timeZone,
    currency: req.currency,
    actor: run.opts.actor,
  });
  run.step(`created company ${tenant.slug}`);
  return tenant;
}

async function complete(run: Run, at = new Date().toISOString()): Promise<void> {
  run.state.completedAt = at;
  delete run.state.failed;
  await writeState(run.loaded.config.dataDir, run.state);
}

/** Record which step failed (a re-run continues there) and say how to finish the install. */
async function recordFailure(run: Run, err: unknown): Promise<unknown> {
  const e = isAttenduxError(err) ? err : undefined;
  run.state.failed = {
    step: run.current,
    at: new Date().toISOString(),
    code: e?.code ?? 'INTERNAL',
    message: (err as Error)?.message ?? String(err),
  };
  // The install's own error is what the user must see; a state file that could not be written only
  // means the re-run starts from an earlier step, which every step allows.
  await writeState(run.loaded.config.dataDir, run.state).catch((e2: unknown) =>
    warnSwallowed('could not record the failed step', e2),
  );
  const again =
    'then run init again (or npm start for the quickstart): it finishes the install with the config and secrets already written';
  if (!e) return err;
  return new AttenduxError(e.code, `install stopped at step "${run.current}": ${e.message}`, {
    cause: err,
    hint: e.hint ? `${e.hint}; ${again}` : again,
    details: e.details,
  });
}
