import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupConfig } from '../../src/core/backup/config.js';
import { restoreConfig } from '../../src/core/restore/config.js';
import { newBackupId } from '../../src/core/archive/format.js';
import { signBackup } from '../../src/core/backup/signature.js';
import { writeArchive } from '../../src/core/archive/writer.js';
import { VERSION } from '../../src/version.js';
import { AttenduxError } from '../../src/errors.js';
import { makeInstall, type TestInstall } from '../helpers/backup.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

const BIN = join(import.meta.dirname, '../../bin/attendux.js');
let db: TestDatabase;
let inst: TestInstall;
let service: string;
let cron: string;
let systemd: string;
let cronDir: string;
let fresh: string;
const SERVICE_TEXT = '[Timer]\nOnCalendar=*-*-* 02:00:00\n';
const CRON_TEXT = '0 2 * * * attendux attendux backup full\n';

beforeAll(async () => {
  db = await createTestDatabase('rconfig');
  inst = await makeInstall(db);
  // Stand-ins for /etc/systemd/system and /etc/cron.d (the tests never write the real ones): the
  // allow-list given to restoreConfig below.
  systemd = join(inst.dir, 'systemd');
  cronDir = join(inst.dir, 'cron.d');
  await mkdir(systemd);
  await mkdir(cronDir);
  service = join(systemd, 'attendux-backup-full.timer');
  cron = join(cronDir, 'attendux');
  await writeFile(service, SERVICE_TEXT);
  await writeFile(cron, CRON_TEXT);
  await backupConfig({ configPath: inst.configPath, serviceFiles: [service, cron] });
  fresh = await mkdtemp(join(tmpdir(), 'attendux-newserver-'));
});

afterAll(async () => {
  await db.drop();
  await inst.cleanup();
  await rm(fresh, { recursive: true, force: true });
});

const target = (d: string) => ({
  configPath: join(d, 'etc', 'attendux.json'),
  backupDir: inst.backupDir,
  identityFile: inst.identityFile,
  systemdDir: systemd,
  cronDir,
});

describe('restore --config-only', () => {
  it('brings config, secrets (0600) and service files back onto a new server, each service file to its recorded path', async () => {
    const d = join(fresh, 'a');
    // The new server has no service files yet.
    await rm(service);
    await rm(cron);
    const r = await restoreConfig(target(d));
    expect(r.files.map((f) => f.path)).toEqual([
      join(d, 'etc', 'attendux.json'),
      join(d, 'etc', 'attendux.secrets.json'),
      service,
      cron,
    ]);
    expect(await readFile(join(d, 'etc', 'attendux.json'), 'utf8')).toBe(
      await readFile(inst.configPath, 'utf8'),
    );
    expect(await readFile(join(d, 'etc', 'attendux.secrets.json'), 'utf8')).toBe(
      await readFile(inst.secretsPath, 'utf8'),
    );
    expect((await stat(join(d, 'etc', 'attendux.secrets.json'))).mode & 0o777).toBe(0o600);
    expect(await readFile(service, 'utf8')).toBe(SERVICE_TEXT);
    expect(await readFile(cron, 'utf8')).toBe(CRON_TEXT);
  });

  it('refuses to overwrite existing files without --force and writes none of them', async () => {
    const d = join(fresh, 'b');
    await rm(service, { force: true });
    await rm(cron, { force: true });
    await mkdir(join(d, 'etc'), { recursive: true });
    await writeFile(join(d, 'etc', 'attendux.secrets.json'), 'keep me');
    const err = (await restoreConfig(target(d)).catch((e: unknown) => e)) as AttenduxError;
    expect(err).toBeInstanceOf(AttenduxError);
    expect(err.code).toBe('RESTORE_TARGET_EXISTS');
    expect(err.message).toBe(
      `${join(d, 'etc', 'attendux.secrets.json')} already exists; nothing was written`,
    );
    expect(await readFile(join(d, 'etc', 'attendux.secrets.json'), 'utf8')).toBe('keep me');
    await expect(stat(join(d, 'etc', 'attendux.json'))).rejects.toThrow();
    await restoreConfig({ ...target(d), force: true });
    expect(await readFile(join(d, 'etc', 'attendux.secrets.json'), 'utf8')).toBe(
      await readFile(inst.secretsPath, 'utf8'),
    );
  });

  it('via the binary: finds the backups through ATTENDUX_BACKUP_DIR, previews, and refuses an existing config with exit 1', async () => {
    const d = join(fresh, 'c');
    // The binary's allow-list is the real /etc/systemd/system and /etc/cron.d: the newest config backup
    // holds no service files, so nothing outside the temp dir is ever a candidate.
    await backupConfig({ configPath: inst.configPath, serviceFiles: [] });
    const args = [
      BIN,
      '--config',
      join(d, 'attendux.json'),
      'restore',
      '--config-only',
      '-i',
      inst.identityFile,
    ];
    const env: NodeJS.ProcessEnv = { ...process.env, ATTENDUX_BACKUP_DIR: inst.backupDir };
    delete env.ATTENDUX_BACKUP_IDENTITY;
    // Service files would go to /etc: this install's config backup is restored without them by --dry-run first.
    const dry = spawnSync(process.execPath, [...args, '--dry-run', '--json'], { env, encoding: 'utf8' });
    expect(dry.status).toBe(0);
    expect((JSON.parse(dry.stdout) as { files: { path: string }[] }).files[0]!.path).toBe(
      join(d, 'attendux.json'),
    );
    await stat(join(d, 'attendux.json')).then(
      () => expect.unreachable('dry run wrote a file'),
      () => undefined,
    );
    await mkdir(d, { recursive: true });
    await writeFile(join(d, 'attendux.json'), '{}');
    // `restore config` is the same as `restore --config-only`.
    const r = spawnSync(
      process.execPath,
      [BIN, '--config', join(d, 'attendux.json'), 'restore', 'config', '-i', inst.identityFile],
      { env, encoding: 'utf8' },
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `^attendux: ${join(d, 'attendux.json')}.* already exists?; nothing was written\\n  hint: pass --force`,
      ),
    );
  });
});

