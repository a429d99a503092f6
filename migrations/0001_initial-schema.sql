-- Up Migration
--
-- The first schema, designed for the whole product. Conventions:
-- * Every company-owned table carries tenant_id as the first column of its primary key and of every foreign
--   key, so rows of one company only ever reference rows of the same company (and the schema is ready to be
--   distributed by tenant_id on Citus).
-- * Row-level security on every company-owned table: the app role (attendux.app_role, set by the migration
--   runner) sees only rows whose tenant_id equals the transaction's attendux.tenant_id setting, and nothing
--   at all when it is unset. The owner role (migrations, backups, CLI) owns the tables and bypasses RLS.
-- * Money in integer minor units; times as timestamptz.

CREATE FUNCTION attendux_tenant() RETURNS uuid
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT NULLIF(current_setting('attendux.tenant_id', true), '')::uuid $$;

CREATE TABLE tenants (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  time_zone   text NOT NULL DEFAULT 'UTC',
  currency    char(3) NOT NULL DEFAULT 'EUR' CHECK (currency ~ '^[A-Z]{3}$'),
  status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenant_settings (
  tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  key         text NOT NULL CHECK (key ~ '^[a-z][a-zA-Z0-9_.]{0,63}$'),
  value       jsonb NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  updated_by  text NOT NULL DEFAULT '',
  PRIMARY KEY (tenant_id, key)
);

CREATE TABLE teams (
  tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id          uuid NOT NULL DEFAULT gen_random_uuid(),
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, name)
);

CREATE TABLE employees (
  tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id                 uuid NOT NULL DEFAULT gen_random_uuid(),
  employee_number    text,
  full_name          text NOT NULL CHECK (length(full_name) BETWEEN 1 AND 200),
  email              text,
  team_id            uuid,
  hourly_rate_minor  bigint NOT NULL DEFAULT 0 CHECK (hourly_rate_minor >= 0),
  currency           char(3) NOT NULL DEFAULT 'EUR' CHECK (currency ~ '^[A-Z]{3}$'),
  time_zone          text NOT NULL DEFAULT 'UTC',
  status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
  -- AES-256-GCM ciphertext of the float32 face template (nonce || tag || ciphertext) and the id of the
  -- data-encryption key it was sealed with; `keys rotate-data-key` re-seals and changes the id.
  face_template      bytea,
  face_key_id        text,
  face_enrolled_at   timestamptz,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, employee_number),
  FOREIGN KEY (tenant_id, team_id) REFERENCES teams (tenant_id, id),
  CHECK ((face_template IS NULL) = (face_key_id IS NULL))
);
CREATE INDEX employees_team_idx ON employees (tenant_id, team_id);

CREATE TABLE users (
  tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id              uuid NOT NULL DEFAULT gen_random_uuid(),
  email           text NOT NULL CHECK (email = lower(email) AND email LIKE '%_@_%'),
  display_name    text NOT NULL DEFAULT '',
  password_hash   text,
  role            text NOT NULL CHECK (role IN ('owner', 'admin', 'manager', 'hr', 'employee')),
  employee_id     uuid,
  -- Sessions carry the epoch they were issued under; bumping it revokes every session of the user at once.
  session_epoch   integer NOT NULL DEFAULT 0,
  failed_logins   integer NOT NULL DEFAULT 0,
  locked_until    timestamptz,
  disabled_at     timestamptz,
  last_login_at   timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, email),
  FOREIGN KEY (tenant_id, employee_id) REFERENCES employees (tenant_id, id)
);

-- A manager manages teams; the manager role's scope is the employees of those teams.
CREATE TABLE team_managers (
  tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  team_id    uuid NOT NULL,
  user_id    uuid NOT NULL,
  PRIMARY KEY (tenant_id, team_id, user_id),
  FOREIGN KEY (tenant_id, team_id) REFERENCES teams (tenant_id, id) ON DELETE CASCADE,
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX team_managers_user_idx ON team_managers (tenant_id, user_id);

CREATE TABLE sites (
  tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id          uuid NOT NULL DEFAULT gen_random_uuid(),
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  latitude    double precision NOT NULL CHECK (latitude BETWEEN -90 AND 90),
  longitude   double precision NOT NULL CHECK (longitude BETWEEN -180 AND 180),
  radius_m    integer NOT NULL CHECK (radius_m BETWEEN 1 AND 100000),
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, name)
);

