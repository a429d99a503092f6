-- Up Migration
--
-- Data subject requests (issue 12): the register of access and erasure requests, with the one-month due
-- date of GDPR Art. 12(3) (extendable once by two months). Erasures themselves are recorded in
-- security_ledger (kind `dsar.erasure`, keyed by an HMAC of the subject's identifiers) so that every restore
-- re-applies them; src/core/dsar/ does the work, src/core/dsar/registry.ts classifies every column.

CREATE TABLE dsar_requests (
  tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  id             uuid NOT NULL DEFAULT gen_random_uuid(),
  kind           text NOT NULL CHECK (kind IN ('export', 'erasure')),
  status         text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done', 'rejected')),
  -- The employee the request is about. Kept after an erasure: it is the pseudonymous id the held rows keep.
  employee_id    uuid NOT NULL,
  -- Where the request came from: `cli` (compliance staff) or `api` (the employee, GET /me/export or
  -- POST /me/erasure-request).
  source         text NOT NULL CHECK (source IN ('cli', 'api')),
  received_at    timestamptz NOT NULL DEFAULT now(),
  due_at         timestamptz NOT NULL,
  extended_at    timestamptz,
  extend_reason  text CHECK (length(extend_reason) BETWEEN 1 AND 2000),
  -- Free text from staff; never the subject's identifiers (an erasure redacts it anyway).
  reason         text CHECK (length(reason) <= 2000),
  handled_by     text,
  done_at        timestamptz,
  -- The erasure receipt (what was deleted, redacted, kept under hold until when), JSON and text.
  receipt        jsonb,
  receipt_text   text,
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, employee_id) REFERENCES employees (tenant_id, id),
  CHECK ((status = 'open') = (done_at IS NULL))
);
CREATE INDEX dsar_requests_due_idx ON dsar_requests (tenant_id, status, due_at);

DO $$
DECLARE
  app text := current_setting('attendux.app_role');
BEGIN
  ALTER TABLE dsar_requests ENABLE ROW LEVEL SECURITY;
  CREATE POLICY tenant_isolation ON dsar_requests USING (tenant_id = attendux_tenant())
    WITH CHECK (tenant_id = attendux_tenant());
  -- The server files requests (the employee's side) and lists them (owners, HR); erasing is CLI-only.
  EXECUTE format('GRANT SELECT, INSERT ON dsar_requests TO %I', app);
END $$;

SELECT attendux_capture_changes('dsar_requests');

-- Down Migration

DROP TABLE dsar_requests;
