import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, type Pool } from '../../src/db/pool.js';
import { REGISTRY, registryGaps } from '../../src/core/dsar/registry.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

let db: TestDatabase;
let admin: Pool;

beforeAll(async () => {
  db = await createTestDatabase('dsarreg');
  admin = createPool(db.adminUrl, 1);
});

afterAll(async () => {
  await admin.end();
  await db.drop();
});

describe('the personal-data registry', () => {
  it('classifies every column of every table the migrations create, and nothing that is gone', async () => {
    const { rows } = await admin.query<{ table: string; column: string }>(
      `SELECT c.table_name AS table, c.column_name AS column FROM information_schema.columns c
         JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
        WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'`,
    );
    expect(rows.length).toBeGreaterThan(100);
    const gaps = registryGaps(rows);
    // A new column must be classified in src/core/dsar/registry.ts before export and erasure can miss it.
    expect(gaps.unclassified, 'columns the registry does not classify').toEqual([]);
    expect(gaps.stale, 'registry entries for columns that no longer exist').toEqual([]);
  });

  it('notices a column a migration adds without classifying it', async () => {
    const c = await admin.connect();
    try {
      await c.query('BEGIN');
      await c.query('ALTER TABLE employees ADD COLUMN phone text');
      const { rows } = await c.query<{ table: string; column: string }>(
        `SELECT table_name AS table, column_name AS column FROM information_schema.columns
          WHERE table_schema = 'public' AND table_name = 'employees'`,
      );
      expect(registryGaps(rows).unclassified).toEqual(['employees.phone']);
    } finally {
      await c.query('ROLLBACK');
      c.release();
    }
  });

  it('names a subject link for every table holding personal data about a person', () => {
    for (const [table, t] of Object.entries(REGISTRY)) {
      const personal = Object.values(t.columns).some((c) => c.personal && c.erasure !== 'hold');
      if (personal && !['tenant_settings'].includes(table)) expect(t.subject, table).not.toBeNull();
    }
  });
});