CREATE TABLE attendance_events (
  tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id             bigint GENERATED BY DEFAULT AS IDENTITY,
  employee_id    uuid NOT NULL,
  kind           text NOT NULL CHECK (kind IN ('check_in', 'check_out')),
  occurred_at    timestamptz NOT NULL,
  recorded_at    timestamptz NOT NULL DEFAULT now(),
  latitude       double precision CHECK (latitude BETWEEN -90 AND 90),
  longitude      double precision CHECK (longitude BETWEEN -180 AND 180),
  accuracy_m     real CHECK (accuracy_m >= 0),
  site_id        uuid,
  geofence       text NOT NULL CHECK (geofence IN ('inside', 'outside', 'unknown', 'not_required')),
  distance_m     real,
  method         text NOT NULL CHECK (method IN ('gps', 'face', 'kiosk', 'manual')),
  face_score     real,
  device_id      text,
  flagged        boolean NOT NULL DEFAULT false,
  correction_id  uuid,
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, employee_id) REFERENCES employees (tenant_id, id),
  FOREIGN KEY (tenant_id, site_id) REFERENCES sites (tenant_id, id)
);
CREATE INDEX attendance_events_employee_time_idx ON attendance_events (tenant_id, employee_id, occurred_at);

CREATE TABLE correction_requests (
  tenant_id              uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id                     uuid NOT NULL DEFAULT gen_random_uuid(),
  employee_id            uuid NOT NULL,
  requested_by           uuid NOT NULL,
  action                 text NOT NULL CHECK (action IN ('add', 'change', 'delete')),
  event_id               bigint,
  proposed_kind          text CHECK (proposed_kind IN ('check_in', 'check_out')),
  proposed_occurred_at   timestamptz,
  reason                 text NOT NULL CHECK (length(reason) BETWEEN 1 AND 2000),
  status                 text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
  decided_by             uuid,
  decided_at             timestamptz,
  decision_note          text,
  created_at             timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, employee_id) REFERENCES employees (tenant_id, id),
  FOREIGN KEY (tenant_id, requested_by) REFERENCES users (tenant_id, id),
  FOREIGN KEY (tenant_id, decided_by) REFERENCES users (tenant_id, id),
  FOREIGN KEY (tenant_id, event_id) REFERENCES attendance_events (tenant_id, id)
);
CREATE INDEX correction_requests_status_idx ON correction_requests (tenant_id, status);

CREATE TABLE api_keys (
  tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id            uuid NOT NULL DEFAULT gen_random_uuid(),
  name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  -- The public part of the key, unique across the install so a request can be routed to its company
  -- before any tenant is known. The secret is stored only as HMAC-SHA256 under the install's HMAC key.
  prefix        text NOT NULL UNIQUE,
  secret_hmac   bytea NOT NULL,
  scopes        text[] NOT NULL CHECK (scopes <@ ARRAY['read', 'check-in', 'admin']::text[] AND cardinality(scopes) > 0),
  created_by    text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz,
  last_used_at  timestamptz,
  revoked_at    timestamptz,
  PRIMARY KEY (tenant_id, id)
);

