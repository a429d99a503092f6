import { z } from 'zod';
import { cronProblem, isTimeZone } from '../schedule/cron.js';
import { DEFAULT_JOB_IDS } from '../schedule/jobs.js';
import { TargetSecretsSchema, TargetsSchema } from '../offsite/schema.js';

/**
 * The shape of attendux.json. Every object is strict: an unknown key is an error that names it, because a
 * misspelt key silently falling back to a default is how backups end up in the wrong place.
 * Relative paths are resolved against the directory of the config file.
 */
const port = z.number().int().min(1).max(65535);

/** A cron expression, checked by cron-parser at load: a bad one names itself and the key (exit 2). */
const cronExpr = z.string().superRefine((v, ctx) => {
  const problem = cronProblem(v);
  if (problem) ctx.addIssue({ code: 'custom', message: `invalid cron expression "${v}": ${problem}` });
});
const timeZone = z.string().superRefine((v, ctx) => {
  if (!isTimeZone(v)) ctx.addIssue({ code: 'custom', message: `unknown time zone "${v}"` });
});
/** The placeholder security contact; `serve` warns while it is still configured. */
export const DEFAULT_SECURITY_CONTACT = 'mailto:security@example.invalid';

export const DatabaseSchema = z
  .strictObject({
    /** The server's connection: an unprivileged role subject to row-level security. */
    url: z.string().optional(),
    /** Migrations, backups, restore, DSAR: the role that owns the schema. */
    adminUrl: z.string().optional(),
    /** Name of the unprivileged role the server connects as; migrations grant to it. */
    appRole: z
      .string()
      .regex(/^[a-z_][a-z0-9_]{0,62}$/)
      .default('attendux_app'),
    poolSize: z.number().int().min(1).max(200).default(10),
    /**
     * database.url leads to pgbouncer in transaction mode: the server sends no named prepared statements
     * and keeps no session state (pgbouncer 1.18 cannot carry either across transactions).
     */
    pgbouncer: z.boolean().default(false),
    embedded: z
      .strictObject({
        port: port.default(54329),
      })
      .default({ port: 54329 }),
  })
  // Both connections or neither (the embedded default): half a configuration is a mistake, not a choice.
  .superRefine((db, ctx) => {
    if (db.url && !db.adminUrl)
      ctx.addIssue({ code: 'custom', path: ['adminUrl'], message: 'is required when database.url is set' });
    if (db.adminUrl && !db.url)
      ctx.addIssue({ code: 'custom', path: ['url'], message: 'is required when database.adminUrl is set' });
  });

