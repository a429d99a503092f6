import { mkdir, readFile, copyFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { AttenduxError, isAttenduxError } from '../errors.js';
import { pathExists, writeFileAtomic } from '../lib/fs.js';
import { rewriteDbUrl } from '../lib/db-url.js';
import {
  applyEnvOverrides,
  loadConfig,
  loadSecrets,
  resolvePaths,
  validateConfig,
  type LoadedConfig,
} from './config/load.js';
import type { ConfigInput, Secrets } from './config/schema.js';
import { randomKey, randomPassword } from '../crypto/random.js';
import { formatIdentityFile, generateAgeKeyPair } from '../crypto/age.js';
import { generateSigningKey, publicKeyOf } from '../crypto/signing.js';
import {
  EMBEDDED_DATABASE,
  EMBEDDED_OWNER_ROLE,
  resolveDatabase,
  type DatabaseTarget,
} from '../db/connect.js';
import { provisionDatabase } from '../db/provision.js';
import { runMigrations } from '../db/migrate.js';
import { createPool } from '../db/pool.js';
import { registerAuditKey } from './audit/mac.js';
import { findTenant, listTenants, type Tenant } from '../db/queries/tenants.js';
import { findUserByEmail } from '../db/queries/users.js';
import { createTenant } from './tenants.js';
import { createUser } from './users.js';
import { identityKeyLine } from './backup/signature.js';
import { warnSwallowed } from '../lib/log.js';

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

function newSecrets(): Secrets {
  return {
    sessionKey: randomKey(),
    apiKeyHmacKey: randomKey(),
    auditPepper: randomKey(),
    dataKeys: { k1: randomKey() },
    activeDataKeyId: 'k1',
    signingKey: generateSigningKey(),
    auditKey: randomKey(),
    database: {},
  };
}

/** Keep every secret that exists; generate only what is missing. Secrets are never silently replaced. */
function mergeSecrets(existing: Secrets | undefined, embedded: boolean): Secrets {
  const s = existing ? structuredClone(existing) : newSecrets();
  s.signingKey ??= generateSigningKey();
  s.auditKey ??= randomKey();
  s.database.adminPassword ??= randomPassword(32);
  s.database.appPassword ??= randomPassword(32);
  if (embedded) s.database.superuserPassword ??= randomPassword(32);
  return s;
}

const dbUrl = (superuserUrl: string, user: string, database: string): string =>
  rewriteDbUrl(superuserUrl, { user, password: '', database });

/** What a run has done so far, in <dataDir>/install-state.json (0600): a re-run continues from here. */
export interface InstallState {
  version: 1;
  /**
   * The first company and owner asked for, so that a bare re-run (`init --yes`, `npm start`) can finish.
   * Absent only for an install made before progress was recorded.
   */
  request?: {
    tenantSlug: string;
    tenantName: string;
    timeZone?: string;
    currency?: string;
    adminEmail: string;
  };
  /** Step name → when it last completed. */
  done: Partial<Record<InitStep, string>>;
  /** Roles this install created on its server: resetting their passwords on a re-run is safe. */
  ownRoles: string[];
  completedAt?: string;
  failed?: { step: InitStep; at: string; code: string; message: string };
}

export const INIT_STEPS = [
  'config',
  'secrets',
  'cluster',
  'roles',
  'database',
  'migrations',
  'company',
  'owner',
] as const;
export type InitStep = (typeof INIT_STEPS)[number];

export function installStatePath(dataDir: string): string {
  return join(dataDir, 'install-state.json');
}

export async function readInstallState(dataDir: string): Promise<InstallState | undefined> {
  try {
    return JSON.parse(await readFile(installStatePath(dataDir), 'utf8')) as InstallState;
  } catch {
    return undefined;
  }
}

async function writeState(dataDir: string, state: InstallState): Promise<void> {
  await writeFileAtomic(installStatePath(dataDir), JSON.stringify(state, null, 2) + '\n', 0o600);
}

export type InstallStatus = 'none' | 'complete' | 'incomplete';

/**
 * Is there an install at configPath, and did its provisioning finish? Decided from files alone, before any
 * flag is validated or question asked: `init --yes` on an installed system is a no-op. An install made
 * before progress was recorded counts as complete when it uses a configured server; on the embedded
 * default it is resumed (every step is idempotent on its own cluster).
 */
export async function installStatus(configPath: string): Promise<InstallStatus> {
  if (!(await pathExists(resolve(configPath)))) return 'none';
  let loaded: LoadedConfig;
  try {
    loaded = await loadConfig({ configPath: resolve(configPath) });
  } catch {
    return 'complete'; // an invalid config: the commands that use it say what is wrong; init must not touch it
  }
  const state = await readInstallState(loaded.config.dataDir);
  if (state) return state.completedAt ? 'complete' : 'incomplete';
  return loaded.config.database.url ? 'complete' : 'incomplete';
}

/**
 * Provision an install: config + secrets, backup key pair, cluster (embedded), roles, database, schema, the
 * first company and its owner. Every step is idempotent and recorded in <dataDir>/install-state.json, so a
 * run that failed part way (port taken, server down, killed) is finished by running init (or `npm start`)
 * again, with the secrets it already wrote. Re-running on a complete install changes nothing and says so;
 * --force rewrites the config from the given options but keeps every existing secret.
 */
export async function initInstall(opts: InitOptions): Promise<InitResult> {
  const steps: string[] = [];
  const step = (s: string) => {
    steps.push(s);
    opts.onStep?.(s);
  };
  const configPath = resolve(opts.configPath);
  const configDir = dirname(configPath);
  const status = await installStatus(configPath);

  if (status === 'complete' && !opts.force) return describeExisting(configPath, opts);

  let loaded: LoadedConfig;
  let secrets: Secrets;
  let state: InstallState;
  let identityPath: string | undefined;
  let resumed = false;
  if (status === 'incomplete' && !opts.force) {
    // Resume: the config and secrets of the first run are kept as they are (a port fixed meanwhile with
    // `config set database.embedded.port` is used); only what is missing is generated.
    resumed = true;
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
    const old = await readInstallState(loaded.config.dataDir);
    state = newState(opts, old);
  }
  const dataDir = loaded.config.dataDir;
  const embedded = !loaded.config.database.url;
  state.done.config ??= new Date().toISOString();
  state.done.secrets ??= new Date().toISOString();
  delete state.completedAt;
  await writeState(dataDir, state);

  let current: InitStep = 'cluster';
  const mark = async (s: InitStep) => {
    state.done[s] = new Date().toISOString();
    await writeState(dataDir, state);
  };
  let target: DatabaseTarget | undefined;
  try {
    const adminUrl = new URL(loaded.config.database.adminUrl ?? 'postgres://x@127.0.0.1/attendux');
    const database = decodeURIComponent(adminUrl.pathname.slice(1)) || EMBEDDED_DATABASE;
    const ownerRole = embedded ? EMBEDDED_OWNER_ROLE : decodeURIComponent(adminUrl.username);
    const appRole = loaded.config.database.appRole;
    let superuserUrl: string;
    if (embedded) {
      target = await resolveDatabase(loaded, secrets);
      superuserUrl = target.superuserUrl!;
      step(`embedded PostgreSQL running on 127.0.0.1:${target.embedded!.port} (${target.embedded!.dir})`);
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
    await mark('cluster');

    current = 'roles';
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
        await writeState(dataDir, state);
      },
    });
    await mark('roles');
    current = 'database';
    await mark('database');
    step(
      `${prov.createdDatabase ? 'created' : 'kept'} database ${database} (roles ${ownerRole}, ${appRole}${prov.resetRoles.length ? `; passwords of ${prov.resetRoles.join(', ')} set from the secrets file` : ''})`,
    );

    current = 'migrations';
    const db = target ?? (await resolveDatabase(loaded, secrets));
    const ran = await runMigrations({ adminUrl: db.adminUrl, appRole, direction: 'up' });
    step(ran.length ? `applied ${ran.length} migration(s)` : 'schema already current');
    await mark('migrations');

    current = 'company';
    const pool = createPool(db.adminUrl, 2, 'attendux-init');
    registerAuditKey(pool, secrets.auditKey!); // the first company's audit entries are MACed (audit chain)
    try {
      if (!state.request) {
        // An embedded install from before progress was recorded: complete if it has a company.
        const first = (await listTenants(pool))[0];
        if (!first) requestOf(opts, undefined); // throws: init --yes needs --company and --admin-email
        state.completedAt = new Date().toISOString();
        delete state.failed;
        await writeState(dataDir, state);
        step(`found company ${first!.slug}: the install was complete`);
        return {
          alreadyInstalled: true,
          configPath,
          secretsPath: loaded.secretsPath,
          dataDir,
          database: { embedded, name: database },
          backupRecipient: loaded.config.backup.recipients[0] ?? '',
          tenant: { id: first!.id, slug: first!.slug },
          adminEmail: '',
          steps,
        };
      }
      const req = state.request;
      let tenant: Tenant | undefined = await findTenant(pool, req.tenantSlug);
      if (!tenant) {
        tenant = await createTenant(pool, {
          slug: req.tenantSlug,
          name: req.tenantName,
          timeZone: req.timeZone,
          currency: req.currency,
          actor: opts.actor,
        });
        step(`created company ${tenant.slug}`);
      }
      await mark('company');
      current = 'owner';
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
        step(`created owner ${created.user.email}`);
      }
      state.done.owner = new Date().toISOString();
      state.completedAt = state.done.owner;
      delete state.failed;
      await writeState(dataDir, state);
      return {
        alreadyInstalled: false,
        configPath,
        secretsPath: loaded.secretsPath,
        dataDir,
        database: { embedded, name: database },
        backupRecipient: loaded.config.backup.recipients[0] ?? '',
        identityPath,
        signingPublicKey: publicKeyOf(secrets.signingKey!),
        tenant: { id: tenant.id, slug: tenant.slug },
        adminEmail: req.adminEmail.toLowerCase(),
        generatedPassword,
        resumed,
        steps,
      };
    } finally {
      await pool.end();
    }
  } catch (err) {
    const e = isAttenduxError(err) ? err : undefined;
    state.failed = {
      step: current,
      at: new Date().toISOString(),
      code: e?.code ?? 'INTERNAL',
      message: (err as Error)?.message ?? String(err),
    };
    // The install's own error is what the user must see; a state file that could not be written only
    // means the re-run starts from an earlier step, which every step allows.
    await writeState(dataDir, state).catch((e2: unknown) =>
      warnSwallowed('could not record the failed step', e2),
    );
    const again =
      'then run init again (or npm start for the quickstart): it finishes the install with the config and secrets already written';
    if (e) {
      throw new AttenduxError(e.code, `install stopped at step "${current}": ${e.message}`, {
        cause: err,
        hint: e.hint ? `${e.hint}; ${again}` : again,
        details: e.details,
      });
    }
    throw err;
  } finally {
    await target?.release();
  }
}

