import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN } from '../helpers/cli.js';

// Start-up cost is mostly module loading (README "Performance (start-up)"): these pin which packages a
// fresh process loads, so that a static import added in the wrong place shows here, not as a slower cron.

const DIST = fileURLToPath(new URL('../../dist/', import.meta.url));
let dir: string;
let hook: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'attendux-imports-'));
  // A module-load hook that names every ESM module loaded, on stderr, one per line. The hooks run on their own
  // thread: an asynchronous stderr write there can be lost when the main thread exits first, so write synchronously.
  await writeFile(
    join(dir, 'hooks.mjs'),
    `import { writeSync } from 'node:fs';
     export async function load(url, ctx, next) {
       writeSync(2, 'LOADED ' + url + '\\n');
       return next(url, ctx);
     }`,
  );
  hook = join(dir, 'register.mjs');
  await writeFile(
    hook,
    `import { register } from 'node:module';
     register(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)});`,
  );
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The node_modules packages (and, under `dist/`, the files) a process loads while running `args`. */
async function packagesLoaded(args: string[]): Promise<Set<string>> {
  const r = await execa('node', ['--import', hook, ...args], {
    reject: false,
    stdin: 'ignore',
    env: { ATTENDUX_CONFIG: '' },
  });
  expect(r.exitCode).toBe(0);
  const pkgs = new Set<string>();
  for (const m of String(r.stderr).matchAll(/^LOADED .*\/node_modules\/((?:@[^/]+\/)?[^/]+)\//gm))
    pkgs.add(m[1]!);
  for (const m of String(r.stderr).matchAll(/^LOADED .*\/dist\/(\S+)$/gm)) pkgs.add(`dist/${m[1]!}`);
  return pkgs;
}

const imported = (module: string) => ['--input-type=module', '-e', `await import(${JSON.stringify(module)})`];

describe('start-up imports', () => {
  it('loads neither pg nor zod nor the audit code for --version and --help', async () => {
    for (const flag of ['--version', '--help']) {
      const pkgs = await packagesLoaded([BIN, flag]);
      expect(pkgs).toContain('commander');
      for (const heavy of ['pg', 'pg-copy-streams', 'zod', 'execa', 'fastify', 'dist/core/audit/chains.js'])
        expect(pkgs, `${flag} loads ${heavy}`).not.toContain(heavy);
    }
  });

  it('opens an install without the embedded cluster code, a notify hook runner or a server', async () => {
    const pkgs = await packagesLoaded(imported(join(DIST, 'core/install.js')));
    expect(pkgs).toContain('pg');
    for (const heavy of ['dist/db/embedded.js', 'execa', 'fastify', '@inquirer/prompts'])
      expect(pkgs, `install loads ${heavy}`).not.toContain(heavy);
  });

  it('loads no notify runner, CSV writer, off-site client or server for an incremental backup', async () => {
    const pkgs = await packagesLoaded(imported(join(DIST, 'core/backup/incremental.js')));
    expect(pkgs).toContain('pg-copy-streams');
    for (const heavy of ['execa', 'csv-stringify', '@aws-sdk/client-s3', 'ssh2-sftp-client', 'fastify'])
      expect(pkgs, `incremental loads ${heavy}`).not.toContain(heavy);
  });
});
