-- Up Migration
--
-- The audit chain becomes keyed: each entry's `hash` is now an HMAC-SHA256 under the install's audit key
-- (secrets file `auditKey`), computed by attendux itself, never by the database, which never sees the key.
-- The digest input is a length-prefixed encoding of every field including the previous entry's MAC (see
-- src/core/audit/mac.ts). The database's part shrinks to what it can check without the key: one writer per
-- company at a time (advisory lock), consecutive seq, prev_hash equal to the head's MAC, a current time stamp.
--
-- Existing entries keep their unkeyed SHA-256 hashes (mac_version 1) until attendux re-chains them: a
-- migration cannot, since it does not have the key. `attendux migrate up` and `attendux audit rechain` do it
-- (the old chain is verified first, so that re-keying cannot launder an earlier edit).

ALTER TABLE audit_log ADD COLUMN mac_version smallint NOT NULL DEFAULT 1;
ALTER TABLE audit_log ALTER COLUMN mac_version SET DEFAULT 2;

-- May this session write company p_tenant's chain? The app role only its transaction's company (the one
-- attendux_enter_* set); the owner of the table (the CLI) any. Called from SECURITY DEFINER functions, where
-- session_user is still the role that logged in.
CREATE FUNCTION attendux_audit_may_write(p_tenant uuid) RETURNS boolean
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT p_tenant IS NOT DISTINCT FROM attendux_tenant()
      OR pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = 'public.audit_log'::regclass), 'USAGE')
$$;