export const ServerSchema = z.strictObject({
  host: z.string().default('127.0.0.1'),
  port: port.default(8080),
  /** Set when running behind nginx/Caddy so X-Forwarded-* headers are believed. */
  trustProxy: z.boolean().default(false),
  /** Origins allowed on state-changing cookie requests (CSRF), e.g. https://attendance.example.com */
  allowedOrigins: z.array(z.string()).default([]),
  tlsCert: z.string().optional(),
  tlsKey: z.string().optional(),
  sessionIdleMinutes: z
    .number()
    .int()
    .min(1)
    .max(7 * 24 * 60)
    .default(30),
  maxFailedLogins: z.number().int().min(1).max(100).default(5),
  lockoutMinutes: z
    .number()
    .int()
    .min(1)
    .max(24 * 60)
    .default(15),
  securityContact: z.string().default(DEFAULT_SECURITY_CONTACT),
  /**
   * The server's public URL (e.g. https://attendance.example.com): the origin CSRF checks accept besides
   * allowedOrigins, and the Canonical of security.txt. Without it only the loopback names at the port the
   * request arrived on count as the server's own origin, never the request's Host header.
   */
  publicUrl: z
    .url({ protocol: /^https?$/ })
    .refine((u) => new URL(u).pathname === '/' && !new URL(u).search, 'must be an origin (no path or query)')
    .optional(),
  /** Per-IP limit on every route (authenticated ones included) per minute; /healthz is exempt. */
  rateLimitPerMinute: z.number().int().min(1).max(1_000_000_000).default(6000),
  /** Bearer token that opens /metrics to non-loopback clients; without it /metrics answers loopback only. */
  metricsToken: z.string().min(16).optional(),
  /** Per-IP limit on POST /api/v1/auth/login, checked before the body is read. */
  loginRateLimitPerMinute: z.number().int().min(1).max(100_000).default(10),
  /** Per-IP limit on the other unauthenticated endpoints (login page, readyz, metrics, security.txt). */
  publicRateLimitPerMinute: z.number().int().min(1).max(1_000_000).default(300),
  /**
   * Redis shared by every serve instance for the rate limits (redis://[user:pass@]host:port[/db], rediss://
   * for TLS). Without it each process counts alone. An unreachable Redis fails open (README, Scale-out).
   */
  redisUrl: z
    .string()
    .refine((v) => /^rediss?:$/.test(URL.parse(v)?.protocol ?? ''), 'must be a redis:// or rediss:// URL')
    .optional(),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export const BackupSchema = z.strictObject({
  /** Defaults to <dataDir>/backups. */
  dir: z.string().optional(),
  /** age X25519 public keys (age1...). Every backup is encrypted to all of them. */
  recipients: z.array(z.string().regex(/^age1[0-9a-z]+$/, 'must be an age public key (age1...)')).default([]),
  /**
   * Public halves (`ed25519:...`) of install signing keys whose backups restore and verify accept, besides
   * this install's own (e.g. the old server's, after moving).
   */
  signingPublicKeys: z
    .array(z.string().regex(/^ed25519:[A-Za-z0-9+/]{43}=$/, 'must be an attendux public key (ed25519:...)'))
    .default([]),
  /** Optional path to an age identity on this server, for unattended restore drills (doctor warns). */
  identityFile: z.string().optional(),
  retention: z
    .strictObject({
      fullDays: z.number().int().min(1).default(30),
      incrementalDays: z.number().int().min(1).default(7),
      configDays: z.number().int().min(1).default(90),
    })
    .default({ fullDays: 30, incrementalDays: 7, configDays: 90 }),
  schedule: z
    .strictObject({
      full: cronExpr.default('0 2 * * *'),
      incremental: cronExpr.default('0 */6 * * *'),
      timeZone: timeZone.default('UTC'),
    })
    .default({ full: '0 2 * * *', incremental: '0 */6 * * *', timeZone: 'UTC' }),
  /** backup status calls a kind stale after this many hours without a successful run. */
  staleAfterHours: z
    .strictObject({
      full: z.number().positive().default(26),
      incremental: z.number().positive().default(7),
    })
    .default({ full: 26, incremental: 7 }),
  /** Off-site copies: s3, sftp or dir targets every backup is also copied to (src/core/offsite). */
  targets: TargetsSchema,
});

export const AuditSchema = z.strictObject({
  retentionDays: z.number().int().min(1).default(365),
  /** The server signs a checkpoint of every chain that moved after this many appended entries... */
  checkpointEveryEntries: z.number().int().min(1).max(10_000_000).default(1000),
  /** ...or after this many minutes, whichever comes first (backups and purges always sign one). */
  checkpointEveryMinutes: z.number().int().min(1).max(1440).default(15),
});

/** One job of `attendux schedule`: a built-in one (see src/core/schedule/jobs.ts) or an admin's own. */
export const JobSchema = z.strictObject({
  cron: cronExpr.optional(),
  enabled: z.boolean().optional(),
  /** Overdue this many minutes after a scheduled time that did not run. */
  graceMinutes: z.number().min(0).optional(),
  /** Killed (and failed) after this long; default 360. */
  timeoutMinutes: z.number().positive().optional(),
  /** An admin's own job: a program and its arguments (no shell), run with the same lock, record and hook. */
  exec: z.array(z.string().min(1)).min(1).optional(),
  description: z.string().optional(),
});

export const ScheduleSchema = z
  .strictObject({
    /** Time zone of every job's expression; default backup.schedule.timeZone. */
    timeZone: timeZone.optional(),
    /** node_exporter textfile (`schedule status --prometheus`) refreshed after every job run. */
    prometheusFile: z.string().optional(),
    jobs: z
      .record(z.string().regex(/^[a-z][a-z0-9-]{0,40}$/, 'job names are a-z, 0-9 and -'), JobSchema)
      .default({}),
  })
  .superRefine((s, ctx) => {
    for (const [id, job] of Object.entries(s.jobs)) {
      const builtIn = DEFAULT_JOB_IDS.includes(id);
      if (builtIn && job.exec)
        ctx.addIssue({
          code: 'custom',
          path: ['jobs', id, 'exec'],
          message: `job "${id}" is built in: its command cannot be replaced (add a job under another name)`,
        });
      if (!builtIn && (!job.exec || !job.cron))
        ctx.addIssue({
          code: 'custom',
          path: ['jobs', id],
          message: `unknown job "${id}": a job of your own needs "cron" and "exec" (built-in jobs: ${DEFAULT_JOB_IDS.join(', ')})`,
        });
    }
  });

export const NotifySchema = z.strictObject({
  /** Run when a job fails or becomes overdue, with the job's JSON result on stdin: a shell line or an argv. */
  command: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
  timeoutSeconds: z.number().int().min(1).max(3600).default(30),
  /** healthchecks.io-style URL ({job} is replaced by the job's name): /start, then itself or /fail. */
  pingUrl: z
    .string()
    .refine(
      (v) => /^https?:\/\/[^\s]+$/.test(v) && URL.canParse(v.replaceAll('{job}', 'x')),
      'must be an http(s) URL',
    )
    .optional(),
});

export const ConfigSchema = z.strictObject({
  /** Embedded PostgreSQL cluster, default backup dir, lock files. */
  dataDir: z.string().default('/var/lib/attendux'),
  /** The 0600 secrets file; defaults to attendux.secrets.json beside the config file. */
  secretsFile: z.string().optional(),
  database: DatabaseSchema.default(DatabaseSchema.parse({})),
  server: ServerSchema.default(ServerSchema.parse({})),
  backup: BackupSchema.default(BackupSchema.parse({})),
  audit: AuditSchema.default(AuditSchema.parse({})),
  schedule: ScheduleSchema.default({ jobs: {} }),
  notify: NotifySchema.default({ timeoutSeconds: 30 }),
});

export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;

const base64Key = z.string().regex(/^[A-Za-z0-9+/]{43}=$/, 'must be 32 bytes, base64');

export const SecretsSchema = z.strictObject({
  /** Signs session cookies. */
  sessionKey: base64Key,
  /** HMAC-SHA256 key for API-key secrets. */
  apiKeyHmacKey: base64Key,
  /** Pepper for hashing IP addresses and user agents in the audit log. */
  auditPepper: base64Key,
  /** AES-256-GCM data-encryption keys by id (face templates). */
  dataKeys: z.record(z.string().regex(/^[a-z0-9-]{1,32}$/), base64Key),
  activeDataKeyId: z.string(),
  /**
   * Install signing key (Ed25519, base64 PKCS#8 DER): signs backup manifests and audit checkpoints.
   * Optional in the schema only so installs made before it existed still load; `openInstall` adds it.
   */
  signingKey: z
    .string()
    .regex(/^[A-Za-z0-9+/]+=*$/, 'must be base64 PKCS#8 DER')
    .optional(),
  /** HMAC-SHA256 key of the audit chain; never stored in the database. Added like signingKey. */
  auditKey: base64Key.optional(),
  /** Credentials of backup.targets by target name (S3 keys, SFTP password or key passphrase). */
  backupTargets: TargetSecretsSchema.optional(),
  database: z
    .strictObject({
      /** Password of the embedded cluster's superuser. */
      superuserPassword: z.string().optional(),
      adminPassword: z.string().optional(),
      appPassword: z.string().optional(),
    })
    .default({}),
});

export type Secrets = z.infer<typeof SecretsSchema>;
