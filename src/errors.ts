/**
 * The one error type of attendux. Core code throws it; only the CLI entry point turns it into an exit code,
 * and only the server's error handler into an HTTP status.
 * Every code is listed in ERROR_CODES with its HTTP status, exit code and a line of documentation (in the
 * manner of Fastify's `createError(code, message, statusCode)`), so that the README's error table, the
 * server and the CLI cannot drift apart (unit tests check this). A code the server never answers with on
 * purpose has status 500: if it reaches a client, it is a bug.
 */
export const ERROR_CODES = {
  USAGE: { httpStatus: 400, exitCode: 2, doc: 'A flag, argument or value on the command line is wrong.' },
  NOT_A_TTY: {
    httpStatus: 500,
    exitCode: 2,
    doc: 'An interactive question was needed but there is no terminal; pass the flags.',
  },
  CONFIRMATION_REQUIRED: {
    httpStatus: 500,
    exitCode: 2,
    doc: 'A destructive command needs --yes when no terminal can confirm.',
  },
  ABORTED: { httpStatus: 500, exitCode: 1, doc: 'The user answered no at a confirmation prompt.' },
  CONFIG_NOT_FOUND: {
    httpStatus: 500,
    exitCode: 2,
    doc: 'No configuration file was found at any of the lookup places.',
  },
  CONFIG_INVALID: {
    httpStatus: 500,
    exitCode: 2,
    doc: 'The configuration file or an ATTENDUX_* override is invalid.',
  },
  CONFIG_EXISTS: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'init found an existing install and --force was not given.',
  },
  SECRETS_INSECURE: { httpStatus: 500, exitCode: 1, doc: 'The secrets file is readable by group or others.' },
  SECRETS_INVALID: { httpStatus: 500, exitCode: 1, doc: 'The secrets file is missing or malformed.' },
  DB_UNAVAILABLE: { httpStatus: 503, exitCode: 1, doc: 'PostgreSQL could not be reached or started.' },
  DB_ERROR: { httpStatus: 500, exitCode: 1, doc: 'PostgreSQL refused an operation.' },
  MIGRATION_FAILED: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'A schema migration failed; nothing of it was applied.',
  },
  SCHEMA_OUTDATED: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'The database has pending migrations; run `attendux migrate up`.',
  },
  NOT_FOUND: { httpStatus: 404, exitCode: 1, doc: 'The named company, user, key or backup does not exist.' },
  ALREADY_EXISTS: { httpStatus: 409, exitCode: 1, doc: 'An object with that name already exists.' },
  IO_ERROR: { httpStatus: 500, exitCode: 1, doc: 'A file could not be read or written.' },
  DECRYPT_FAILED: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'Encrypted data failed authentication: wrong key, or it was damaged or tampered with.',
  },
  VALIDATION_FAILED: {
    httpStatus: 400,
    exitCode: 2,
    doc: 'A request body, query string or path parameter is invalid (HTTP 400).',
  },
  UNAUTHENTICATED: { httpStatus: 401, exitCode: 1, doc: 'No valid session cookie or API key (HTTP 401).' },
  SESSION_EXPIRED: {
    httpStatus: 401,
    exitCode: 1,
    doc: 'The session was idle too long or was revoked; log in again (HTTP 401).',
  },
  LOGIN_FAILED: {
    httpStatus: 401,
    exitCode: 1,
    doc: 'Wrong company, email or password, or the account is locked (HTTP 401).',
  },
  FORBIDDEN: {
    httpStatus: 403,
    exitCode: 1,
    doc: 'The role or API-key scope does not allow this request (HTTP 403).',
  },
  CSRF_REJECTED: {
    httpStatus: 403,
    exitCode: 1,
    doc: 'A cookie request that changes state lacks an allowed Origin (HTTP 403).',
  },
  RATE_LIMITED: {
    httpStatus: 429,
    exitCode: 1,
    doc: 'Too many requests from this address; retry later (HTTP 429).',
  },
  MAINTENANCE: {
    httpStatus: 503,
    exitCode: 1,
    doc: 'The server is in maintenance mode (e.g. a restore); retry later (HTTP 503).',
  },
  CONFLICT: {
    httpStatus: 409,
    exitCode: 1,
    doc: 'The request conflicts with the current state of the object (HTTP 409).',
  },
  PAYLOAD_TOO_LARGE: {
    httpStatus: 413,
    exitCode: 1,
    doc: 'The request body exceeds the size limit (HTTP 413).',
  },
  UNSUPPORTED_MEDIA: {
    httpStatus: 415,
    exitCode: 1,
    doc: 'The request body is not application/json (HTTP 415).',
  },
  OUTSIDE_GEOFENCE: {
    httpStatus: 422,
    exitCode: 1,
    doc: 'The position is outside every site and the company rejects it (HTTP 422).',
  },
  POSITION_REQUIRED: {
    httpStatus: 422,
    exitCode: 1,
    doc: 'The company requires a GPS position for check-ins (HTTP 422).',
  },
  FACE_MISMATCH: {
    httpStatus: 422,
    exitCode: 1,
    doc: 'The face vector does not match the enrolled template (HTTP 422).',
  },
  FACE_NOT_ENROLLED: {
    httpStatus: 422,
    exitCode: 1,
    doc: 'A face check was required but no template is enrolled (HTTP 422).',
  },
  DATA_KEY_UNKNOWN: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'Data sealed under a data-encryption key id the secrets file does not hold.',
  },
  BACKUP_NO_RECIPIENTS: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'No age recipient in backup.recipients: backups cannot be encrypted.',
  },
  BACKUP_DIR_UNWRITABLE: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'The backup directory cannot be created or written.',
  },
  BACKUP_LOCKED: {
    httpStatus: 500,
    exitCode: 75,
    doc: 'Another backup is running (lock file or advisory lock); retry later.',
  },
  BACKUP_NO_FULL: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'An incremental needs a full backup first (or pass --full-if-needed).',
  },
  BACKUP_CHAIN_BROKEN: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'The parent of an incremental is missing, damaged or not usable.',
  },
  BACKUP_FAILED: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'A backup run failed (database lost, disk full); nothing was recorded.',
  },
  BACKUP_CORRUPT: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'A backup file does not match its checksums, manifest or sidecar.',
  },
  BACKUP_BAD_IDENTITY: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'The age identity is unreadable or matches no recipient of the backup.',
  },
  BACKUP_UNSIGNED: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'A backup has no signature (made before signing, or forged); set ATTENDUX_ALLOW_UNSIGNED_BACKUPS=1 to accept.',
  },
  BACKUP_BAD_SIGNATURE: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'A backup is not signed by a trusted install signing key: it is forged or altered.',
  },
  BACKUP_STALE: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'backup status: a kind is stale or its last run failed.',
  },
  RESTORE_CHAIN_BROKEN: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'The backups to restore do not form an intact chain; nothing was restored.',
  },
  RESTORE_NO_BACKUP: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'No backup matches the restore target (--backup, --at, or none at all).',
  },
  RESTORE_NEWER_SCHEMA: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'The backup is from a newer schema than this attendux knows; upgrade first.',
  },
  RESTORE_WRONG_SCHEMA: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'restore --tenant needs a backup of the live database’s schema version.',
  },
  RESTORE_TARGET_EXISTS: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'The target database or file exists and holds data; pass --force to replace.',
  },
  RESTORE_FAILED: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'A restore failed part way; the live database is unchanged.',
  },
  RESTORE_IN_PROGRESS: {
    httpStatus: 500,
    exitCode: 75,
    doc: 'An in-place restore is still running (see its journal); retry later.',
  },
  RESTORE_DRILL_FAILED: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'restore --drill: a check of the restored copy failed (see the report).',
  },
  JOB_LOCKED: {
    httpStatus: 500,
    exitCode: 75,
    doc: 'schedule exec: the previous run of this job is still going; retry later.',
  },
  JOB_FAILED: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'schedule exec: the job ran and failed (the notify hook was run).',
  },
  JOB_UNAVAILABLE: {
    httpStatus: 500,
    exitCode: 2,
    doc: 'The job is disabled, unknown, or its command is not in this version.',
  },
  SCHEDULE_UNHEALTHY: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'schedule status: a job is overdue or its last run failed.',
  },
  OFFSITE_FAILED: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'An off-site target is unreachable, refused a transfer or holds a bad copy.',
  },
  OFFSITE_HOST_KEY: {
    httpStatus: 500,
    exitCode: 1,
    doc: "The SFTP server's host key is not the configured hostKeyFingerprint.",
  },
  AUDIT_BROKEN: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'audit verify: a chain has a broken link or disagrees with a checkpoint.',
  },
  TENANT_DELETED: {
    httpStatus: 410,
    exitCode: 1,
    doc: 'The company was deleted (`tenant delete`); a company restore does not bring it back.',
  },
  DSAR_OVERDUE: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'dsar list: a data subject request is past its due date.',
  },
  DSAR_PLAN_CHANGED: {
    httpStatus: 409,
    exitCode: 1,
    doc: 'dsar erase: the data changed between the plan and its execution; nothing was erased.',
  },
  DSAR_EXTEND_REFUSED: {
    httpStatus: 409,
    exitCode: 1,
    doc: 'dsar extend: the request is closed or was already extended once.',
  },
  DOCTOR_FAILED: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'doctor: at least one check failed (see its fix line).',
  },
  INTERNAL: {
    httpStatus: 500,
    exitCode: 1,
    doc: 'A bug: an unexpected error. Run again with --debug and report it.',
  },
} as const satisfies Record<string, { httpStatus: number; exitCode: number; doc: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface AttenduxErrorOptions {
  hint?: string;
  exitCode?: number;
  cause?: unknown;
  /** Extra machine-readable facts printed with --json (for example the pid holding a lock). */
  details?: Record<string, unknown>;
  /** The command already printed its result (e.g. a failing status report): with --json print no error object. */
  resultPrinted?: boolean;
}

export class AttenduxError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: number;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;
  readonly resultPrinted: boolean;

  constructor(code: ErrorCode, message: string, options: AttenduxErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = 'AttenduxError';
    this.code = code;
    this.exitCode = options.exitCode ?? ERROR_CODES[code].exitCode;
    this.hint = options.hint;
    this.details = options.details;
    this.resultPrinted = options.resultPrinted ?? false;
  }
}

export function isAttenduxError(err: unknown): err is AttenduxError {
  return err instanceof AttenduxError;
}