function requestOf(opts: InitOptions, old: InstallState | undefined): InstallState['request'] {
  const slug = opts.tenantSlug ?? old?.request?.tenantSlug;
  const email = opts.adminEmail ?? old?.request?.adminEmail;
  if (!slug || !email) {
    const missing = [!slug && '--company', !email && '--admin-email'].filter(Boolean);
    throw new AttenduxError('USAGE', `init --yes needs ${missing.join(' and ')}`);
  }
  return {
    tenantSlug: slug,
    tenantName: opts.tenantName ?? old?.request?.tenantName ?? slug,
    timeZone: opts.timeZone ?? old?.request?.timeZone,
    currency: opts.currency ?? old?.request?.currency,
    adminEmail: email,
  };
}

function newState(opts: InitOptions, old: InstallState | undefined): InstallState {
  return {
    version: 1,
    request: requestOf(opts, old),
    done: {},
    ownRoles: old?.ownRoles ?? [],
  };
}

/** A new install (or --force): validate, then write identity, secrets and config. */
async function writeConfigAndSecrets(
  opts: InitOptions,
  configPath: string,
  configDir: string,
  step: (s: string) => void,
): Promise<{ loaded: LoadedConfig; secrets: Secrets; identityPath?: string }> {
  const secretsPath = join(configDir, 'attendux.secrets.json');
  const embedded = !opts.superuserUrl;
  // The first company and owner are required before anything is written.
  requestOf(opts, undefined);
  const existingSecrets = (await pathExists(secretsPath)) ? await loadSecrets(secretsPath) : undefined;
  const secrets = mergeSecrets(existingSecrets, embedded);
  let recipient = opts.backupRecipient;
  let identityPath: string | undefined;
  let identityText: string | undefined;
  if (recipient) {
    if (!/^age1[0-9a-z]+$/.test(recipient)) {
      throw new AttenduxError(
        'USAGE',
        `--backup-recipient "${recipient}" is not an age public key (age1...)`,
      );
    }
  } else if (opts.force && (await pathExists(configPath))) {
    // Keep the recipients of the config being replaced: a new key pair would orphan older backups' key.
    const old = JSON.parse(await readFile(configPath, 'utf8')) as { backup?: { recipients?: string[] } };
    recipient = old.backup?.recipients?.[0];
  }
  if (!recipient) {
    const pair = await generateAgeKeyPair();
    recipient = pair.recipient;
    identityPath = resolve(opts.identityPath ?? join(configDir, 'attendux-backup-identity.txt'));
    if (await pathExists(identityPath)) {
      throw new AttenduxError(
        'CONFIG_EXISTS',
        `${identityPath} already exists; refusing to overwrite a backup identity`,
        {
          hint: 'move it somewhere safe, or pass --backup-recipient with its public key',
        },
      );
    }
    // The signing key's public half travels with the identity, so a new server can check the backups.
    identityText =
      formatIdentityFile(pair.identity, pair.recipient) + identityKeyLine(publicKeyOf(secrets.signingKey!));
  }

  const database = opts.databaseName ?? EMBEDDED_DATABASE;
  const ownerRole = opts.ownerRole ?? (embedded ? EMBEDDED_OWNER_ROLE : `${database}_owner`);
  const appRole = opts.appRole ?? (embedded ? 'attendux_app' : `${database}_app`);
  const rel = (p: string) => relative(configDir, p) || '.';
  const config: ConfigInput = {
    dataDir: rel(resolve(opts.dataDir)),
    database: {
      appRole,
      ...(embedded
        ? { embedded: { port: opts.embeddedPort ?? 54329 } }
        : {
            url: dbUrl(opts.superuserUrl!, appRole, database),
            adminUrl: dbUrl(opts.superuserUrl!, ownerRole, database),
          }),
    },
    server: { host: opts.serverHost ?? '127.0.0.1', port: opts.serverPort ?? 8080 },
    backup: { recipients: [recipient], signingPublicKeys: [publicKeyOf(secrets.signingKey!)] },
  };
  validateConfig(config, configPath);

  await mkdir(configDir, { recursive: true });
  await mkdir(resolve(opts.dataDir), { recursive: true, mode: 0o700 });
  if (identityPath && identityText) {
    await writeFileAtomic(identityPath, identityText, 0o600);
    step(`wrote backup identity ${identityPath} (move it off this server)`);
  }
  await writeFileAtomic(secretsPath, JSON.stringify(secrets, null, 2) + '\n', 0o600);
  step(
    existingSecrets ? `kept existing secrets in ${secretsPath}` : `wrote secrets ${secretsPath} (mode 0600)`,
  );
  if (await pathExists(configPath)) {
    const history = join(resolve(opts.dataDir), 'config-history');
    await mkdir(history, { recursive: true, mode: 0o700 });
    await copyFile(
      configPath,
      join(history, `${new Date().toISOString().replace(/[:.]/g, '-')}-attendux.json`),
    );
  }
  await writeFileAtomic(configPath, JSON.stringify(config, null, 2) + '\n', 0o640);
  step(`wrote config ${configPath}`);
  const loaded = resolvePaths(configPath, validateConfig(applyEnvOverrides(config, process.env), configPath));
  return { loaded, secrets, identityPath };
}

/** A complete install exists: report it without changing anything (and without starting any database). */
async function describeExisting(configPath: string, opts: InitOptions): Promise<InitResult> {
  const loaded = await loadConfig({ configPath });
  const state = await readInstallState(loaded.config.dataDir);
  const embedded = !loaded.config.database.url;
  const adminUrl = loaded.config.database.adminUrl;
  return {
    alreadyInstalled: true,
    configPath,
    secretsPath: loaded.secretsPath,
    dataDir: loaded.config.dataDir,
    database: {
      embedded,
      name: adminUrl ? decodeURIComponent(new URL(adminUrl).pathname.slice(1)) : EMBEDDED_DATABASE,
    },
    backupRecipient: loaded.config.backup.recipients[0] ?? '',
    tenant: { id: '', slug: state?.request?.tenantSlug ?? opts.tenantSlug ?? '' },
    adminEmail: (state?.request?.adminEmail ?? opts.adminEmail ?? '').toLowerCase(),
    steps: [],
  };
}
