import { readFile } from 'node:fs/promises';
import { stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { z } from 'zod';
import { AttenduxError } from '../../errors.js';
import { pathExists } from '../../lib/fs.js';
import { ConfigSchema, SecretsSchema, type Config, type Secrets } from './schema.js';

export interface LoadedConfig {
  /** Absolute path of the config file that was read. */
  path: string;
  /** The validated config with defaults applied, env overrides merged and every path made absolute. */
  config: Config;
  secretsPath: string;
  backupDir: string;
}

export interface ConfigLocation {
  configPath?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Lookup order of PRODUCT.md, plus the quickstart install under ./attendux-data. */
export function configCandidates(loc: ConfigLocation = {}): string[] {
  const env = loc.env ?? process.env;
  const cwd = loc.cwd ?? process.cwd();
  if (loc.configPath) return [resolve(cwd, loc.configPath)];
  if (env.ATTENDUX_CONFIG) return [resolve(cwd, env.ATTENDUX_CONFIG)];
  return [
    join(cwd, 'attendux.json'),
    join(cwd, 'attendux-data', 'attendux.json'),
    '/etc/attendux/attendux.json',
  ];
}

export async function findConfigPath(loc: ConfigLocation = {}): Promise<string> {
  const candidates = configCandidates(loc);
  for (const c of candidates) if (await pathExists(c)) return c;
  throw new AttenduxError(
    'CONFIG_NOT_FOUND',
    `no configuration file found (looked at ${candidates.join(', ')})`,
    {
      hint: 'run `attendux init` to create one, or pass --config FILE',
    },
  );
}

export async function readRawConfig(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new AttenduxError('CONFIG_NOT_FOUND', `cannot read config ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new AttenduxError('CONFIG_INVALID', `${path}: not valid JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (!value || typeof value !== 'object' || Array.isArray(value))
    throw new AttenduxError('CONFIG_INVALID', `${path}: not valid JSON: top level must be an object`);
  return value as Record<string, unknown>;
}

export async function loadConfig(loc: ConfigLocation = {}): Promise<LoadedConfig> {
  const path = await findConfigPath(loc);
  const raw = await readRawConfig(path);
  const merged = applyEnvOverrides(raw, loc.env ?? process.env);
  const config = validateConfig(merged, path);
  return resolvePaths(path, config);
}

/** Validate a raw config object; the error names the first bad key as a dotted path. */
export function validateConfig(raw: unknown, source: string): Config {
  const result = ConfigSchema.safeParse(raw);
  if (result.success) return result.data;
  throw new AttenduxError('CONFIG_INVALID', `${source}: ${describeIssue(result.error.issues[0])}`, {
    hint: 'fix the key named above; `attendux config validate` checks a file',
    details: { issues: result.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })) },
  });
}

function describeIssue(issue: z.core.$ZodIssue | undefined): string {
  if (!issue) return 'invalid';
  if (issue.code === 'unrecognized_keys') {
    const prefix = issue.path.length ? `${issue.path.join('.')}.` : '';
    return `unknown key ${issue.keys.map((k) => `"${prefix}${k}"`).join(', ')}`;
  }
  const key = issue.path.join('.') || '(top level)';
  return `key "${key}": ${issue.message}`;
}

export function resolvePaths(path: string, config: Config): LoadedConfig {
  const dir = dirname(path);
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(dir, p));
  const dataDir = abs(config.dataDir);
  const resolved: Config = {
    ...config,
    dataDir,
    backup: {
      ...config.backup,
      dir: abs(config.backup.dir ?? join(dataDir, 'backups')),
      identityFile: config.backup.identityFile ? abs(config.backup.identityFile) : undefined,
    },
    schedule: {
      ...config.schedule,
      prometheusFile: config.schedule.prometheusFile ? abs(config.schedule.prometheusFile) : undefined,
    },
    server: {
      ...config.server,
      tlsCert: config.server.tlsCert ? abs(config.server.tlsCert) : undefined,
      tlsKey: config.server.tlsKey ? abs(config.server.tlsKey) : undefined,
    },
  };
  const secretsPath = abs(config.secretsFile ?? join(dir, 'attendux.secrets.json'));
  resolved.secretsFile = secretsPath;
  return { path, config: resolved, secretsPath, backupDir: resolved.backup.dir! };
}

// ---------------------------------------------------------------------------------------------------------
// ATTENDUX_* overrides: every leaf of the schema gets a name made of its path in UPPER_SNAKE_CASE, so
// database.adminUrl is ATTENDUX_DATABASE_ADMIN_URL and backup.retention.fullDays is
// ATTENDUX_BACKUP_RETENTION_FULL_DAYS. The names are derived from the schema so they cannot go stale.

export type LeafKind = 'string' | 'number' | 'boolean' | 'string[]' | 'enum' | 'json';
export interface ConfigLeaf {
  path: string[];
  env: string;
  kind: LeafKind;
}

interface ZodDefLike {
  type: string;
  innerType?: { _zod: { def: ZodDefLike } };
  shape?: Record<string, { _zod: { def: ZodDefLike } }>;
  element?: { _zod: { def: ZodDefLike } };
}

function unwrap(def: ZodDefLike): ZodDefLike {
  while ((def.type === 'optional' || def.type === 'default') && def.innerType) def = def.innerType._zod.def;
  return def;
}

const snake = (s: string) => s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();

