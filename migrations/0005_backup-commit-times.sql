-- Up Migration
--
-- Commit times for point-in-time restores. `change_log.at` is the time of each change, but a restore to
-- `--at T` must keep exactly the transactions that COMMITTED at or before T: a transaction whose last change
-- was before T may commit after it (seconds later, for a long one). PostgreSQL's own commit timestamps need
-- `track_commit_timestamp = on`, a server setting attendux cannot assume on an external cluster; so the
-- change-capture trigger queues one row per transaction here, and a deferred constraint trigger stamps it
-- with clock_timestamp() when the transaction commits (deferred triggers run at COMMIT, after every
-- statement of the transaction). Incrementals export this time as the `at` of every change of the
-- transaction.

CREATE TABLE change_commits (
  txid          xid8 PRIMARY KEY,
  committed_at  timestamptz
);

CREATE FUNCTION attendux_commit_time() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  UPDATE change_commits SET committed_at = clock_timestamp() WHERE txid = NEW.txid;
  RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION attendux_commit_time() FROM PUBLIC;

CREATE CONSTRAINT TRIGGER attendux_commit_time AFTER INSERT ON change_commits
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION attendux_commit_time();

-- Bookkeeping, never backed up nor captured.
CREATE OR REPLACE FUNCTION attendux_backup_tables() RETURNS SETOF text
  LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
     AND c.relname NOT IN ('pgmigrations', 'change_log', 'backup_meta', 'change_commits')
   ORDER BY 1
$$;


CREATE OR REPLACE FUNCTION attendux_change_capture() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  r jsonb;
  o jsonb;
  pk jsonb := '{}';
  old_pk jsonb := '{}';
  col text;
  tenant uuid;
BEGIN
  -- First change of this transaction: queue its commit-time marker (a deferred trigger stamps it at COMMIT).
  -- The transaction-local setting makes that one insert per transaction; a rolled-back savepoint undoes
  -- both the insert and the setting.
  IF current_setting('attendux.commit_marker', true) IS DISTINCT FROM pg_current_xact_id()::text THEN
    INSERT INTO change_commits (txid) VALUES (pg_current_xact_id()) ON CONFLICT DO NOTHING;
    PERFORM set_config('attendux.commit_marker', pg_current_xact_id()::text, true);
  END IF;
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

-- Down Migration

CREATE OR REPLACE FUNCTION attendux_change_capture() RETURNS trigger
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

CREATE OR REPLACE FUNCTION attendux_backup_tables() RETURNS SETOF text
  LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
     AND c.relname NOT IN ('pgmigrations', 'change_log', 'backup_meta')
   ORDER BY 1
$$;


DROP TABLE change_commits;
DROP FUNCTION attendux_commit_time();
