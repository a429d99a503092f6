import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import {
  adminPool,
  createTestInstall,
  seedCompany,
  type Company,
  type TestInstall,
} from '../helpers/server.js';
import { freePort } from '../helpers/global-setup.js';
import { BIN, runCli } from '../helpers/cli.js';
import { generateAgeKeyPair } from '../../src/crypto/age.js';
import { readCatalog } from '../../src/core/archive/catalog.js';
import type { Pool } from '../../src/db/pool.js';

let db: TestDatabase;
let ti: TestInstall;
let admin: Pool;
let a: Company;
let backupDir: string;

beforeAll(async () => {
  db = await createTestDatabase('cfgtrig');
  ti = await createTestInstall(db);
  admin = adminPool(db);
  a = await seedCompany(admin, ti.secrets.apiKeyHmacKey, 'acme');
  const config = JSON.parse(await readFile(ti.configPath, 'utf8'));
  config.backup = { recipients: [(await generateAgeKeyPair()).recipient] };
  await writeFile(ti.configPath, JSON.stringify(config));
  backupDir = join(ti.dataDir, 'backups');
});

afterAll(async () => {
  await admin?.end();
  await ti?.cleanup();
  await db?.drop();
});

const configBackups = async () => (await readCatalog(backupDir)).backups.filter((b) => b.kind === 'config');

async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('changes that trigger a config backup', () => {
  it('takes one when a company setting is changed through the running server', async () => {
    const before = (await configBackups()).length;
    const port = await freePort();
    const proc = spawn(process.execPath, [BIN, 'serve', '--config', ti.configPath, '--port', String(port)], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const exit = new Promise<number | null>((resolve) => proc.on('exit', resolve));
    try {
      await until(
        () =>
          fetch(`http://127.0.0.1:${port}/healthz`).then(
            (r) => r.status,
            () => 0,
          ),
        (s) => s === 200,
      );
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/settings`, {
        method: 'PATCH',
        headers: { authorization: `Bearer ${a.keys.admin}`, 'content-type': 'application/json' },
        body: JSON.stringify({ 'geofence.mode': 'reject' }),
      });
      expect(res.status).toBe(200);
      const after = await until(configBackups, (b) => b.length > before);
      expect(after.length).toBe(before + 1);
      // Audited as whoever changed the setting (the API key of the request), not as the server's local user.
      const changedBy = await admin.query<{ actor: string }>(
        `SELECT actor FROM audit_log WHERE action = 'settings.update' ORDER BY at DESC LIMIT 1`,
      );
      expect(changedBy.rows[0]!.actor).toMatch(/^apikey:/);
      const id = after[after.length - 1]!.id;
      const backedUpBy = await until(
        () =>
          admin.query<{ actor: string }>(
            `SELECT actor FROM audit_log WHERE action = 'backup.config' AND entity_id = $1`,
            [id],
          ),
        (r) => r.rows.length > 0,
      );
      expect(backedUpBy.rows.map((r) => r.actor)).toEqual([changedBy.rows[0]!.actor]);
    } finally {
      proc.kill('SIGTERM');
      await exit;
    }
  });

  it('takes one after a data-key rotation, and keys add-recipient adds a recipient', async () => {
    const before = (await configBackups()).length;
    const rotated = await runCli(['--json', '--config', ti.configPath, 'keys', 'rotate-data-key']);
    expect(rotated.exitCode).toBe(0);
    expect(JSON.parse(rotated.stdout).configBackup.id).toMatch(/config/);
    expect((await configBackups()).length).toBe(before + 1);

    const escrow = (await generateAgeKeyPair()).recipient;
    const added = await runCli(['--json', '--config', ti.configPath, 'keys', 'add-recipient', escrow]);
    expect(added.exitCode).toBe(0);
    expect(JSON.parse(await readFile(ti.configPath, 'utf8')).backup.recipients).toContain(escrow);
  });
});
