import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MIGRATIONS_DIR, MIGRATIONS_TABLE, migrationFiles } from '../../db/migrate.js';
import { changeColumnsDdl, copyOptions, type ManifestTable } from '../archive/format.js';

/**
 * The SQL that ships inside every backup so that a person can restore it with nothing but age, tar, gunzip
 * and psql (README "Restoring by hand"). Each script is run by psql from the directory the backup was
 * extracted into, as a superuser (session_replication_role = replica keeps triggers, foreign-key checks
 * included, out of the way of a load that is consistent as a whole).
 */

export const SCHEMA_SCRIPT = 'schema.sql';
export const RESTORE_SCRIPT = 'restore.sql';
export const APPLY_SCRIPT = 'apply-changes.sql';

/** Moves every identity/serial sequence of schema public past the largest value in its column. */
const RESET_SEQUENCES = `-- Sequences past the largest value loaded (run again after the last apply-changes.sql).
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT c.relname::text AS t, a.attname::text AS col,
                  pg_get_serial_sequence(format('%I', c.relname), a.attname) AS seq
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
              AND pg_get_serial_sequence(format('%I', c.relname), a.attname) IS NOT NULL LOOP
    EXECUTE format('SELECT setval(%L, coalesce((SELECT max(%I) FROM %I), 1), (SELECT max(%I) FROM %I) IS NOT NULL)',
                   r.seq, r.col, r.t, r.col, r.t);
  END LOOP;
END $$;
`;

function upSection(sql: string): string {
  const down = sql.search(/^-- Down Migration/m);
  return (down < 0 ? sql : sql.slice(0, down)).replace(/^-- Up Migration\s*$/m, '').trim();
}

/**
 * The schema at `version`: the Up part of every migration up to it (a migration file holds its Down part
 * too, which is why `psql -f migrations/*.sql` cannot work), in one transaction, and the migrations table
 * filled in, so that a later `attendux migrate up` continues from there.
 */
export async function schemaScript(version: string): Promise<string> {
  const files = await migrationFiles();
  const upTo = files.slice(0, files.indexOf(version) + 1);
  const parts = [
    `-- attendux schema at ${version}. Run into an EMPTY database, as a superuser, with the app role named:`,
    `--   psql "$TARGET" -v ON_ERROR_STOP=1 -v app_role=attendux_app -f schema.sql`,
    `-- (the role must exist: CREATE ROLE attendux_app LOGIN PASSWORD '...').`,
    `\\set ON_ERROR_STOP on`,
    `SELECT set_config('attendux.app_role', :'app_role', false);`,
    'BEGIN;',
    // First: migrations refer to it (the server's readiness check reads it).
    `CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (id serial PRIMARY KEY, name varchar(255) NOT NULL, run_on timestamp NOT NULL);`,
  ];
  for (const name of upTo) {
    const sql = await readFile(join(MIGRATIONS_DIR, `${name}.sql`), 'utf8');
    parts.push(`-- migration ${name}`, upSection(sql));
  }
  parts.push(
    ...upTo.map((n) => `INSERT INTO ${MIGRATIONS_TABLE} (name, run_on) VALUES ('${n}', now());`),
    'COMMIT;',
    '',
  );
  return parts.join('\n');
}

const quoteIdent = (s: string) => `"${s.replace(/"/g, '""')}"`;

/** A full backup's load script: every table entry in manifest (foreign-key) order, then the sequences. */
export function restoreScript(
  id: string,
  tables: readonly Pick<ManifestTable, 'name' | 'entries' | 'copyFormat'>[],
): string {
  const lines = [
    `-- Load full backup ${id} into a database holding its schema (schema.sql), from the directory it was`,
    `-- extracted into:  psql "$TARGET" -v ON_ERROR_STOP=1 -f restore.sql`,
    `\\set ON_ERROR_STOP on`,
    'SET session_replication_role = replica;',
  ];
  for (const t of tables)
    for (const e of t.entries)
      lines.push(`\\copy ${quoteIdent(t.name)} FROM PROGRAM 'gunzip -c ${e}'${copyOptions(t)}`);
  lines.push('', RESET_SEQUENCES);
  return lines.join('\n');
}

/**
 * An incremental's script: its change rows into a temporary table, optionally only whole transactions
 * committed at or before `-v until=TIME`, then per table: a truncate empties it, and every touched primary key
 * gets its last state (deleted, or the new row). Run each incremental's script in chain order.
 */
export function applyChangesScript(id: string, parent: string): string {
  return `-- Apply incremental ${id} (on top of ${parent}, which must be applied first), from the directory it was
-- extracted into:  psql "$TARGET" -v ON_ERROR_STOP=1 -f apply-changes.sql
-- Point in time: add -v until=2026-11-23T14:30:00Z to keep only transactions committed at or before it.
\\set ON_ERROR_STOP on
SET session_replication_role = replica;
CREATE TEMP TABLE restore_changes (${changeColumnsDdl()});
\\copy restore_changes FROM PROGRAM 'gunzip -c data/changes.copy.gz'
\\if :{?until}
DELETE FROM restore_changes WHERE txid IN
  (SELECT txid FROM restore_changes GROUP BY txid HAVING max(at) > :'until'::timestamptz);
\\endif
DO $$
DECLARE
  t text;
  trunc bigint;
  cond text;
BEGIN
  FOR t, trunc IN SELECT table_name, coalesce(max(id) FILTER (WHERE op = 'T'), 0)
                    FROM restore_changes GROUP BY table_name ORDER BY table_name LOOP
    IF trunc > 0 THEN
      EXECUTE format('DELETE FROM %I', t);
    END IF;
    SELECT string_agg(format('x.%1$I = k.%1$I', a.attname), ' AND ') INTO cond
      FROM pg_index i
      CROSS JOIN LATERAL unnest(i.indkey) AS u(attnum)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.attnum
     WHERE i.indrelid = format('%I', t)::regclass AND i.indisprimary;
    EXECUTE format('DELETE FROM %1$I x USING (SELECT k.* FROM restore_changes c, '
                   'jsonb_populate_record(NULL::%1$I, c.pk) k WHERE c.table_name = %2$L AND c.op <> ''T'' '
                   'AND c.id > %3$s) k WHERE %4$s', t, t, trunc, cond);
    EXECUTE format('INSERT INTO %1$I SELECT r.* FROM (SELECT DISTINCT ON (pk) op, "row" FROM restore_changes '
                   'WHERE table_name = %2$L AND op <> ''T'' AND id > %3$s ORDER BY pk, id DESC) l, '
                   'jsonb_populate_record(NULL::%1$I, l."row") r WHERE l.op IN (''I'', ''U'')', t, t, trunc);
  END LOOP;
END $$;

${RESET_SEQUENCES}`;
}

export type ScriptTable = Pick<ManifestTable, 'name' | 'entries'>;
