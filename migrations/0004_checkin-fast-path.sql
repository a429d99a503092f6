-- Up Migration
--
-- Entering a company's transaction with parameters only, and the kiosk check-in in two single statements.
--
-- set_config(..., true) inside a function lasts until the end of the calling transaction, so every
-- statement and row-level security policy evaluated after it in the same transaction sees the company.
-- Called inside BEGIN ... COMMIT (the server's generic request transaction) that is the whole request;
-- called as a lone statement (the kiosk fast path) it is the statement's own implicit transaction, and the
-- setting is gone when the statement returns: nothing stays behind on the pooled connection.
-- All functions are SECURITY INVOKER (the default): the app role runs them, under row-level security.

-- Set the company of the current transaction.
CREATE FUNCTION attendux_enter_tenant(p_tenant uuid) RETURNS uuid
  LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
BEGIN
  PERFORM set_config('attendux.tenant_id', p_tenant::text, true);
  RETURN p_tenant;
END $$;

-- Enter a company's transaction as a session's user: what confirming the session needs (the user's role,
-- session epoch, disabled flag and linked employee), or no row.
CREATE FUNCTION attendux_enter_session(p_tenant uuid, p_user uuid)
  RETURNS TABLE (role text, session_epoch integer, disabled boolean, employee_id uuid)
  LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
#variable_conflict use_column
BEGIN
  PERFORM set_config('attendux.tenant_id', p_tenant::text, true);
  RETURN QUERY
    SELECT u.role, u.session_epoch, u.disabled_at IS NOT NULL, u.employee_id
      FROM users u WHERE u.tenant_id = p_tenant AND u.id = p_user;
END $$;

-- Enter a company's transaction with an API key: is the key live (with p_touch, also record its use)?
CREATE FUNCTION attendux_enter_api_key(p_tenant uuid, p_key uuid, p_touch boolean) RETURNS boolean
  LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
BEGIN
  PERFORM set_config('attendux.tenant_id', p_tenant::text, true);
  RETURN attendux_api_key_live(p_tenant, p_key, p_touch);
END $$;

-- A fingerprint of everything a check-in verdict depends on (the employee's status and face template, the
-- company's sites and settings): the server may judge from a cached context, and the insert proceeds only when
-- the fingerprint still matches the database in the inserting statement.
CREATE FUNCTION attendux_checkin_version(p_status text, p_face_template bytea, p_face_key_id text, p_sites json,
                                         p_settings jsonb) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT md5(concat_ws(E'\x1f', p_status, coalesce(md5(p_face_template), '-'), coalesce(p_face_key_id, '-'),
                       p_sites::text, coalesce(p_settings::text, '-')))
$$;

-- Kiosk check-in, loading the context: is the key live, and everything the verdict needs (the employee, the
-- company's sites and settings). A dead key answers one row with key_live false and nothing else; a live key
-- and an unknown employee (of this company: row-level security hides the others) one row with id NULL.
CREATE FUNCTION attendux_checkin_context(p_tenant uuid, p_key uuid, p_touch boolean, p_employee uuid)
  RETURNS TABLE (key_live boolean, id uuid, status text, face_template bytea, face_key_id text, sites json,
                 settings jsonb, version text)
  LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
#variable_conflict use_column
BEGIN
  PERFORM set_config('attendux.tenant_id', p_tenant::text, true);
  key_live := attendux_api_key_live(p_tenant, p_key, p_touch);
  IF key_live THEN
    RETURN QUERY
      SELECT true, s.id, s.status, s.face_template, s.face_key_id, s.sites, s.settings,
             attendux_checkin_version(s.status, s.face_template, s.face_key_id, s.sites, s.settings)
        FROM attendux_checkin_subject(p_tenant, p_employee) s;
    IF FOUND THEN
      RETURN;
    END IF;
  END IF;
  RETURN NEXT;
END $$;

-- Kiosk check-in, recording: the event and its audit entry, atomically (one statement, one transaction: the
-- audit chain and change-capture triggers run as for any insert). The key is checked in the same statement,
-- so a revocation committed since the context was loaded still wins (key_live false, nothing written); a
-- context whose fingerprint no longer matches (p_version) answers fresh false and writes nothing, and the
-- server judges again from a fresh context.
CREATE FUNCTION attendux_record_checkin(
  p_tenant uuid, p_key uuid, p_touch boolean, p_employee uuid, p_version text, p_kind text,
  p_latitude double precision, p_longitude double precision, p_accuracy real, p_site uuid, p_geofence text,
  p_distance real, p_method text, p_face_score real, p_device text, p_flagged boolean, p_actor text, p_action text,
  p_ip_hash text, p_ua_hash text, p_details jsonb)
  RETURNS TABLE (key_live boolean, fresh boolean, id bigint, occurred_at timestamptz)
  LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
  ev_id bigint;
  ev_at timestamptz;
  cur text;
BEGIN
  PERFORM set_config('attendux.tenant_id', p_tenant::text, true);
  key_live := attendux_api_key_live(p_tenant, p_key, p_touch);
  IF NOT key_live THEN
    RETURN NEXT;
    RETURN;
  END IF;
  SELECT attendux_checkin_version(s.status, s.face_template, s.face_key_id, s.sites, s.settings) INTO cur
    FROM attendux_checkin_subject(p_tenant, p_employee) s;
  fresh := cur IS NOT DISTINCT FROM p_version;
  IF NOT fresh THEN
    RETURN NEXT;
    RETURN;
  END IF;
  INSERT INTO attendance_events AS a (tenant_id, employee_id, kind, occurred_at, latitude, longitude, accuracy_m,
                                      site_id, geofence, distance_m, method, face_score, device_id, flagged)
    VALUES (p_tenant, p_employee, p_kind, now(), p_latitude, p_longitude, p_accuracy, p_site, p_geofence,
            p_distance, p_method, p_face_score, p_device, p_flagged)
    RETURNING a.id, a.occurred_at INTO ev_id, ev_at;
  -- The audit_log trigger assigns seq, at, prev_hash and hash.
  INSERT INTO audit_log (tenant_id, actor, action, entity_type, entity_id, ip_hash, ua_hash, details, prev_hash,
                         hash)
    VALUES (p_tenant, p_actor, p_action, 'attendance_event', ev_id::text, p_ip_hash, p_ua_hash, p_details, '\x',
            '\x');
  id := ev_id;
  occurred_at := ev_at;
  RETURN NEXT;
END $$;

REVOKE ALL ON FUNCTION attendux_enter_tenant(uuid), attendux_enter_session(uuid, uuid),
  attendux_enter_api_key(uuid, uuid, boolean), attendux_checkin_context(uuid, uuid, boolean, uuid),
  attendux_record_checkin(uuid, uuid, boolean, uuid, text, text, double precision, double precision, real,
                          uuid, text, real, text, real, text, boolean, text, text, text, text, jsonb),
  attendux_checkin_version(text, bytea, text, json, jsonb) FROM PUBLIC;

DO $$
BEGIN
  EXECUTE format('GRANT EXECUTE ON FUNCTION attendux_enter_tenant(uuid), attendux_enter_session(uuid, uuid), '
                 'attendux_enter_api_key(uuid, uuid, boolean), '
                 'attendux_checkin_context(uuid, uuid, boolean, uuid), '
                 'attendux_checkin_version(text, bytea, text, json, jsonb), '
                 'attendux_record_checkin(uuid, uuid, boolean, uuid, text, text, double precision, double precision, '
                 'real, uuid, text, real, text, real, text, boolean, text, text, text, text, jsonb) TO %I',
                 current_setting('attendux.app_role'));
END $$;

-- Down Migration

DROP FUNCTION attendux_record_checkin(uuid, uuid, boolean, uuid, text, text, double precision, double precision, real,
  uuid, text, real, text, real, text, boolean, text, text, text, text, jsonb),
  attendux_checkin_version(text, bytea, text, json, jsonb),
  attendux_checkin_context(uuid, uuid, boolean, uuid), attendux_enter_api_key(uuid, uuid, boolean),
  attendux_enter_session(uuid, uuid), attendux_enter_tenant(uuid);
