-- Up Migration
--
-- Change capture for incremental backups. Every write to an application table leaves one row in change_log,
-- in the same transaction, stamped with the writing transaction's id (xid8). An incremental backup takes the
-- rows whose transaction is NOT visible in its parent backup's snapshot, read inside its own repeatable-read
-- snapshot: a change lands in exactly one backup, even when its transaction was open while a backup ran.
--
-- Tables are attached dynamically (every table of schema public except the bookkeeping ones below), so
-- tables added by earlier migrations are covered. A later migration that adds a table calls
--   SELECT attendux_capture_changes('new_table');
-- and every backup run also attaches the trigger to any table that lacks it (attendux_capture_all()).

CREATE TABLE change_log (
  id          bigserial PRIMARY KEY,
  txid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
  -- Wall-clock time of the change, so that a restore can stop at a point in time (whole transactions).
  at          timestamptz NOT NULL DEFAULT clock_timestamp(),
  table_name  text NOT NULL,
  -- I insert, U update, D delete, T truncate (the whole table; pk and row are NULL).
  op          char(1) NOT NULL CHECK (op IN ('I', 'U', 'D', 'T')),
  tenant_id   uuid,
  pk          jsonb,
  "row"       jsonb
);
CREATE INDEX change_log_txid_idx ON change_log (txid);

-- One row naming this database: a restored copy gets a fresh id (this table is never backed up), so an
-- incremental can tell that its parent backup was taken from a different database.
CREATE TABLE backup_meta (
  singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  database_id     uuid NOT NULL DEFAULT gen_random_uuid(),
  -- change_log rows of transactions below this id were deleted after a backup; an incremental whose parent
  -- snapshot needs older ones (its parent is not the newest backup any more) must refuse.
  trimmed_before  xid8 NOT NULL DEFAULT '0'
);
INSERT INTO backup_meta DEFAULT VALUES;

-- SECURITY DEFINER: the app role's writes fire it, yet the app role has no privilege on change_log at all
-- (it can neither read the log of other companies nor forge entries). TG_ARGV holds the primary-key columns.
CREATE FUNCTION attendux_change_capture() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  r jsonb;
  o jsonb;
  pk jsonb := '{}';
  old_pk jsonb := '{}';
  col text;
  tenant uuid;
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    INSERT INTO change_log (table_name, op) VALUES (TG_TABLE_NAME, 'T');
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' THEN r := to_jsonb(OLD); ELSE r := to_jsonb(NEW); END IF;
  FOREACH col IN ARRAY TG_ARGV LOOP
    pk := pk || jsonb_build_object(col, r -> col);
  END LOOP;
  tenant := CASE WHEN TG_TABLE_NAME = 'tenants' THEN (r ->> 'id')::uuid ELSE (r ->> 'tenant_id')::uuid END;
  IF TG_OP = 'UPDATE' THEN
    o := to_jsonb(OLD);
    FOREACH col IN ARRAY TG_ARGV LOOP
      old_pk := old_pk || jsonb_build_object(col, o -> col);
    END LOOP;
    -- A primary-key change is a delete of the old key and an insert of the new one.
    IF old_pk IS DISTINCT FROM pk THEN
      INSERT INTO change_log (table_name, op, tenant_id, pk)
        VALUES (TG_TABLE_NAME, 'D',
                CASE WHEN TG_TABLE_NAME = 'tenants' THEN (o ->> 'id')::uuid ELSE (o ->> 'tenant_id')::uuid END,
                old_pk);
      INSERT INTO change_log (table_name, op, tenant_id, pk, "row") VALUES (TG_TABLE_NAME, 'I', tenant, pk, r);
      RETURN NULL;
    END IF;
  END IF;
  INSERT INTO change_log (table_name, op, tenant_id, pk, "row")
    VALUES (TG_TABLE_NAME, left(TG_OP, 1), tenant, pk, CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE r END);
  RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION attendux_change_capture() FROM PUBLIC;

-- Attach (or re-attach, after a primary key changed) the capture triggers to one table.
CREATE FUNCTION attendux_capture_changes(tbl regclass) RETURNS void
  LANGUAGE plpgsql SET search_path = public, pg_temp SET client_min_messages = warning AS $$
DECLARE
  cols text[];
BEGIN
  SELECT array_agg(a.attname::text ORDER BY k.ord) INTO cols
    FROM pg_index i
    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
   WHERE i.indrelid = tbl AND i.indisprimary;
  IF cols IS NULL THEN
    RAISE EXCEPTION 'table % has no primary key; incremental backups need one', tbl;
  END IF;
  EXECUTE format('DROP TRIGGER IF EXISTS attendux_change_capture ON %s', tbl);
  EXECUTE format('DROP TRIGGER IF EXISTS attendux_change_capture_truncate ON %s', tbl);
  EXECUTE format('CREATE TRIGGER attendux_change_capture AFTER INSERT OR UPDATE OR DELETE ON %s '
                 'FOR EACH ROW EXECUTE FUNCTION attendux_change_capture(%s)',
                 tbl, (SELECT string_agg(quote_literal(c), ', ') FROM unnest(cols) c));
  EXECUTE format('CREATE TRIGGER attendux_change_capture_truncate AFTER TRUNCATE ON %s '
                 'FOR EACH STATEMENT EXECUTE FUNCTION attendux_change_capture()', tbl);
END $$;

-- The application tables: every ordinary table of schema public except the bookkeeping ones.
CREATE FUNCTION attendux_backup_tables() RETURNS SETOF text
  LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
     AND c.relname NOT IN ('pgmigrations', 'change_log', 'backup_meta')
   ORDER BY 1
$$;

-- Attach the triggers to every application table that lacks them; returns the tables attached.
CREATE FUNCTION attendux_capture_all() RETURNS SETOF text
  LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
  t text;
BEGIN
  FOR t IN SELECT b FROM attendux_backup_tables() b
            WHERE NOT EXISTS (SELECT 1 FROM pg_trigger g
                               WHERE g.tgrelid = format('%I', b)::regclass
                                 AND g.tgname = 'attendux_change_capture') LOOP
    PERFORM attendux_capture_changes(format('%I', t)::regclass);
    RETURN NEXT t;
  END LOOP;
END $$;

SELECT count(*) FROM attendux_capture_all();

-- Down Migration

DO $$
DECLARE
  t text;
BEGIN
  FOR t IN SELECT attendux_backup_tables() LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS attendux_change_capture ON %I', t);
    EXECUTE format('DROP TRIGGER IF EXISTS attendux_change_capture_truncate ON %I', t);
  END LOOP;
END $$;
DROP FUNCTION attendux_capture_all(), attendux_backup_tables(), attendux_capture_changes(regclass),
  attendux_change_capture();
DROP TABLE change_log, backup_meta;
