import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/errors.js';

describe('error code catalog', () => {
  it('matches the README’s Error codes table row for row', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('### Error codes'));
    const rows = [...section.matchAll(/^\| `([A-Z_]+)`\s*\| (\d+)\s*\| (.*?)\s*\|$/gm)].map((m) => [
      m[1],
      Number(m[2]),
      m[3],
    ]);
    const catalog = Object.entries(ERROR_CODES).map(([code, v]) => [code, v.exitCode, v.doc]);
    expect(rows).toEqual(catalog);
  });
});
