import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/errors.js';
import { HTTP_STATUS } from '../../src/server/errors.js';
import { nextKeyId } from '../../src/core/keys.js';

describe('server error codes', () => {
  it('maps every HTTP status to a code of the catalog', () => {
    for (const code of Object.keys(HTTP_STATUS)) expect(ERROR_CODES).toHaveProperty(code);
  });

  it('documents every server error code in the README error table', async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    for (const code of Object.keys(HTTP_STATUS)) expect(readme).toContain(`| \`${code}\``);
  });
});

describe('data key ids', () => {
  it('numbers the next key after the highest k<n>', () => {
    expect(nextKeyId(['k1'])).toBe('k2');
    expect(nextKeyId(['k1', 'k9', 'k3', 'custom'])).toBe('k10');
    expect(nextKeyId([])).toBe('k1');
  });
});
