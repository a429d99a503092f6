import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createPool, inTransactionFrom, type Pool } from '../../src/db/pool.js';

/**
 * inTransactionFrom sends BEGIN with the first statement and COMMIT with the last in one protocol batch:
 * what PostgreSQL does when a statement of such a batch fails, on a named and an unnamed (pgbouncer) pool.
 */

let db: TestDatabase;
const pools: Record<string, Pool> = {};

beforeAll(async () => {
  db = await createTestDatabase('pipeline');
  pools.named = createPool(db.adminUrl, 2);
  pools.unnamed = createPool(db.adminUrl, 2, 'attendux-test', { unnamedStatements: true });
  await pools.named.query('CREATE TABLE pipeline_t (id int PRIMARY KEY, note text)');
});
afterAll(async () => {
  for (const p of Object.values(pools)) await p.end();
  await db?.drop();
});

const insert = (id: number, name = 'pipeline_insert') => ({
  name,
  text: 'INSERT INTO pipeline_t (id, note) VALUES ($1, $2) RETURNING id',
  values: [id, `row ${id}`],
});
const ids = async (p: Pool) =>
  (await p.query<{ id: number }>('SELECT id FROM pipeline_t ORDER BY id')).rows.map((r) => r.id);

describe.each(['named', 'unnamed'])('inTransactionFrom on a %s pool', (kind) => {
  const base = kind === 'named' ? 100 : 200;

  it('returns the first statement’s rows, and commits with the last', async () => {
    const p = pools[kind]!;
    const r = await inTransactionFrom(p, insert(base + 1), async (c, first, commitWith) => {
      expect(first.rows).toEqual([{ id: base + 1 }]);
      // Inside the transaction: seen here, not yet from another connection.
      expect(
        (await c.query('SELECT count(*)::int AS n FROM pipeline_t WHERE id = $1', [base + 1])).rows[0],
      ).toEqual({ n: 1 });
      expect(await ids(pools[kind === 'named' ? 'unnamed' : 'named']!)).not.toContain(base + 1);
      const last = await commitWith(insert(base + 2));
      return last.rows[0];
    });
    expect(r).toEqual({ id: base + 2 });
    expect(await ids(p)).toEqual(expect.arrayContaining([base + 1, base + 2]));
    // The connection is clean: a transaction of its own works right after.
    expect((await p.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });

  it('a failing first statement rejects with PostgreSQL’s error and leaves nothing open', async () => {
    const p = pools[kind]!;
    await expect(inTransactionFrom(p, insert(base + 1), () => Promise.resolve())).rejects.toMatchObject({
      code: '23505',
    });
    for (let i = 0; i < 3; i++) expect((await p.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });

  it('a failing last statement rolls the whole transaction back', async () => {
    const p = pools[kind]!;
    await expect(
      inTransactionFrom(p, insert(base + 3), async (_c, _first, commitWith) => {
        await commitWith(insert(base + 1)); // duplicate key: the COMMIT after it is never run
      }),
    ).rejects.toMatchObject({ code: '23505' });
    expect(await ids(p)).not.toContain(base + 3);
  });

  it('an error between them rolls back; without commitWith a COMMIT of its own follows', async () => {
    const p = pools[kind]!;
    await expect(
      inTransactionFrom(p, insert(base + 4), () => Promise.reject(new Error('handler failed'))),
    ).rejects.toThrow('handler failed');
    expect(await ids(p)).not.toContain(base + 4);
    await inTransactionFrom(p, insert(base + 5), () => Promise.resolve());
    expect(await ids(p)).toContain(base + 5);
  });
});