export function configLeaves(): ConfigLeaf[] {
  const out: ConfigLeaf[] = [];
  const walk = (def: ZodDefLike, path: string[]) => {
    def = unwrap(def);
    if (def.type === 'object' && def.shape) {
      for (const [k, v] of Object.entries(def.shape)) walk(v._zod.def, [...path, k]);
      return;
    }
    let kind: LeafKind = 'string';
    if (def.type === 'number') kind = 'number';
    else if (def.type === 'boolean') kind = 'boolean';
    else if (def.type === 'array') kind = 'string[]';
    else if (def.type === 'enum') kind = 'enum';
    // schedule.jobs (a record) and notify.command (a string or an argv) take JSON; a plain string stays one.
    else if (def.type === 'record' || def.type === 'union') kind = 'json';
    out.push({ path, env: `ATTENDUX_${path.map(snake).join('_')}`, kind });
  };
  walk((ConfigSchema as unknown as { _zod: { def: ZodDefLike } })._zod.def, []);
  return out;
}

export function findLeaf(dotted: string): ConfigLeaf | undefined {
  return configLeaves().find((l) => l.path.join('.') === dotted);
}

/** Turn a string from the environment or the command line into the leaf's type. */
export function parseLeafValue(leaf: ConfigLeaf, text: string, source: string): unknown {
  switch (leaf.kind) {
    case 'number': {
      const n = Number(text);
      if (text.trim() === '' || !Number.isFinite(n))
        throw new AttenduxError('CONFIG_INVALID', `${source}: "${text}" is not a number`);
      return n;
    }
    case 'boolean':
      if (/^(true|1|yes|on)$/i.test(text)) return true;
      if (/^(false|0|no|off)$/i.test(text)) return false;
      throw new AttenduxError('CONFIG_INVALID', `${source}: "${text}" is not true or false`);
    case 'string[]':
      if (text.trim().startsWith('[')) {
        try {
          return JSON.parse(text) as unknown;
        } catch {
          throw new AttenduxError('CONFIG_INVALID', `${source}: not a JSON array`);
        }
      }
      return text
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
    case 'json':
      if (/^\s*[[{]/.test(text)) {
        try {
          return JSON.parse(text) as unknown;
        } catch {
          throw new AttenduxError('CONFIG_INVALID', `${source}: not valid JSON`);
        }
      }
      return text;
    default:
      return text;
  }
}

export function setPath(obj: Record<string, unknown>, path: string[], value: unknown): void {
  let cur = obj;
  for (const key of path.slice(0, -1)) {
    const next = cur[key];
    if (!next || typeof next !== 'object' || Array.isArray(next)) cur[key] = {};
    cur = cur[key] as Record<string, unknown>;
  }
  if (value === undefined) delete cur[path[path.length - 1]!];
  else cur[path[path.length - 1]!] = value;
}

export function getPath(obj: unknown, path: string[]): unknown {
  let cur: unknown = obj;
  for (const key of path) {
    if (!cur || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

export function applyEnvOverrides(
  raw: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
): Record<string, unknown> {
  const copy = structuredClone(raw);
  for (const leaf of configLeaves()) {
    const text = env[leaf.env];
    if (text === undefined) continue;
    setPath(copy, leaf.path, parseLeafValue(leaf, text, leaf.env));
  }
  return copy;
}

// ---------------------------------------------------------------------------------------------------------

export async function loadSecrets(secretsPath: string): Promise<Secrets> {
  let st;
  try {
    st = await stat(secretsPath);
  } catch {
    throw new AttenduxError('SECRETS_INVALID', `secrets file ${secretsPath} does not exist`, {
      hint: 'run `attendux init`, or restore it with `attendux restore --config-only`',
    });
  }
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    throw new AttenduxError(
      'SECRETS_INSECURE',
      `secrets file ${secretsPath} is readable by others (mode ${(st.mode & 0o777).toString(8)})`,
      { hint: `run: chmod 600 ${secretsPath}` },
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(secretsPath, 'utf8'));
  } catch (err) {
    throw new AttenduxError('SECRETS_INVALID', `${secretsPath}: not valid JSON`, { cause: err });
  }
  const result = SecretsSchema.safeParse(raw);
  if (!result.success) {
    throw new AttenduxError('SECRETS_INVALID', `${secretsPath}: ${describeIssue(result.error.issues[0])}`);
  }
  if (!result.data.dataKeys[result.data.activeDataKeyId]) {
    throw new AttenduxError('SECRETS_INVALID', `${secretsPath}: activeDataKeyId names no key in dataKeys`);
  }
  return result.data;
}

/** Secrets with every key an install needs, including those added after the install was made. */
export type InstallSecrets = Secrets & { signingKey: string; auditKey: string };

/**
 * Add keys that installs made by older versions lack (signing key, audit key), rewriting the secrets file
 * atomically with its 0600 mode; existing keys are never replaced. Returns the complete secrets.
 */
export async function ensureInstallKeys(secretsPath: string, secrets: Secrets): Promise<InstallSecrets> {
  if (secrets.signingKey && secrets.auditKey) return secrets as InstallSecrets;
  const { generateSigningKey } = await import('../../crypto/signing.js');
  const { randomKey } = await import('../../crypto/random.js');
  const { writeFileAtomic } = await import('../../lib/fs.js');
  // Re-read under the same name: another process may have just added them; keep what is there.
  const current = await loadSecrets(secretsPath);
  const next: Secrets = {
    ...current,
    signingKey: current.signingKey ?? generateSigningKey(),
    auditKey: current.auditKey ?? randomKey(),
  };
  await writeFileAtomic(secretsPath, JSON.stringify(next, null, 2) + '\n', 0o600);
  return next as InstallSecrets;
}
