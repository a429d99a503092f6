import { mkdir, readFile, copyFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { AttenduxError } from '../errors.js';
import { pathExists, writeFileAtomic } from './fs.js';
import { applyEnvOverrides, loadConfig, loadSecrets, resolvePaths, validateConfig } from './config/load.js';
import type { ConfigInput, Secrets } from './config/schema.js';
import { randomKey, randomPassword } from '../crypto/random.js';
import { formatIdentityFile, generateAgeKeyPair } from '../crypto/age.js';
import { generateSigningKey } from '../crypto/signing.js';
import { EMBEDDED_DATABASE, EMBEDDED_OWNER_ROLE, resolveDatabase } from '../db/connect.js';
import { provisionDatabase } from '../db/provision.js';
import { runMigrations } from '../db/migrate.js';
import { createPool } from '../db/pool.js';
import { registerAuditKey } from './audit/mac.js';
import { findTenant, type Tenant } from '../db/queries/tenants.js';
import { findUserByEmail } from '../db/queries/users.js';
import { createTenant } from './tenants.js';
import { createUser } from './users.js';

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
  tenantSlug: string;
  tenantName: string;
  timeZone?: string;
  currency?: string;
  adminEmail: string;
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
  tenant: { id: string; slug: string };
  adminEmail: string;
  generatedPassword?: string;
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

function dbUrl(superuserUrl: string, user: string, database: string): string {
  const u = new URL(superuserUrl);
  u.username = user;
  u.password = '';
  u.pathname = `/${database}`;
  return u.toString();
}

/**
 * Provision an install: config + secrets, backup key pair, roles and database, schema, the first company
 * and its owner. Re-running on a complete install changes nothing and says so; --force rewrites the config
 * from the given options but keeps every existing secret.
 */
export async function initInstall(opts: InitOptions): Promise<InitResult> {
  const steps: string[] = [];
  const step = (s: string) => {
    steps.push(s);
    opts.onStep?.(s);
  };
  const configPath = resolve(opts.configPath);
  const configDir = dirname(configPath);
  const secretsPath = join(configDir, 'attendux.secrets.json');
  const embedded = !opts.superuserUrl;

  if ((await pathExists(configPath)) && !opts.force) {
    return describeExisting(configPath, opts);
  }

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
    identityText = formatIdentityFile(pair.identity, pair.recipient);
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
    backup: { recipients: [recipient] },
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
  let target;
  if (embedded) {
    target = await resolveDatabase(loaded, secrets);
    step(
      `embedded PostgreSQL running on 127.0.0.1:${target.embedded!.port} (${join(loaded.config.dataDir, 'pg')})`,
    );
  }
  try {
    const superuserUrl = target?.superuserUrl ?? opts.superuserUrl!;
    const prov = await provisionDatabase({
      superuserUrl,
      database,
      ownerRole,
      ownerPassword: secrets.database.adminPassword!,
      appRole,
      appPassword: secrets.database.appPassword!,
    });
    step(
      `${prov.createdDatabase ? 'created' : 'kept'} database ${database} (roles ${ownerRole}, ${appRole})`,
    );
    const db = target ?? (await resolveDatabase(loaded, secrets));
    const ran = await runMigrations({ adminUrl: db.adminUrl, appRole, direction: 'up' });
    step(ran.length ? `applied ${ran.length} migration(s)` : 'schema already current');

    const pool = createPool(db.adminUrl, 2, 'attendux-init');
    registerAuditKey(pool, secrets.auditKey!); // the first company's audit entries (issue 13)
    try {
      let tenant: Tenant | undefined = await findTenant(pool, opts.tenantSlug);
      if (!tenant) {
        tenant = await createTenant(pool, {
          slug: opts.tenantSlug,
          name: opts.tenantName,
          timeZone: opts.timeZone,
          currency: opts.currency,
          actor: opts.actor,
        });
        step(`created company ${tenant.slug}`);
      }
      let generatedPassword: string | undefined;
      if (!(await findUserByEmail(pool, tenant.id, opts.adminEmail))) {
        const created = await createUser(pool, {
          tenant: tenant.id,
          email: opts.adminEmail,
          role: 'owner',
          password: opts.adminPassword,
          actor: opts.actor,
          bcryptCost: opts.bcryptCost,
        });
        generatedPassword = created.generatedPassword;
        step(`created owner ${created.user.email}`);
      }
      return {
        alreadyInstalled: false,
        configPath,
        secretsPath,
        dataDir: loaded.config.dataDir,
        database: { embedded, name: database },
        backupRecipient: recipient,
        identityPath,
        tenant: { id: tenant.id, slug: tenant.slug },
        adminEmail: opts.adminEmail.toLowerCase(),
        generatedPassword,
        steps,
      };
    } finally {
      await pool.end();
    }
  } finally {
    await target?.release();
  }
}

/** An install exists: report it (and whether it is complete) without changing anything. */
async function describeExisting(configPath: string, opts: InitOptions): Promise<InitResult> {
  const loaded = await loadConfig({ configPath });
  const secrets = await loadSecrets(loaded.secretsPath);
  const db = await resolveDatabase(loaded, secrets);
  const pool = createPool(db.adminUrl, 1, 'attendux-init');
  try {
    const tenant = await findTenant(pool, opts.tenantSlug).catch(() => undefined);
    if (!tenant) {
      throw new AttenduxError(
        'CONFIG_EXISTS',
        `${configPath} exists but the install is incomplete (no company "${opts.tenantSlug}")`,
        {
          hint: 're-run with --force to finish it (existing secrets are kept)',
        },
      );
    }
    return {
      alreadyInstalled: true,
      configPath,
      secretsPath: loaded.secretsPath,
      dataDir: loaded.config.dataDir,
      database: { embedded: !loaded.config.database.url, name: new URL(db.adminUrl).pathname.slice(1) },
      backupRecipient: loaded.config.backup.recipients[0] ?? '',
      tenant: { id: tenant.id, slug: tenant.slug },
      adminEmail: opts.adminEmail.toLowerCase(),
      steps: [],
    };
  } finally {
    await pool.end();
    await db.release();
  }
}
