import { z } from 'zod';

/**
 * `backup.targets`: where every backup is also copied. Credentials never live here (the config is readable
 * by more people and processes than the 0600 secrets file, and ends up in config backups that are copied
 * off-site too): S3 keys and SFTP passwords go in the secrets file (`backupTargets.<name>`) or the
 * environment. A key *file*'s path is fine; its content is not.
 */
const name = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, 'must be 1-32 lower-case letters, digits, - or _ (it names env vars)');
/** Path prefix inside the bucket or on the server: no leading slash games, no `..`. */
const remotePath = z
  .string()
  .refine((p) => !p.split('/').includes('..'), 'must not contain ".."')
  .refine((p) => !p.includes('\0'), 'must not contain NUL');

const common = {
  name,
  /** Attempts per file after the first failure (backoff 1 s, 2 s, 4 s, ... capped at 30 s). */
  retries: z.number().int().min(0).max(10).default(3),
};

export const DirTargetSchema = z.strictObject({
  ...common,
  type: z.literal('dir'),
  /** A mounted path (NFS, a USB disk); relative paths are relative to the config file. */
  path: z.string().min(1),
});

export const SftpTargetSchema = z.strictObject({
  ...common,
  type: z.literal('sftp'),
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(22),
  user: z.string().min(1),
  path: remotePath.min(1),
  /** `SHA256:...` as `ssh-keygen -lf` prints it. Required: no trust on first use. */
  hostKeyFingerprint: z
    .string()
    .regex(/^SHA256:[A-Za-z0-9+/]{43}=?$/, 'must be SHA256:<base64> as printed by `ssh-keygen -lf`'),
  privateKeyFile: z.string().optional(),
  /** Seconds to wait for the connection (TCP + SSH handshake). */
  connectTimeoutSeconds: z.number().int().min(1).max(600).default(20),
});

export const S3TargetSchema = z.strictObject({
  ...common,
  type: z.literal('s3'),
  /** For S3-compatible services (B2, Wasabi, MinIO, R2); omitted for AWS. */
  endpoint: z.string().url().optional(),
  bucket: z.string().min(3).max(63),
  prefix: remotePath.default(''),
  region: z.string().default('us-east-1'),
  /** Path-style URLs (endpoint/bucket/key): MinIO and most self-hosted services need it. */
  pathStyle: z.boolean().default(false),
  storageClass: z.string().optional(),
  /** Multipart part size in MiB (memory per upload is about 4 parts). */
  partSizeMiB: z.number().int().min(5).max(512).default(16),
});

const TargetUnion = z.discriminatedUnion('type', [DirTargetSchema, SftpTargetSchema, S3TargetSchema]);

/** Keys that hold credentials: named explicitly, so the error says where they belong instead of "unknown key". */
const CREDENTIAL_KEYS = [
  'accessKeyId',
  'secretAccessKey',
  'sessionToken',
  'password',
  'passphrase',
  'privateKey',
  'credentials',
  'secret',
  'token',
];

export const TargetSchema = z
  .unknown()
  .superRefine((v, ctx) => {
    if (!v || typeof v !== 'object' || Array.isArray(v)) return;
    const t = v as Record<string, unknown>;
    for (const k of Object.keys(t)) {
      if (!CREDENTIAL_KEYS.includes(k)) continue;
      const n = typeof t.name === 'string' ? t.name : '<name>';
      ctx.addIssue({
        code: 'custom',
        path: [k],
        message:
          `credentials do not belong in the config: put "${k}" in the secrets file under backupTargets.${n}.${k}` +
          (t.type === 's3' ? ' or in the AWS_* environment variables' : ` or in $${targetEnv(n, k)}`) +
          (k === 'privateKey' ? ' (or point privateKeyFile at a 0600 key file)' : ''),
      });
    }
  })
  .pipe(TargetUnion);

export const TargetsSchema = z
  .array(TargetSchema)
  .default([])
  .superRefine((list, ctx) => {
    const seen = new Set<string>();
    list.forEach((t, i) => {
      if (seen.has(t.name))
        ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `target name "${t.name}" is used twice` });
      seen.add(t.name);
    });
  });

/** Per-target credentials in the secrets file (`backupTargets.<name>`). */
export const TargetSecretsSchema = z.record(
  z.string(),
  z.strictObject({
    accessKeyId: z.string().optional(),
    secretAccessKey: z.string().optional(),
    sessionToken: z.string().optional(),
    password: z.string().optional(),
    passphrase: z.string().optional(),
  }),
);

export type DirTarget = z.infer<typeof DirTargetSchema>;
export type SftpTarget = z.infer<typeof SftpTargetSchema>;
export type S3Target = z.infer<typeof S3TargetSchema>;
export type TargetConfig = z.infer<typeof TargetUnion>;
export type TargetSecrets = z.infer<typeof TargetSecretsSchema>;

/** ATTENDUX_TARGET_<NAME>_<KEY>: e.g. ATTENDUX_TARGET_OFFSITE_PASSWORD. */
export function targetEnv(name: string, key: string): string {
  const snake = key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
  return `ATTENDUX_TARGET_${name.toUpperCase().replace(/-/g, '_')}_${snake}`;
}
