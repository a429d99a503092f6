import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { dirname, isAbsolute, resolve } from 'node:path';
import { AttenduxError } from '../../errors.js';
import type { LoadedConfig } from '../config/load.js';
import { targetEnv, type TargetConfig, type TargetSecrets } from './schema.js';

/** One file on a target, by its name relative to the target's root (path or bucket prefix). */
export interface RemoteFile {
  name: string;
  bytes: number;
}

export interface PutOptions {
  bytes: number;
  onBytes?: (n: number) => void;
  /** S3 Object Lock: keep the object until then (ignored where the target has no such thing). */
  retainUntil?: Date;
}

/**
 * What every kind of target offers. Uploads are whole-or-nothing where the target allows it: dir and sftp
 * write a temporary name and rename it, S3 makes an object visible only when its (multipart) upload
 * completes. Everything streams: memory does not grow with the file.
 */
export interface OffsiteTarget {
  readonly name: string;
  readonly type: TargetConfig['type'];
  /** e.g. sftp://attendux@backup.example.org:22/srv/backups (never a credential). */
  readonly url: string;
  list(): Promise<RemoteFile[]>;
  /** Upload a local file (the data file): temporary name first where possible. */
  putFile(localPath: string, name: string, opts: PutOptions): Promise<void>;
  /** Upload a small file (the sidecar). */
  putBytes(name: string, data: Buffer, opts?: { retainUntil?: Date }): Promise<void>;
  /** Stream a file's content (verify, download). */
  read(name: string): Promise<Readable>;
  remove(name: string): Promise<void>;
  /** Temporary files of uploads that never finished (dir and sftp only). */
  leftovers?(): Promise<string[]>;
  /** S3 Object Lock state of the bucket (s3 only). */
  objectLock?(): Promise<{ enabled: boolean; mode?: 'GOVERNANCE' | 'COMPLIANCE' }>;
  close(): Promise<void>;
}

/** Temporary upload names: hidden, unmistakably incomplete, never matching a backup file name. */
export const tempName = (name: string) => `.${name}.part-${randomBytes(4).toString('hex')}`;
export const isTempName = (name: string) => /^\..+\.part-[0-9a-f]{8}$/.test(name);

export interface TargetCredentials {
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  password?: string;
  passphrase?: string;
}

/** Credentials of a target: the secrets file first, then ATTENDUX_TARGET_<NAME>_* (the SDK reads AWS_*). */
export function targetCredentials(
  t: TargetConfig,
  secrets: TargetSecrets | undefined,
  env: NodeJS.ProcessEnv = process.env,
): TargetCredentials {
  const s = secrets?.[t.name] ?? {};
  const pick = (k: keyof TargetCredentials) => s[k] ?? env[targetEnv(t.name, k)];
  return {
    accessKeyId: pick('accessKeyId'),
    secretAccessKey: pick('secretAccessKey'),
    sessionToken: pick('sessionToken'),
    password: pick('password'),
    passphrase: pick('passphrase'),
  };
}

/** Relative paths in a target (dir path, key file) are relative to the config file, like every path. */
export function resolveTargetPaths(t: TargetConfig, configPath: string): TargetConfig {
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(dirname(configPath), p));
  if (t.type === 'dir') return { ...t, path: abs(t.path) };
  if (t.type === 'sftp' && t.privateKeyFile) return { ...t, privateKeyFile: abs(t.privateKeyFile) };
  return t;
}

export function findTarget(loaded: LoadedConfig, name: string): TargetConfig {
  const t = loaded.config.backup.targets.find((x) => x.name === name);
  if (!t)
    throw new AttenduxError('NOT_FOUND', `no backup target "${name}" in backup.targets`, {
      hint: loaded.config.backup.targets.length
        ? `configured targets: ${loaded.config.backup.targets.map((x) => x.name).join(', ')}`
        : 'add one to backup.targets (see "Off-site copies" in the README)',
    });
  return resolveTargetPaths(t, loaded.path);
}

/** Open a target (connects for sftp; S3 clients connect per request). */
export async function openTarget(t: TargetConfig, creds: TargetCredentials): Promise<OffsiteTarget> {
  switch (t.type) {
    case 'dir':
      return (await import('./dir.js')).openDirTarget(t);
    case 'sftp':
      return (await import('./sftp.js')).openSftpTarget(t, creds);
    case 's3':
      return (await import('./s3.js')).openS3Target(t, creds);
  }
}

/** The one error for "the target failed": which target, what it said. */
export function offsiteError(t: { name: string }, what: string, err: unknown): AttenduxError {
  if (err instanceof AttenduxError && (err.code === 'OFFSITE_HOST_KEY' || err.code === 'OFFSITE_FAILED'))
    return err;
  const msg = (err as Error)?.message ?? String(err);
  return new AttenduxError('OFFSITE_FAILED', `target ${t.name}: ${what}: ${msg}`, {
    cause: err,
    hint: 'check that the target is reachable and its credentials; `attendux backup sync` copies what is missing',
  });
}

export interface CredentialCheck {
  target: string;
  /** Something that will make every copy fail: no credential at all, an unreadable or open key file. */
  errors: string[];
  /** Something to look at, e.g. S3 credentials left to the SDK's default chain (an instance role?). */
  warnings: string[];
}

/**
 * What `config validate` and `doctor` say about the targets' credentials, without contacting any target:
 * where each one's credentials would come from, and what is missing.
 */
export async function checkTargetCredentials(
  loaded: LoadedConfig,
  secrets: TargetSecrets | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<CredentialCheck[]> {
  const { stat } = await import('node:fs/promises');
  const out: CredentialCheck[] = [];
  for (const raw of loaded.config.backup.targets) {
    const t = resolveTargetPaths(raw, loaded.path);
    const c = targetCredentials(t, secrets, env);
    const r: CredentialCheck = { target: t.name, errors: [], warnings: [] };
    if (t.type === 'sftp') {
      if (t.privateKeyFile) {
        const st = await stat(t.privateKeyFile).catch(() => null); // missing: the error pushed below
        if (!st) r.errors.push(`backup.targets ${t.name}: privateKeyFile ${t.privateKeyFile} does not exist`);
        else if ((st.mode & 0o077) !== 0)
          r.errors.push(
            `backup.targets ${t.name}: privateKeyFile ${t.privateKeyFile} is readable by others (chmod 600 it)`,
          );
      } else if (!c.password)
        r.errors.push(
          `backup.targets ${t.name}: no SFTP credentials: set privateKeyFile, or backupTargets.${t.name}.password in the secrets file, or $${targetEnv(t.name, 'password')}`,
        );
    } else if (t.type === 's3') {
      if ((c.accessKeyId === undefined) !== (c.secretAccessKey === undefined))
        r.errors.push(
          `backup.targets ${t.name}: accessKeyId and secretAccessKey must be given together (backupTargets.${t.name} in the secrets file)`,
        );
      else if (
        !c.accessKeyId &&
        !env.AWS_ACCESS_KEY_ID &&
        !env.AWS_PROFILE &&
        !env.AWS_WEB_IDENTITY_TOKEN_FILE
      )
        r.warnings.push(
          `backup.targets ${t.name}: no S3 credentials in the secrets file (backupTargets.${t.name}.accessKeyId/secretAccessKey) or AWS_ACCESS_KEY_ID/AWS_PROFILE; the AWS SDK will try ~/.aws and an instance role`,
        );
    }
    out.push(r);
  }
  return out;
}
