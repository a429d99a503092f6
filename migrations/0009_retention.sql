-- Up Migration
--
-- Company deletion (issue 12, `attendux tenant delete`), and what a restore needs to repeat it: the ledger
-- entry `tenant.deleted` is re-applied after every restore by calling attendux_delete_tenant again
-- (src/core/ledger). Data retention (`attendux retention apply`) needs no schema: it is plain set-based SQL in
-- src/db/queries/retention.ts.

-- The application tables that hold rows of a company (a tenant_id column), except the audit log: the record of
-- a deleted company outlives it (audit_log has no foreign key to tenants for that reason).
CREATE FUNCTION attendux_tenant_tables() RETURNS SETOF text
  LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  SELECT b FROM attendux_backup_tables() b
   WHERE b <> 'audit_log'
     AND EXISTS (SELECT 1 FROM pg_attribute a
                  WHERE a.attrelid = format('%I', b)::regclass AND a.attname = 'tenant_id' AND NOT a.attisdropped)
   ORDER BY 1
$$;

-- How many rows of company p_tenant each table holds (tenants: the company's own row). The ledger's
-- `tenant.deleted` entries are not counted: they are what keeps the company deleted.
CREATE FUNCTION attendux_tenant_rows(p_tenant uuid) RETURNS TABLE (table_name text, n bigint)
  LANGUAGE plpgsql STABLE SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
  t text;
BEGIN
  FOR t IN SELECT attendux_tenant_tables() LOOP
    table_name := t;
    IF t = 'security_ledger' THEN
      SELECT count(*) INTO n FROM security_ledger WHERE tenant_id = p_tenant AND kind <> 'tenant.deleted';
    ELSE
      EXECUTE format('SELECT count(*) FROM %I WHERE tenant_id = $1', t) INTO n USING p_tenant;
    END IF;
    RETURN NEXT;
  END LOOP;
  table_name := 'tenants';
  SELECT count(*) INTO n FROM tenants WHERE id = p_tenant;
  RETURN NEXT;
END $$;

-- Delete every row of company p_tenant (but its audit log and its `tenant.deleted` ledger entries), in the
-- caller's transaction; returns the number of rows deleted. Generic over the tables, so that a table added by
-- a later migration is covered without touching this: a table whose rows are still referenced by another
-- table's rows (a foreign key without ON DELETE CASCADE) is retried after the others, in rounds, each try in
-- its own subtransaction. The company's own row goes last.
CREATE FUNCTION attendux_delete_tenant(p_tenant uuid) RETURNS bigint
  LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
DECLARE
  pending text[];
  later text[];
  t text;
  n bigint;
  total bigint := 0;
BEGIN
  SELECT array_agg(x) || ARRAY['tenants'] INTO pending FROM attendux_tenant_tables() x;
  WHILE cardinality(pending) > 0 LOOP
    later := '{}';
    FOREACH t IN ARRAY pending LOOP
      BEGIN
        IF t = 'tenants' THEN
          DELETE FROM tenants WHERE id = p_tenant;
        ELSIF t = 'security_ledger' THEN
          DELETE FROM security_ledger WHERE tenant_id = p_tenant AND kind <> 'tenant.deleted';
        ELSE
          EXECUTE format('DELETE FROM %I WHERE tenant_id = $1', t) USING p_tenant;
        END IF;
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
      EXCEPTION WHEN foreign_key_violation THEN
        later := later || t;
      END;
    END LOOP;
    IF cardinality(later) = cardinality(pending) THEN
      RAISE EXCEPTION 'cannot delete company %: rows of % are still referenced', p_tenant, later
        USING ERRCODE = 'foreign_key_violation';
    END IF;
    pending := later;
  END LOOP;
  RETURN total;
END $$;

REVOKE ALL ON FUNCTION attendux_tenant_tables(), attendux_tenant_rows(uuid), attendux_delete_tenant(uuid)
  FROM PUBLIC;

-- Down Migration

DROP FUNCTION attendux_delete_tenant(uuid), attendux_tenant_rows(uuid), attendux_tenant_tables();
