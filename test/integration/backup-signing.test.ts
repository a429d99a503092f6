import { mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupConfig } from '../../src/core/backup/config.js';
import { backupFull } from '../../src/core/backup/full.js';
import { signBackup, signatureFileName } from '../../src/core/backup/signature.js';
import { verifyBackups } from '../../src/core/backup/verify.js';
import { restoreConfig } from '../../src/core/restore/config.js';
import { restoreInto } from '../../src/core/restore/execute.js';
import { generateSigningKey } from '../../src/crypto/signing.js';
import { makeInstall, type TestInstall } from '../helpers/backup.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { dropDatabases } from '../helpers/restore.js';

let db: TestDatabase;
let inst: TestInstall;
let fullId: string;
const made: string[] = [];
const cfg = () => ({ configPath: inst.configPath, identityFile: inst.identityFile });

beforeAll(async () => {
  db = await createTestDatabase('signing');
  inst = await makeInstall(db);
  fullId = (await backupFull({ configPath: inst.configPath })).sidecar.id;
});

afterAll(async () => {
  await dropDatabases(db.superuserUrl, made);
  await db.drop();
  await inst.cleanup();
});

const sigPath = (id: string) => join(inst.backupDir, signatureFileName(id));
const sidecarPath = (id: string) => join(inst.backupDir, `${id}.json`);

describe('backup signatures', () => {
  it('signs every backup; verify accepts it', async () => {
    const sig = JSON.parse(await readFile(sigPath(fullId), 'utf8')) as { publicKey: string };
    expect(sig.publicKey).toMatch(/^ed25519:/);
    const r = await verifyBackups({ ...cfg(), id: fullId });
    expect(r.ok).toBe(true);
  });

  it('refuses a backup whose sidecar was altered after signing (verify and restore)', async () => {
    const original = await readFile(sidecarPath(fullId), 'utf8');
    try {
      const s = JSON.parse(original) as Record<string, unknown>;
      s.recipients = 7;
      await writeFile(sidecarPath(fullId), JSON.stringify(s, null, 2) + '\n');
      const r = await verifyBackups({ ...cfg(), id: fullId });
      expect(r.ok).toBe(false);
      expect(r.backups[0]!.error?.code).toBe('BACKUP_BAD_SIGNATURE');
      await expect(restoreInto({ ...cfg(), into: `${db.name}_forged`.slice(0, 63) })).rejects.toMatchObject({
        code: 'BACKUP_BAD_SIGNATURE',
      });
    } finally {
      await writeFile(sidecarPath(fullId), original);
    }
  });

  it('refuses a backup signed by another key (anyone who can write the backup dir)', async () => {
    const original = await readFile(sigPath(fullId));
    try {
      await signBackup(inst.backupDir, fullId, generateSigningKey());
      await expect(restoreInto({ ...cfg(), into: `${db.name}_other`.slice(0, 63) })).rejects.toMatchObject({
        code: 'BACKUP_BAD_SIGNATURE',
      });
    } finally {
      await writeFile(sigPath(fullId), original);
    }
  });

  it('refuses an unsigned backup (one made before signing) unless ATTENDUX_ALLOW_UNSIGNED_BACKUPS=1', async () => {
    const original = await readFile(sigPath(fullId));
    try {
      await unlink(sigPath(fullId));
      const r = await verifyBackups({ ...cfg(), id: fullId });
      expect(r.backups[0]!.error?.code).toBe('BACKUP_UNSIGNED');
      await expect(restoreInto({ ...cfg(), into: `${db.name}_unsigned`.slice(0, 63) })).rejects.toMatchObject(
        {
          code: 'BACKUP_UNSIGNED',
        },
      );
      process.env.ATTENDUX_ALLOW_UNSIGNED_BACKUPS = '1';
      try {
        const into = `${db.name}_allowed`.slice(0, 63);
        made.push(into);
        const ok = await restoreInto({ ...cfg(), into });
        expect(ok.database).toBe(into);
      } finally {
        delete process.env.ATTENDUX_ALLOW_UNSIGNED_BACKUPS;
      }
    } finally {
      await writeFile(sigPath(fullId), original);
    }
  });

  it('config-only on a new server checks the signature with the key kept in the identity file', async () => {
    const cb = await backupConfig({ configPath: inst.configPath, serviceFiles: [] });
    const fresh = await mkdtemp(join(tmpdir(), 'attendux-sig-'));
    try {
      const target = join(fresh, 'attendux.json');
      const other = join(fresh, 'other-identity.txt');
      // The same age identity without the signing-key line: nothing to check the signature with.
      const text = await readFile(inst.identityFile, 'utf8');
      await writeFile(other, text.replace(/^# attendux-signing-key:.*\n/m, ''));
      await expect(
        restoreConfig({ configPath: target, backupDir: inst.backupDir, identityFile: other, env: {} }),
      ).rejects.toMatchObject({ code: 'BACKUP_BAD_SIGNATURE' });
      const r = await restoreConfig({
        configPath: target,
        backupDir: inst.backupDir,
        identityFile: inst.identityFile,
        env: {},
      });
      expect(r.backup).toBe(cb.sidecar!.id);
    } finally {
      await rm(fresh, { recursive: true, force: true });
    }
  });

  it('config-only writes only attendux service files, never an arbitrary file a backup names', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'attendux-svc-'));
    try {
      const evil = join(dir, 'sshd.service');
      await writeFile(evil, '[Service]\nExecStart=/bin/sh -c id\n');
      await backupConfig({ configPath: inst.configPath, serviceFiles: [evil] });
      const target = join(dir, 'etc', 'attendux.json');
      await expect(
        restoreConfig({
          configPath: target,
          backupDir: inst.backupDir,
          identityFile: inst.identityFile,
          systemdDir: join(dir, 'systemd'),
          env: {},
        }),
      ).rejects.toMatchObject({ code: 'BACKUP_CORRUPT' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
