import { mkdir, readFile, copyFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { AttenduxError } from '../../errors.js';
import { pathExists, writeFileAtomic } from '../../lib/fs.js';
import { rewriteDbUrl } from '../../lib/db-url.js';
import {
  applyEnvOverrides,
  loadConfig,
  loadSecrets,
  resolvePaths,
  validateConfig,
  type LoadedConfig,
} from '../config/load.js';
import type { ConfigInput, Secrets } from '../config/schema.js';
import { randomKey, randomPassword } from '../../crypto/random.js';
import { formatIdentityFile, generateAgeKeyPair } from '../../crypto/age.js';
import { generateSigningKey, publicKeyOf } from '../../crypto/signing.js';
import { EMBEDDED_DATABASE, EMBEDDED_OWNER_ROLE } from '../../db/connect.js';
import { databaseOf } from '../../lib/db-url.js';
import { identityKeyLine } from '../backup/signature.js';
import type { InitOptions, InitResult } from '../init.js';
import { readInstallState, requestOf } from './state.js';

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
export function mergeSecrets(existing: Secrets | undefined, embedded: boolean): Secrets {
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

/**
 * The backup recipient: the one given, else the one of the config being replaced (--force: a new key pair
 * would orphan older backups), else a new age key pair whose identity file is written with the config.
 */
async function backupKey(
  opts: InitOptions,
  configPath: string,
  configDir: string,
  secrets: Secrets,
): Promise<{ recipient: string; identityPath?: string; identityText?: string }> {
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
  return { recipient, identityPath, identityText };
}

/** A new install (or --force): validate, then write identity, secrets and config. */
export async function writeConfigAndSecrets(
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
  const { recipient, identityPath, identityText } = await backupKey(opts, configPath, configDir, secrets);

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
export async function describeExisting(configPath: string, opts: InitOptions): Promise<InitResult> {
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
      name: adminUrl ? databaseOf(adminUrl) : EMBEDDED_DATABASE,
    },
    backupRecipient: loaded.config.backup.recipients[0] ?? '',
    tenant: { id: '', slug: state?.request?.tenantSlug ?? opts.tenantSlug ?? '' },
    adminEmail: (state?.request?.adminEmail ?? opts.adminEmail ?? '').toLowerCase(),
    steps: [],
  };
}
