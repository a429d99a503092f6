import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { AttenduxError, ERROR_CODES } from '../../src/errors.js';

describe('error catalog', () => {
  it('documents every code in the README with its exit code', async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    const documented = new Map<string, number>();
    for (const m of readme.matchAll(/^\|\s*`([A-Z_]+)`\s*\|\s*(\d+)\s*\|/gm))
      documented.set(m[1]!, Number(m[2]));
    for (const [code, { exitCode }] of Object.entries(ERROR_CODES)) {
      expect(documented.get(code), `README error table row for ${code}`).toBe(exitCode);
    }
  });

  it('uses exit code 2 only for usage errors, 75 only for "locked, retry later", and 1 for failures', () => {
    // A usage error is one the user fixes by changing the command line or config: retrying cannot help.
    const usage = ['USAGE', 'NOT_A_TTY', 'CONFIRMATION_REQUIRED', 'CONFIG_NOT_FOUND', 'CONFIG_INVALID'];
    const input = ['VALIDATION_FAILED', 'JOB_UNAVAILABLE'];
    const locked = ['BACKUP_LOCKED', 'RESTORE_IN_PROGRESS', 'JOB_LOCKED'];
    for (const [code, { exitCode }] of Object.entries(ERROR_CODES)) {
      const expected = usage.includes(code) || input.includes(code) ? 2 : locked.includes(code) ? 75 : 1;
      expect(exitCode, code).toBe(expected);
    }
  });

  it('exits 2 for a usage error thrown without an explicit exit code', () => {
    expect(new AttenduxError('USAGE', 'bad flag').exitCode).toBe(2);
    expect(new AttenduxError('NOT_FOUND', 'no such company').exitCode).toBe(1);
  });
});
