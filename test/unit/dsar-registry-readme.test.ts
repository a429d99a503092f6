import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { registryTable } from '../../src/core/dsar/registry.js';

describe('the README’s personal-data table', () => {
  it('is the registry, row for row (regenerate it with registryTable())', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const start = readme.indexOf('<!-- dsar-registry:begin -->');
    const end = readme.indexOf('<!-- dsar-registry:end -->');
    expect(start).toBeGreaterThan(0);
    const table = readme
      .slice(start, end)
      .split('\n')
      .filter((l) => l.startsWith('|'))
      .map((l) => l.replace(/\s*\|\s*/g, '|').replace(/-{3,}/g, '---'));
    const want = registryTable()
      .split('\n')
      .map((l) => l.replace(/\s*\|\s*/g, '|'));
    expect(table).toEqual(want);
  });
});
