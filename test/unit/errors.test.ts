import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/errors.js';

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

  it('uses exit code 2 only for usage errors and 1 or more for failures', () => {
    for (const { exitCode } of Object.values(ERROR_CODES)) expect(exitCode).toBeGreaterThanOrEqual(1);
  });
});
