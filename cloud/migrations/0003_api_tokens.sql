-- 0003_api_tokens: org API tokens for the query API (what
-- cloud/embedded_tenancy.cpp keeps in SQLite). Stored as HMAC-SHA256 under
-- the node's secret; id is the hash's first 12 hex digits, for lists and
-- revocations. Runs inside the runner's transaction; see docs/postgresql.md.

CREATE TABLE api_tokens (
  hash bytea PRIMARY KEY,
  id text NOT NULL,
  org text NOT NULL REFERENCES orgs (name),
  created_ms bigint NOT NULL,
  expires_ms bigint NOT NULL DEFAULT 0,  -- 0: never
  revoked_ms bigint NOT NULL DEFAULT 0
);
CREATE INDEX api_tokens_by_org ON api_tokens (org, id);

-- The org's rows with its org set, as every tenant table (0001).
ALTER TABLE api_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY org_rows ON api_tokens
  USING (org = NULLIF(current_setting('app.org_id', true), ''))
  WITH CHECK (org = NULLIF(current_setting('app.org_id', true), ''));
-- A query names its org by token only: the one row whose hash the
-- transaction set (app.api_token_hash, hex) is readable before the org is
-- known. Reading only: changes need the org.
CREATE POLICY api_token_by_hash ON api_tokens FOR SELECT
  USING (hash = decode(NULLIF(current_setting('app.api_token_hash', true), ''),
                       'hex'));
GRANT SELECT, INSERT, UPDATE, DELETE ON api_tokens TO fleetd_app;