-- First half of an append: lock company p_tenant's chain for this transaction and say what the next entry
-- links to (seq, time in microseconds since the epoch, the head's MAC) and how PostgreSQL normalises its
-- details (jsonb text, which is what a verifier reads back). attendux computes the MAC from this and calls
-- attendux_audit_append in the same transaction.
CREATE FUNCTION attendux_audit_next(p_tenant uuid, p_details jsonb)
  RETURNS TABLE (seq bigint, at_us bigint, prev_hash bytea, details text)
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
  last record;
BEGIN
  IF NOT attendux_audit_may_write(p_tenant) THEN
    RAISE EXCEPTION 'audit entries may only be written for the current company' USING ERRCODE = 'insufficient_privilege';
  END IF;
  -- Serialise writers of one company's chain; 1096107092 is 'AUDT' and keeps clear of other advisory locks.
  PERFORM pg_advisory_xact_lock(1096107092, hashtext(p_tenant::text));
  SELECT a.seq, a.hash INTO last FROM audit_log a WHERE a.tenant_id = p_tenant ORDER BY a.seq DESC LIMIT 1;
  seq := coalesce(last.seq, 0) + 1;
  prev_hash := coalesce(last.hash, '\x'::bytea);
  at_us := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
  details := coalesce(p_details, '{}'::jsonb)::text;
  RETURN NEXT;
END $$;

-- Second half: insert the entry with the MAC attendux computed. The only way the app role can write to
-- audit_log (it has no INSERT privilege on the table any more).
CREATE FUNCTION attendux_audit_append(
  p_tenant uuid, p_seq bigint, p_at_us bigint, p_actor text, p_action text, p_entity_type text, p_entity_id text,
  p_ip_hash text, p_ua_hash text, p_details jsonb, p_prev bytea, p_mac bytea) RETURNS void
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  IF NOT attendux_audit_may_write(p_tenant) THEN
    RAISE EXCEPTION 'audit entries may only be written for the current company' USING ERRCODE = 'insufficient_privilege';
  END IF;
  INSERT INTO audit_log (tenant_id, seq, at, actor, action, entity_type, entity_id, ip_hash, ua_hash, details,
                         prev_hash, hash, mac_version)
    VALUES (p_tenant, p_seq,
            -- exact to the microsecond: integer seconds and microseconds, no float arithmetic on the epoch
            to_timestamp(0) + (p_at_us / 1000000) * interval '1 second' + (p_at_us % 1000000) * interval '1 microsecond',
            p_actor, p_action, p_entity_type, p_entity_id, p_ip_hash, p_ua_hash, coalesce(p_details, '{}'::jsonb),
            p_prev, p_mac, 2);
END $$;

-- The trigger no longer computes anything: it checks what it can without the key. A row must continue the
-- head exactly (seq + 1, prev_hash = head's MAC), carry a 32-byte MAC and a time stamp of the last minute.
CREATE OR REPLACE FUNCTION attendux_audit_chain() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  last record;
BEGIN
  PERFORM pg_advisory_xact_lock(1096107092, hashtext(NEW.tenant_id::text));
  SELECT a.seq, a.hash INTO last FROM audit_log a WHERE a.tenant_id = NEW.tenant_id ORDER BY a.seq DESC LIMIT 1;
  IF NEW.seq IS DISTINCT FROM coalesce(last.seq, 0) + 1 OR NEW.prev_hash IS DISTINCT FROM coalesce(last.hash, '\x'::bytea) THEN
    RAISE EXCEPTION 'audit entry does not continue the chain of company % (seq %, head %)', NEW.tenant_id, NEW.seq,
      coalesce(last.seq, 0) USING ERRCODE = 'serialization_failure';
  END IF;
  IF NEW.mac_version <> 2 OR octet_length(NEW.hash) <> 32 THEN
    RAISE EXCEPTION 'audit entry without a MAC' USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.at > clock_timestamp() OR NEW.at < clock_timestamp() - interval '1 minute' THEN
    RAISE EXCEPTION 'audit entry time stamp % is not current', NEW.at USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;

-- Entries are never changed or removed by a statement. The old switch (attendux.audit_purge, a setting any
-- role could set) is gone: the only deletion path is attendux_audit_purge below.
CREATE OR REPLACE FUNCTION attendux_audit_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;

-- Retention. Deletes the oldest entries of one company, up to (not including) the first entry younger than
-- p_older_than, never the newest entry, nothing else; returns the last deleted (seq, MAC) for the signed
-- purge record attendux appends right after, in the same transaction. The append-only trigger is switched off
-- for this transaction only (ALTER TABLE is transactional and holds its lock to commit, so no other session
-- ever sees the table without it). Only the owner may run it.
CREATE FUNCTION attendux_audit_purge(p_tenant uuid, p_older_than interval)
  RETURNS TABLE (deleted bigint, through_seq bigint, through_mac bytea)
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
  cutoff timestamptz := now() - p_older_than;
  first_young bigint;
  head bigint;
BEGIN
  IF p_older_than < interval '1 day' THEN
    RAISE EXCEPTION 'audit retention must be at least one day' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM pg_advisory_xact_lock(1096107092, hashtext(p_tenant::text));
  SELECT max(a.seq) INTO head FROM audit_log a WHERE a.tenant_id = p_tenant;
  SELECT min(a.seq) INTO first_young FROM audit_log a WHERE a.tenant_id = p_tenant AND a.at >= cutoff;
  through_seq := least(coalesce(first_young, head + 1), head) - 1;
  SELECT a.hash INTO through_mac FROM audit_log a WHERE a.tenant_id = p_tenant AND a.seq = through_seq;
  IF through_mac IS NULL THEN
    deleted := 0;
    through_seq := NULL;
    RETURN NEXT;
    RETURN;
  END IF;
  ALTER TABLE audit_log DISABLE TRIGGER audit_log_immutable;
  DELETE FROM audit_log a WHERE a.tenant_id = p_tenant AND a.seq <= through_seq;
  GET DIAGNOSTICS deleted = ROW_COUNT;
  ALTER TABLE audit_log ENABLE TRIGGER audit_log_immutable;
  RETURN NEXT;
END $$;

-- Re-keying the chains of mac_version 1 (see the header): rows are rewritten in place with the MACs attendux
-- computed, staged by the caller in the temporary table audit_rechain (tenant_id, seq, prev_hash, hash).
CREATE FUNCTION attendux_audit_rechain_apply() RETURNS bigint
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  n bigint;
BEGIN
  ALTER TABLE audit_log DISABLE TRIGGER audit_log_immutable;
  UPDATE audit_log a SET prev_hash = r.prev_hash, hash = r.hash, mac_version = 2
    FROM pg_temp.audit_rechain r WHERE a.tenant_id = r.tenant_id AND a.seq = r.seq;
  GET DIAGNOSTICS n = ROW_COUNT;
  ALTER TABLE audit_log ENABLE TRIGGER audit_log_immutable;
  RETURN n;
END $$;

-- The head (seq, MAC) of every chain, for signed checkpoints: ids and MACs only, no entry content, so the
-- server (app role, under row-level security otherwise) may read them for every company.
CREATE FUNCTION attendux_audit_heads() RETURNS TABLE (tenant_id uuid, seq bigint, hash bytea)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT t.id, h.seq, h.hash
    FROM (SELECT id FROM tenants UNION SELECT '00000000-0000-0000-0000-000000000000'::uuid) t
    CROSS JOIN LATERAL (SELECT a.seq, a.hash FROM audit_log a WHERE a.tenant_id = t.id ORDER BY a.seq DESC LIMIT 1) h
$$;

REVOKE ALL ON FUNCTION attendux_audit_may_write(uuid), attendux_audit_next(uuid, jsonb),
  attendux_audit_append(uuid, bigint, bigint, text, text, text, text, text, text, jsonb, bytea, bytea),
  attendux_audit_purge(uuid, interval), attendux_audit_rechain_apply(), attendux_audit_heads() FROM PUBLIC;

-- The kiosk fast path no longer writes its audit entry inside the statement (the MAC needs the key):
-- attendux calls it inside a transaction and appends the entry right after, before COMMIT.
CREATE OR REPLACE FUNCTION attendux_record_checkin(
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
  id := ev_id;
  occurred_at := ev_at;
  RETURN NEXT;
END $$;

DO $$
DECLARE
  app text := current_setting('attendux.app_role');
BEGIN
  -- Appending goes through the two functions above: the app role cannot insert arbitrary rows.
  EXECUTE format('REVOKE INSERT ON audit_log FROM %I', app);
  EXECUTE format('GRANT EXECUTE ON FUNCTION attendux_audit_next(uuid, jsonb), '
                 'attendux_audit_append(uuid, bigint, bigint, text, text, text, text, text, text, jsonb, bytea, bytea), '
                 'attendux_audit_heads() TO %I', app);
END $$;

-- Down Migration

DO $$
BEGIN
  EXECUTE format('GRANT INSERT ON audit_log TO %I', current_setting('attendux.app_role'));
END $$;
DROP FUNCTION attendux_audit_heads(), attendux_audit_rechain_apply(), attendux_audit_purge(uuid, interval),
  attendux_audit_append(uuid, bigint, bigint, text, text, text, text, text, text, jsonb, bytea, bytea),
  attendux_audit_next(uuid, jsonb), attendux_audit_may_write(uuid);
CREATE OR REPLACE FUNCTION attendux_audit_chain() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  last record;
BEGIN
  PERFORM pg_advisory_xact_lock(1096107092, hashtext(NEW.tenant_id::text));
  SELECT a.seq, a.hash INTO last FROM audit_log a WHERE a.tenant_id = NEW.tenant_id ORDER BY a.seq DESC LIMIT 1;
  NEW.seq := coalesce(last.seq, 0) + 1;
  NEW.prev_hash := coalesce(last.hash, '\x'::bytea);
  NEW.at := clock_timestamp();
  NEW.hash := attendux_audit_digest(NEW.prev_hash, NEW.tenant_id, NEW.seq, NEW.at, NEW.actor, NEW.action,
    NEW.entity_type, NEW.entity_id, NEW.ip_hash, NEW.ua_hash, NEW.details);
  RETURN NEW;
END $$;
CREATE OR REPLACE FUNCTION attendux_audit_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('attendux.audit_purge', true) = 'on' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
-- The kiosk function of 0004 again: it wrote its audit entry itself (the trigger computed the hash).
CREATE OR REPLACE FUNCTION attendux_record_checkin(
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
ALTER TABLE audit_log DROP COLUMN mac_version;
