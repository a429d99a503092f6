import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createMigration } from '../../src/core/migrate.js';
import { MIGRATIONS_DIR, migrationFiles } from '../../src/db/migrate.js';

let dir: string | undefined;
afterEach(() => (dir ? rm(dir, { recursive: true, force: true }) : undefined));

describe('migrate create', () => {
  it('writes into the folder it is given, numbered after the shipped migrations, and not into the package', async () => {
    dir = await mkdtemp(join(tmpdir(), 'attendux-mig-'));
    const shipped = await migrationFiles();
    const next = String(Number(shipped.at(-1)!.slice(0, 4)) + 1).padStart(4, '0');
    const file = await createMigration('add-things', join(dir, 'migrations'));
    expect(file).toBe(join(dir, 'migrations', `${next}_add-things.sql`));
    expect(await readFile(file, 'utf8')).toContain('-- Down Migration');
    expect(await migrationFiles()).toEqual(shipped);
    expect((await readdir(MIGRATIONS_DIR)).some((f) => f.includes('add-things'))).toBe(false);
  });

  it('numbers after the newest migration already in the folder', async () => {
    dir = await mkdtemp(join(tmpdir(), 'attendux-mig-'));
    await writeFile(join(dir, '0042_later.sql'), '');
    expect(await createMigration('next-one', dir)).toBe(join(dir, '0043_next-one.sql'));
    await expect(createMigration('Bad_Name', dir)).rejects.toMatchObject({ code: 'USAGE', exitCode: 2 });
  });
});
