import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { AttenduxError } from '../../errors.js';
import { writeFileAtomic } from '../../lib/fs.js';
import {
  applyEnvOverrides,
  configLeaves,
  findConfigPath,
  findLeaf,
  getPath,
  loadSecrets,
  parseLeafValue,
  readRawConfig,
  resolvePaths,
  setPath,
  validateConfig,
  type ConfigLocation,
} from './load.js';

export interface SetResult {
  path: string;
  key: string;
  previous: unknown;
  value: unknown;
  changed: boolean;
  /** Copy of the file before the change, kept for config backups. */
  historyFile?: string;
}

function requireLeaf(key: string) {
  const leaf = findLeaf(key);
  if (!leaf) {
    throw new AttenduxError('USAGE', `unknown config key "${key}"`, {
      hint: `keys: ${configLeaves()
        .map((l) => l.path.join('.'))
        .join(', ')}`,
    });
  }
  return leaf;
}

/**
 * Change one key of the config file: validated as a whole before anything is written, written atomically
 * with its mode kept, and the previous version kept in <dataDir>/config-history.
 */
export async function setConfigValue(
  loc: ConfigLocation,
  key: string,
  text: string | undefined,
): Promise<SetResult> {
  const leaf = requireLeaf(key);
  const path = await findConfigPath(loc);
  const raw = await readRawConfig(path);
  const previous = getPath(raw, leaf.path);
  const next = structuredClone(raw);
  const value = text === undefined ? undefined : parseLeafValue(leaf, text, key);
  setPath(next, leaf.path, value);
  const validated = validateConfig(next, path);
  if (JSON.stringify(previous) === JSON.stringify(value))
    return { path, key, previous, value, changed: false };

  const { config } = resolvePaths(path, validated);
  const history = join(config.dataDir, 'config-history');
  await mkdir(history, { recursive: true, mode: 0o700 });
  const historyFile = join(history, `${new Date().toISOString().replace(/[:.]/g, '-')}-attendux.json`);
  await copyFile(path, historyFile);
  await writeFileAtomic(path, JSON.stringify(next, null, 2) + '\n');
  return { path, key, previous, value, changed: true, historyFile };
}

/** The effective value (file, defaults, ATTENDUX_* overrides) of one key, or the whole config. */
export async function getConfigValue(loc: ConfigLocation, key?: string): Promise<unknown> {
  const path = await findConfigPath(loc);
  const raw = applyEnvOverrides(await readRawConfig(path), loc.env ?? process.env);
  const { config } = resolvePaths(path, validateConfig(raw, path));
  if (!key) return config;
  const leaf = findLeaf(key);
  if (leaf) return getPath(config, leaf.path);
  const value = getPath(config, key.split('.'));
  if (value === undefined) throw new AttenduxError('USAGE', `unknown config key "${key}"`);
  return value;
}

export interface ValidateResult {
  path: string;
  secretsPath: string;
  ok: true;
  /** Things to look at that do not make the config invalid (e.g. where S3 credentials come from). */
  warnings?: string[];
}

/** Validate the config and its secrets file (existence, JSON, mode 0600); throws the first problem. */
export async function validateConfigFile(loc: ConfigLocation): Promise<ValidateResult> {
  const path = await findConfigPath(loc);
  const raw = applyEnvOverrides(await readRawConfig(path), loc.env ?? process.env);
  const loaded = resolvePaths(path, validateConfig(raw, path));
  const secrets = await loadSecrets(loaded.secretsPath);
  // backup.targets: credentials live in the secrets file or the environment; say what is missing.
  const { checkTargetCredentials } = await import('../offsite/target.js');
  const checks = await checkTargetCredentials(loaded, secrets.backupTargets, loc.env ?? process.env);
  const errors = checks.flatMap((c) => c.errors);
  if (errors.length)
    throw new AttenduxError('CONFIG_INVALID', `${path}: ${errors.join('; ')}`, {
      hint: 'see "Off-site copies" in the README for where target credentials go',
      details: { problems: errors },
    });
  const warnings = checks.flatMap((c) => c.warnings);
  return { path, secretsPath: loaded.secretsPath, ok: true, ...(warnings.length ? { warnings } : {}) };
}
