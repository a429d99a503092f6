import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupConfig } from '../../src/core/backup/config.js';
import { restoreConfig } from '../../src/core/restore/config.js';
import { AttenduxError } from '../../src/errors.js';
import { makeInstall, type TestInstall } from '../helpers/backup.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

const BIN = join(import.meta.dirname, '../../bin/attendux.js');
let db: TestDatabase;
let inst: TestInstall;
let service: string;
let fresh: string;

beforeAll(async () => {
  db = await createTestDatabase('rconfig');
  inst = await makeInstall(db);
  service = join(inst.dir, 'attendux-backup-full.timer');
  await writeFile(service, '[Timer]\nOnCalendar=*-*-* 02:00:00\n');
  await backupConfig({ configPath: inst.configPath, serviceFiles: [service] });
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
  systemdDir: join(d, 'systemd'),
  cronDir: join(d, 'cron.d'),
});

describe('restore --config-only', () => {
  it('brings config, secrets (0600) and service files back onto a new server', async () => {
    const d = join(fresh, 'a');
    const r = await restoreConfig(target(d));
    expect(r.files.map((f) => f.path)).toEqual([
      join(d, 'etc', 'attendux.json'),
      join(d, 'etc', 'attendux.secrets.json'),
      join(d, 'systemd', 'attendux-backup-full.timer'),
    ]);
    expect(await readFile(join(d, 'etc', 'attendux.json'), 'utf8')).toBe(
      await readFile(inst.configPath, 'utf8'),
    );
    expect(await readFile(join(d, 'etc', 'attendux.secrets.json'), 'utf8')).toBe(
      await readFile(inst.secretsPath, 'utf8'),
    );
    expect((await stat(join(d, 'etc', 'attendux.secrets.json'))).mode & 0o777).toBe(0o600);
    expect(await readFile(join(d, 'systemd', 'attendux-backup-full.timer'), 'utf8')).toBe(
      await readFile(service, 'utf8'),
    );
  });

  it('refuses to overwrite existing files without --force and writes none of them', async () => {
    const d = join(fresh, 'b');
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
