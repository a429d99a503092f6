/**
 * The audit log's operations, one module per concern (issue 13); this module only gathers them for the
 * callers outside src/core/audit (CLI, backup, restore, migrate) so that they need one import.
 */
export {
  resolveTenant,
  loadCheckpoints,
  verifyAudit,
  verifyAuditChains,
  checkpointNow,
  type VerifyOptions,
} from './chains.js';
export { verifyWith } from './verify.js';
export { auditForBackup, backupAuditWarning, type BackupAudit } from './backup.js';
export { parseDuration, purgeAudit, type PurgeResult } from './purge.js';
export { rechainAudit, type RechainResult } from './rechain.js';
export { streamAuditLog, csvLine, CSV_COLUMNS, type LogRow } from './log.js';
export { exportAudit, type ExportEntry, type ExportManifest } from './export.js';
export { verifyExportFile, type FileVerifyResult } from './export-verify.js';
