import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { from as copyFrom } from 'pg-copy-streams';
import type pg from 'pg';

/**
 * Apply an incremental's data/changes.copy.gz to a database, the straightforward way (one statement per
 * change, triggers off): what a restore does, written independently of the code under test.
 * Needs a superuser connection (session_replication_role).
 */
export async function replayChanges(c: pg.ClientBase, changesGz: string): Promise<number> {
  await c.query('BEGIN');
  try {
    await c.query('SET LOCAL session_replication_role = replica');
    await c.query(`CREATE TEMP TABLE replay_changes (id bigint, txid xid8, at timestamptz, table_name text,
                     op char(1), tenant_id uuid, pk jsonb, "row" jsonb) ON COMMIT DROP`);
    await pipeline(
      createReadStream(changesGz),
      createGunzip(),
      c.query(copyFrom('COPY replay_changes FROM STDIN')),
    );
    await c.query(`DO $$
      DECLARE ch record; cond text;
      BEGIN
        FOR ch IN SELECT * FROM replay_changes ORDER BY id LOOP
          IF ch.op = 'T' THEN EXECUTE format('DELETE FROM %I', ch.table_name); CONTINUE; END IF;
          SELECT string_agg(format('%I = (jsonb_populate_record(NULL::%I, $1)).%I', k, ch.table_name, k), ' AND ')
            INTO cond FROM jsonb_object_keys(ch.pk) k;
          EXECUTE format('DELETE FROM %I WHERE %s', ch.table_name, cond) USING ch.pk;
          IF ch.op IN ('I', 'U') THEN
            EXECUTE format('INSERT INTO %I SELECT * FROM jsonb_populate_record(NULL::%I, $1)', ch.table_name, ch.table_name)
              USING ch."row";
          END IF;
        END LOOP;
      END $$`);
    const { rows } = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM replay_changes');
    await c.query('COMMIT');
    return rows[0]!.n;
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