-- Append-only, hash-chained per company. Install-wide events (a company created from the CLI, a backup run)
-- use the all-zero tenant id. No foreign key to tenants: the record of a deleted company must survive it.
CREATE TABLE audit_log (
  tenant_id    uuid NOT NULL,
  seq          bigint NOT NULL,
  at           timestamptz NOT NULL DEFAULT clock_timestamp(),
  actor        text NOT NULL,
  action       text NOT NULL,
  entity_type  text,
  entity_id    text,
  -- Peppered SHA-256 of the client's IP address and user agent; the raw values are never stored.
  ip_hash      text,
  ua_hash      text,
  details      jsonb NOT NULL DEFAULT '{}',
  prev_hash    bytea NOT NULL,
  hash         bytea NOT NULL,
  PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_log_at_idx ON audit_log (at);

CREATE FUNCTION attendux_audit_digest(
  prev bytea, tenant uuid, seq bigint, at timestamptz, actor text, action text, entity_type text,
  entity_id text, ip_hash text, ua_hash text, details jsonb
) RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT sha256(prev || convert_to(concat_ws(E'\x1f',
    tenant::text, seq::text, (extract(epoch FROM at) * 1000000)::bigint::text, actor, action,
    coalesce(entity_type, ''), coalesce(entity_id, ''), coalesce(ip_hash, ''), coalesce(ua_hash, ''),
    details::text), 'UTF8'))
$$;

-- Assigns the next sequence number and links the entry to its predecessor. SECURITY DEFINER so that the
-- chain head is found whatever row-level security the inserting role is under.
CREATE FUNCTION attendux_audit_chain() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  last record;
BEGIN
  -- Serialise writers of one company's chain; 1096107092 is 'AUDT' and keeps clear of other advisory locks.
  PERFORM pg_advisory_xact_lock(1096107092, hashtext(NEW.tenant_id::text));
  SELECT a.seq, a.hash INTO last FROM audit_log a WHERE a.tenant_id = NEW.tenant_id ORDER BY a.seq DESC LIMIT 1;
  NEW.seq := coalesce(last.seq, 0) + 1;
  NEW.prev_hash := coalesce(last.hash, '\x'::bytea);
  NEW.at := clock_timestamp();
  NEW.hash := attendux_audit_digest(NEW.prev_hash, NEW.tenant_id, NEW.seq, NEW.at, NEW.actor, NEW.action,
    NEW.entity_type, NEW.entity_id, NEW.ip_hash, NEW.ua_hash, NEW.details);
  RETURN NEW;
END $$;
CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION attendux_audit_chain();

-- Entries are never changed. Only `attendux audit purge` (retention) may delete old ones, and it says so
-- by setting attendux.audit_purge for its transaction.
CREATE FUNCTION attendux_audit_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('attendux.audit_purge', true) = 'on' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_immutable BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION attendux_audit_immutable();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION attendux_audit_immutable();

-- Lookups that must happen before a company is known (login by company slug, API key by prefix).
-- They return only what routing needs; everything after runs under row-level security.
CREATE FUNCTION attendux_tenant_by_slug(p_slug text) RETURNS uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
  AS $$ SELECT id FROM tenants WHERE slug = p_slug AND status = 'active' $$;

CREATE FUNCTION attendux_api_key_by_prefix(p_prefix text)
  RETURNS TABLE (tenant_id uuid, id uuid, secret_hmac bytea, scopes text[], expires_at timestamptz, revoked_at timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
  AS $$ SELECT k.tenant_id, k.id, k.secret_hmac, k.scopes, k.expires_at, k.revoked_at
        FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
        WHERE k.prefix = p_prefix AND t.status = 'active' $$;

REVOKE ALL ON FUNCTION attendux_tenant_by_slug(text), attendux_api_key_by_prefix(text),
  attendux_audit_chain() FROM PUBLIC;

DO $$
DECLARE
  t text;
  app text := current_setting('attendux.app_role');
BEGIN
  FOREACH t IN ARRAY ARRAY['tenant_settings', 'teams', 'employees', 'users', 'team_managers', 'sites',
                           'attendance_events', 'correction_requests', 'api_keys', 'audit_log'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = attendux_tenant()) '
                   'WITH CHECK (tenant_id = attendux_tenant())', t);
  END LOOP;
  ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
  CREATE POLICY tenant_isolation ON tenants USING (id = attendux_tenant());

  EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', app);
  EXECUTE format('GRANT SELECT ON tenants TO %I', app);
  EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_settings, teams, employees, users, '
                 'team_managers, sites, attendance_events, correction_requests, api_keys TO %I', app);
  EXECUTE format('GRANT USAGE ON SEQUENCE attendance_events_id_seq TO %I', app);
  -- The app role may read and append audit entries, never change or remove them.
  EXECUTE format('GRANT SELECT, INSERT ON audit_log TO %I', app);
  EXECUTE format('GRANT EXECUTE ON FUNCTION attendux_tenant_by_slug(text), '
                 'attendux_api_key_by_prefix(text) TO %I', app);
END $$;

-- Down Migration

DROP TABLE audit_log, api_keys, correction_requests, attendance_events, sites, team_managers, users,
  employees, teams, tenant_settings, tenants CASCADE;
DROP FUNCTION attendux_audit_chain(), attendux_audit_immutable(), attendux_audit_digest(bytea, uuid, bigint,
  timestamptz, text, text, text, text, text, text, jsonb), attendux_tenant_by_slug(text),
  attendux_api_key_by_prefix(text), attendux_tenant();
