-- Up Migration
--
-- Serving from several processes or hosts (issue 17): maintenance mode in the database, so that every serve
-- instance sees it, not only the ones on the host whose data dir holds maintenance.json; and the kiosk
-- check-in's first statement also opening its audit entry, one round trip fewer per check-in.

-- At most one row: the server is in maintenance while it exists. Written by `restore --in-place` (the owner
-- role), read by every serve instance (the app role) at most once a second. Bookkeeping of this database,
-- never backed up nor captured: a restored database must not come back in maintenance.
CREATE TABLE server_maintenance (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  reason text NOT NULL,
  retry_after_seconds integer NOT NULL CHECK (retry_after_seconds > 0),
  since timestamptz NOT NULL DEFAULT now(),
  -- The writer, so that serve on the writer's host can tell a killed restore's leftover (as with the file).
  host text NOT NULL,
  pid integer NOT NULL
);

CREATE OR REPLACE FUNCTION attendux_backup_tables() RETURNS SETOF text
  LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
     AND c.relname NOT IN ('pgmigrations', 'change_log', 'backup_meta', 'change_commits', 'server_maintenance')
   ORDER BY 1
$$;

-- attendux_record_checkin, and when it inserted the event, attendux_audit_next for its entry (same company,
-- same details): attendux computes the MAC from the second half of the row and appends the entry.
CREATE FUNCTION attendux_record_checkin_next(
  p_tenant uuid, p_key uuid, p_touch boolean, p_employee uuid, p_version text, p_kind text,
  p_latitude double precision, p_longitude double precision, p_accuracy real, p_site uuid, p_geofence text,
  p_distance real, p_method text, p_face_score real, p_device text, p_flagged boolean, p_actor text, p_action text,
  p_ip_hash text, p_ua_hash text, p_details jsonb)
  RETURNS TABLE (key_live boolean, fresh boolean, id bigint, occurred_at timestamptz,
                 seq bigint, at_us bigint, prev_hash bytea, details text)
  LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
DECLARE
  r record;
  n record;
BEGIN
  SELECT * INTO r FROM attendux_record_checkin(p_tenant, p_key, p_touch, p_employee, p_version, p_kind,
    p_latitude, p_longitude, p_accuracy, p_site, p_geofence, p_distance, p_method, p_face_score, p_device,
    p_flagged, p_actor, p_action, p_ip_hash, p_ua_hash, p_details);
  key_live := r.key_live;
  fresh := r.fresh;
  id := r.id;
  occurred_at := r.occurred_at;
  IF r.id IS NOT NULL THEN
    SELECT * INTO n FROM attendux_audit_next(p_tenant, p_details);
    seq := n.seq;
    at_us := n.at_us;
    prev_hash := n.prev_hash;
    details := n.details;
  END IF;
  RETURN NEXT;
END $$;

REVOKE ALL ON FUNCTION attendux_record_checkin_next(uuid, uuid, boolean, uuid, text, text, double precision,
  double precision, real, uuid, text, real, text, real, text, boolean, text, text, text, text, jsonb) FROM PUBLIC;

DO $$
DECLARE
  app text := current_setting('attendux.app_role');
BEGIN
  EXECUTE format('GRANT SELECT ON server_maintenance TO %I', app);
  EXECUTE format('GRANT EXECUTE ON FUNCTION attendux_record_checkin_next(uuid, uuid, boolean, uuid, text, text, '
                 'double precision, double precision, real, uuid, text, real, text, real, text, boolean, text, '
                 'text, text, text, jsonb) TO %I', app);
END $$;

-- Down Migration

DROP FUNCTION attendux_record_checkin_next(uuid, uuid, boolean, uuid, text, text, double precision,
  double precision, real, uuid, text, real, text, real, text, boolean, text, text, text, text, jsonb);
CREATE OR REPLACE FUNCTION attendux_backup_tables() RETURNS SETOF text
  LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
  SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
     AND c.relname NOT IN ('pgmigrations', 'change_log', 'backup_meta', 'change_commits')
   ORDER BY 1
$$;
DROP TABLE server_maintenance;
