-- Up Migration
--
-- Security hardening (issue 10):
-- * security_ledger: the changes a restore must never undo (key revocations, session-epoch bumps,
--   disablements, password changes, role downgrades; later erasures and company deletions). Entries are
--   written by triggers, so every path (CLI, server, future code) records them in the same transaction as the
--   change itself. `src/core/ledger/` mirrors them to <dataDir>/security-ledger.jsonl and re-applies them
--   after every restore.
-- * login_throttle: failed logins and password changes counted per (account, client address) instead of
--   per account, so that knowing an email is not enough to lock its owner out.
-- * One user per employee.

CREATE TABLE security_ledger (
  -- uuid, not a sequence: entries from the mirror file, the live database and a restored copy merge by id.
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  at          timestamptz NOT NULL DEFAULT clock_timestamp(),
  txid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
  tenant_id   uuid NOT NULL,
  -- api_key.revoked, user.session_epoch, user.disabled, user.password, user.role_downgrade (the DSAR work
  -- adds employee.erased and tenant.deleted).
  kind        text NOT NULL CHECK (kind ~ '^[a-z_]+\.[a-z_]+$'),
  entity_id   uuid NOT NULL,
  data        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX security_ledger_at_idx ON security_ledger (at);
CREATE INDEX security_ledger_tx_idx ON security_ledger (tenant_id, txid);

-- Role ranks for "downgrade": a move to a role that is not strictly more powerful is recorded (manager and
-- hr are siblings: a move between them is recorded too, so a restore never gives back the old powers).
CREATE FUNCTION attendux_role_rank(r text) RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE r WHEN 'owner' THEN 4 WHEN 'admin' THEN 3 WHEN 'manager' THEN 2 WHEN 'hr' THEN 2 ELSE 1 END
$$;

-- SECURITY DEFINER: the app role's updates fire it, and the app role may not write the ledger itself.
-- A restore re-applying the ledger sets attendux.ledger_replay so that replayed changes are not recorded
-- twice.
CREATE FUNCTION attendux_ledger_users() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  IF current_setting('attendux.ledger_replay', true) = 'on' THEN
    RETURN NULL;
  END IF;
  IF NEW.session_epoch > OLD.session_epoch THEN
    INSERT INTO security_ledger (tenant_id, kind, entity_id, data)
      VALUES (NEW.tenant_id, 'user.session_epoch', NEW.id, jsonb_build_object('epoch', NEW.session_epoch));
  END IF;
  IF OLD.disabled_at IS NULL AND NEW.disabled_at IS NOT NULL THEN
    INSERT INTO security_ledger (tenant_id, kind, entity_id, data)
      VALUES (NEW.tenant_id, 'user.disabled', NEW.id, jsonb_build_object('disabledAt', NEW.disabled_at));
  END IF;
  IF NEW.password_hash IS DISTINCT FROM OLD.password_hash THEN
    INSERT INTO security_ledger (tenant_id, kind, entity_id, data)
      VALUES (NEW.tenant_id, 'user.password', NEW.id, jsonb_build_object('passwordHash', NEW.password_hash));
  END IF;
  IF NEW.role <> OLD.role AND attendux_role_rank(NEW.role) <= attendux_role_rank(OLD.role) THEN
    INSERT INTO security_ledger (tenant_id, kind, entity_id, data)
      VALUES (NEW.tenant_id, 'user.role_downgrade', NEW.id, jsonb_build_object('role', NEW.role, 'from', OLD.role));
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER users_security_ledger AFTER UPDATE ON users
  FOR EACH ROW EXECUTE FUNCTION attendux_ledger_users();

CREATE FUNCTION attendux_ledger_api_keys() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  IF current_setting('attendux.ledger_replay', true) = 'on' THEN
    RETURN NULL;
  END IF;
  IF OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL THEN
    INSERT INTO security_ledger (tenant_id, kind, entity_id, data)
      VALUES (NEW.tenant_id, 'api_key.revoked', NEW.id, jsonb_build_object('revokedAt', NEW.revoked_at));
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER api_keys_security_ledger AFTER UPDATE ON api_keys
  FOR EACH ROW EXECUTE FUNCTION attendux_ledger_api_keys();

REVOKE ALL ON FUNCTION attendux_ledger_users(), attendux_ledger_api_keys() FROM PUBLIC;

-- Failed logins and wrong current passwords per (account, peppered client-address hash).
CREATE TABLE login_throttle (
  tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  user_id       uuid NOT NULL,
  ip_hash       text NOT NULL,
  failures      integer NOT NULL DEFAULT 0,
  locked_until  timestamptz,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, user_id, ip_hash),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- One user per employee: otherwise an admin links itself to any employee and checks in as them. Existing
-- duplicate links (which that bug allowed) keep the oldest user's link; the others are unlinked.
DO $$
DECLARE
  n integer;
BEGIN
  WITH d AS (
    SELECT tenant_id, id, row_number() OVER (PARTITION BY tenant_id, employee_id ORDER BY created_at, id) AS rn
      FROM users WHERE employee_id IS NOT NULL)
  UPDATE users u SET employee_id = NULL FROM d WHERE d.tenant_id = u.tenant_id AND d.id = u.id AND d.rn > 1;
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n > 0 THEN
    RAISE NOTICE 'unlinked % user(s) from an employee already linked to an older user', n;
  END IF;
END $$;
CREATE UNIQUE INDEX users_employee_unique ON users (tenant_id, employee_id) WHERE employee_id IS NOT NULL;

DO $$
DECLARE
  app text := current_setting('attendux.app_role');
BEGIN
  ALTER TABLE security_ledger ENABLE ROW LEVEL SECURITY;
  CREATE POLICY tenant_isolation ON security_ledger USING (tenant_id = attendux_tenant());
  ALTER TABLE login_throttle ENABLE ROW LEVEL SECURITY;
  CREATE POLICY tenant_isolation ON login_throttle USING (tenant_id = attendux_tenant())
    WITH CHECK (tenant_id = attendux_tenant());
  -- The server reads its own company's entries (to mirror them to the file after commit), never writes them.
  EXECUTE format('GRANT SELECT ON security_ledger TO %I', app);
  EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON login_throttle TO %I', app);
END $$;

SELECT attendux_capture_changes('security_ledger');
SELECT attendux_capture_changes('login_throttle');

-- Down Migration

DROP INDEX users_employee_unique;
DROP TABLE login_throttle;
DROP TRIGGER api_keys_security_ledger ON api_keys;
DROP TRIGGER users_security_ledger ON users;
DROP FUNCTION attendux_ledger_api_keys(), attendux_ledger_users(), attendux_role_rank(text);
DROP TABLE security_ledger;
