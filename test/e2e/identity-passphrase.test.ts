/**
 * Identities protected with a passphrase by Debian's `age -p` (binary and armored): read with
 * --identity-passphrase-file or asked on a terminal; without either, refused with the reason.
 */
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedReference } from '../../bench/seed.js';
import { backupFull } from '../../src/core/backup/full.js';
import { createPool } from '../../src/db/pool.js';
import { makeInstall, type TestInstall } from '../helpers/backup.js';
import { BIN, runCli } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { dropDatabases } from '../helpers/restore.js';

let db: TestDatabase;
let inst: TestInstall;
let binaryKey: string;
let armoredKey: string;
let passFile: string;
const PASS = 'correct horse battery staple';

/** `age -p` reads the passphrase from the terminal only: give it one with script(1). */
function protect(src: string, out: string, armor: boolean): void {
  execFileSync(
    'bash',
    [
      '-c',
      `(sleep 0.3; printf '%s\\n' "$P"; sleep 0.3; printf '%s\\n' "$P"; sleep 0.3) | script -qec "age -p ${armor ? '-a ' : ''}-o '${out}' '${src}'" /dev/null`,
    ],
    { env: { ...process.env, P: PASS }, stdio: 'pipe' },
  );
}

beforeAll(async () => {
  db = await createTestDatabase('passphrase');
  const admin = createPool(db.adminUrl, 1);
  await seedReference(admin, { companies: 1, employees: 5, events: 200 });
  await admin.end();
  inst = await makeInstall(db);
  await backupFull({ configPath: inst.configPath });
  binaryKey = join(inst.dir, 'key.age');
  armoredKey = join(inst.dir, 'key.age.asc');
  protect(inst.identityFile, binaryKey, false);
  protect(inst.identityFile, armoredKey, true);
  passFile = join(inst.dir, 'pass.txt');
  await writeFile(passFile, `${PASS}\n`, { mode: 0o600 });
}, 120_000);

afterAll(async () => {
  await dropDatabases(db.superuserUrl, [`${db.name}_pp`]);
  await db.drop();
  await inst.cleanup();
});

const cli = (...args: string[]) => runCli(['--config', inst.configPath, ...args]);

describe('passphrase-protected identities', () => {
  it('are refused without a passphrase and a terminal, saying why', async () => {
    const r = await cli('backup', 'verify', '-i', binaryKey);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(
      `${binaryKey} is a passphrase-protected identity (age -p) and no passphrase was given`,
    );
    expect(r.stderr).toContain('--identity-passphrase-file');
  });

  it('open with --identity-passphrase-file, binary and armored', async () => {
    for (const key of [binaryKey, armoredKey]) {
      const r = await cli('--json', 'backup', 'verify', '-i', key, '--identity-passphrase-file', passFile);
      expect(r.stderr).toBe('');
      expect(r.exitCode).toBe(0);
      expect(JSON.parse(r.stdout).backups[0]).toMatchObject({ ok: true, depth: 'full' });
    }
    const restore = await cli(
      'restore',
      '--into',
      `${db.name}_pp`,
      '-i',
      armoredKey,
      '--identity-passphrase-file',
      passFile,
    );
    expect(restore.stderr).toBe('');
    expect(restore.exitCode).toBe(0);
  });

  it('say so on a wrong passphrase', async () => {
    const wrong = join(inst.dir, 'wrong.txt');
    await writeFile(wrong, 'not it\n');
    const r = await cli('backup', 'verify', '-i', binaryKey, '--identity-passphrase-file', wrong);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/cannot open the passphrase-protected identity .*: wrong passphrase/);
  });

  it('ask for the passphrase on a terminal', async () => {
    // script(1) gives the binary a terminal and waits for its input to end: the typist stops once the
    // command has exited (it touches a file), not after a guessed time.
    const done = join(inst.dir, 'tty-done');
    const r = await execa(
      'bash',
      [
        '-c',
        `(sleep 1.5; printf '%s\\r' "$P"; while [ ! -e "$D" ]; do sleep 0.2; done) | script -qec "node '${BIN}' --config '${inst.configPath}' backup verify -i '${binaryKey}'; rc=\\$?; touch '$D'; exit \\$rc" /dev/null`,
      ],
      { env: { P: PASS, D: done, ATTENDUX_CONFIG: '' }, reject: false },
    );
    expect(r.stdout).toMatch(/passphrase of/);
    expect(r.stdout).toMatch(/ok {3}full-/);
    expect(r.exitCode).toBe(0);
  });
});
