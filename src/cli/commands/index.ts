import type { Command } from 'commander';
import { registerInit } from './init.js';
import { registerQuickstart } from './quickstart.js';
import { registerMigrate } from './migrate.js';
import { registerConfig } from './config.js';
import { registerTenant } from './tenant.js';
import { registerUser } from './user.js';
import { registerApiKey } from './apikey.js';
import { registerServe } from './serve.js';
import { registerKeys } from './keys.js';
import { registerBackup } from './backup.js';
import { registerRestore } from './restore.js';
import { registerSchedule } from './schedule.js';
import { registerAudit } from './audit.js';
import { registerDoctor } from './doctor.js';
import { registerRetention } from './retention.js';
import { registerTenantData } from './tenant-data.js';
import { registerDsar } from './dsar.js';

/** Each module only declares flags; the work it does is imported lazily when the command runs. */
export function registerCommands(program: Command): void {
  registerInit(program);
  registerQuickstart(program);
  registerMigrate(program);
  registerConfig(program);
  registerTenant(program);
  registerUser(program);
  registerApiKey(program);
  registerServe(program);
  registerKeys(program);
  registerBackup(program);
  registerRestore(program);
  registerSchedule(program);
  registerAudit(program);
  registerDoctor(program);
  registerRetention(program);
  registerTenantData(program);
  registerDsar(program);
}