/**
 * A config backup signed with this install's own signing key whose manifest records `path` for a service
 * entry named `config/<name>`: what a malicious (or buggy) signer could produce. The name passes the
 * by-name rule of older backups; only the recorded path makes it dangerous.
 */
async function signedConfigBackup(name: string, path: string): Promise<string> {
  const at = new Date();
  const id = newBackupId('config', at);
  const secrets = JSON.parse(await readFile(inst.secretsPath, 'utf8')) as { signingKey: string };
  await writeArchive({
    backupDir: inst.backupDir,
    id,
    recipients: [inst.recipient],
    startedAt: at,
    rows: () => 0,
    entries: [
      { name: 'config/attendux.json', content: await readFile(inst.configPath), path: inst.configPath },
      {
        name: 'config/attendux.secrets.json',
        content: await readFile(inst.secretsPath),
        path: inst.secretsPath,
      },
      { name: `config/${name}`, content: Buffer.from('[Service]\nExecStart=/bin/sh -c id\n'), path },
    ],
    manifest: () => ({
      id,
      kind: 'config',
      parent: null,
      chainRoot: null,
      createdAt: at.toISOString(),
      attenduxVersion: VERSION,
      schemaVersion: null,
      postgresVersion: null,
      snapshot: null,
      parentSnapshot: null,
      databaseId: null,
      tables: [],
      changes: null,
      contentHash: 'forged',
    }),
  });
  await signBackup(inst.backupDir, id, secrets.signingKey);
  return id;
}

describe('restore --config-only writes only to recorded, allowed paths', () => {
  it('refuses a signed backup whose manifest records a service file outside the allow-list, writing nothing', async () => {
    const outside = join(inst.dir, 'elsewhere');
    const cases = [
      // An attendux name, but recorded elsewhere: without recorded paths it would land in the systemd dir.
      join(outside, 'attendux-backup-full.service'),
      // In an allowed directory, under a name that is not attendux's.
      join(systemd, 'sshd.service'),
      // Not normalised: resolves outside the allowed directory.
      `${systemd}/../elsewhere/attendux-x.timer`,
      'relative/attendux-x.timer',
    ];
    for (const [n, path] of cases.entries()) {
      const id = await signedConfigBackup('attendux-backup-full.service', path);
      const d = join(fresh, `forged-${n}`);
      const err = (await restoreConfig({ ...target(d), backupId: id }).catch(
        (e: unknown) => e,
      )) as AttenduxError;
      expect(err, path).toBeInstanceOf(AttenduxError);
      expect(err.code).toBe('BACKUP_CORRUPT');
      expect(err.message).toMatch(/entry config\/attendux-backup-full\.service .*; nothing was written$/);
      await expect(stat(join(d, 'etc', 'attendux.json'))).rejects.toThrow();
      await expect(stat(join(systemd, 'attendux-backup-full.service'))).rejects.toThrow();
      await expect(stat(join(outside, 'attendux-backup-full.service'))).rejects.toThrow();
    }
  });

  it('refuses what `backup config` itself recorded from outside the allowed directories', async () => {
    const elsewhere = join(inst.dir, 'units');
    await mkdir(elsewhere, { recursive: true });
    const unit = join(elsewhere, 'attendux-serve.service');
    await writeFile(unit, '[Service]\n');
    const cb = await backupConfig({ configPath: inst.configPath, serviceFiles: [unit] });
    const d = join(fresh, 'elsewhere');
    await expect(restoreConfig({ ...target(d), backupId: cb.sidecar!.id })).rejects.toMatchObject({
      code: 'BACKUP_CORRUPT',
      message: expect.stringContaining(`would be written to ${unit}`),
    });
    // With that directory on the allow-list, the file goes back to exactly where it was read.
    await rm(unit);
    const r = await restoreConfig({ ...target(d), backupId: cb.sidecar!.id, systemdDir: elsewhere });
    expect(r.files[2]!.path).toBe(unit);
    expect(await readFile(unit, 'utf8')).toBe('[Service]\n');
  });

  it('records every file it took, with its absolute path, in the signed manifest', async () => {
    const cb = await backupConfig({ configPath: inst.configPath, serviceFiles: [service] });
    const { openBackup } = await import('../../src/core/archive/reader.js');
    const { readIdentityFile } = await import('../../src/core/archive/identity.js');
    const opened = await openBackup({
      backupDir: inst.backupDir,
      id: cb.sidecar!.id,
      identities: await readIdentityFile(inst.identityFile),
    });
    try {
      expect(opened.manifest.entries.filter((e) => e.name.startsWith('config/')).map((e) => e.path)).toEqual([
        inst.configPath,
        inst.secretsPath,
        service,
      ]);
    } finally {
      await opened.cleanup();
    }
  });
});
