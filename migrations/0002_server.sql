-- Up Migration
--
-- What the HTTP server needs beyond the first schema.

-- Payroll exports and timesheets of a whole company scan a date range across all employees.
CREATE INDEX attendance_events_time_idx ON attendance_events (tenant_id, occurred_at);

-- /readyz compares the applied migrations with the ones the running code ships, as the app role, which may
-- not read the migrations table itself.
CREATE FUNCTION attendux_applied_migrations() RETURNS SETOF text
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
  AS $$ SELECT name FROM pgmigrations ORDER BY run_on, id $$;

REVOKE ALL ON FUNCTION attendux_applied_migrations() FROM PUBLIC;

DO $$
BEGIN
  EXECUTE format('GRANT EXECUTE ON FUNCTION attendux_applied_migrations() TO %I',
                 current_setting('attendux.app_role'));
END $$;

-- Down Migration

DROP FUNCTION attendux_applied_migrations();
DROP INDEX attendance_events_time_idx;
