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

-- The kiosk check-in hot path. PL/pgSQL caches the plans of its statements per connection, where the same
-- SQL sent over the simple protocol would be planned on every request. SECURITY INVOKER (the default): the
-- app role calls them, so row-level security applies exactly as to the plain statements.
CREATE FUNCTION attendux_checkin_subject(p_tenant uuid, p_employee uuid)
  RETURNS TABLE (id uuid, status text, face_template bytea, face_key_id text, sites json, settings jsonb)
  LANGUAGE plpgsql STABLE SET search_path = public, pg_temp AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
    SELECT e.id, e.status, e.face_template, e.face_key_id,
           coalesce((SELECT json_agg(json_build_object('id', s.id, 'latitude', s.latitude, 'longitude', s.longitude,
                                                       'radiusM', s.radius_m))
                       FROM sites s WHERE s.tenant_id = p_tenant), '[]'::json),
           (SELECT jsonb_object_agg(ts.key, ts.value) FROM tenant_settings ts WHERE ts.tenant_id = p_tenant)
      FROM employees e WHERE e.tenant_id = p_tenant AND e.id = p_employee;
END $$;

-- Is the API key live (not revoked, not expired)? With p_touch it also records the use.
CREATE FUNCTION attendux_api_key_live(p_tenant uuid, p_key uuid, p_touch boolean) RETURNS boolean
  LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
  ok boolean;
BEGIN
  IF p_touch THEN
    UPDATE api_keys k SET last_used_at = now()
     WHERE k.tenant_id = p_tenant AND k.id = p_key AND k.revoked_at IS NULL
       AND (k.expires_at IS NULL OR k.expires_at > now())
    RETURNING true INTO ok;
  ELSE
    SELECT k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()) INTO ok
      FROM api_keys k WHERE k.tenant_id = p_tenant AND k.id = p_key;
  END IF;
  RETURN coalesce(ok, false);
END $$;

DO $$
BEGIN
  EXECUTE format('GRANT EXECUTE ON FUNCTION attendux_applied_migrations(), attendux_checkin_subject(uuid, uuid), '
                 'attendux_api_key_live(uuid, uuid, boolean) TO %I', current_setting('attendux.app_role'));
END $$;

-- Down Migration

DROP FUNCTION attendux_api_key_live(uuid, uuid, boolean), attendux_checkin_subject(uuid, uuid),
  attendux_applied_migrations();
DROP INDEX attendance_events_time_idx;
