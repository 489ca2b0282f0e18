-- 0001_init: the cloud's state (what cloud/embedded_store.cpp and
-- cloud/embedded_tenancy.cpp keep in SQLite), keyed by org, with Row Level
-- Security on every tenant table. Runs as the schema's owner, inside the
-- runner's transaction (no BEGIN/COMMIT here); see docs/postgresql.md.

-- The node's privileges go to this group; its login role is a member.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fleetd_app') THEN
    CREATE ROLE fleetd_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
  END IF;
END $$;

-- Tenancy. orgs is the registry of tenants (names only): operators list it.
CREATE TABLE orgs (
  name text PRIMARY KEY CHECK (name <> ''),
  created_ms bigint NOT NULL
);

CREATE TABLE quotas (
  org text PRIMARY KEY REFERENCES orgs (name),
  points_per_second bigint NOT NULL DEFAULT 0,  -- 0: unlimited
  bytes_per_day bigint NOT NULL DEFAULT 0
);

CREATE TABLE devices (
  org text NOT NULL REFERENCES orgs (name),
  device text NOT NULL,
  created_ms bigint NOT NULL,
  revoked_ms bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (org, device)
);

-- Keys and tokens stored as HMAC-SHA256 under the node's secret.
CREATE TABLE device_keys (
  hash bytea PRIMARY KEY,
  org text NOT NULL,
  device text NOT NULL,
  created_ms bigint NOT NULL,
  expires_ms bigint NOT NULL DEFAULT 0,
  FOREIGN KEY (org, device) REFERENCES devices (org, device)
);
CREATE INDEX device_keys_by_device ON device_keys (org, device);

CREATE TABLE enroll_tokens (
  hash bytea PRIMARY KEY,
  org text NOT NULL REFERENCES orgs (name),
  uses_left bigint NOT NULL,
  expires_ms bigint NOT NULL,
  revoked boolean NOT NULL DEFAULT false,
  created_ms bigint NOT NULL
);

-- The store. device is the device's name within its org.
CREATE TABLE streams (
  org text NOT NULL,
  device text NOT NULL,
  stream text NOT NULL,
  epoch text NOT NULL,
  last_sequence bigint NOT NULL,
  epochs bigint NOT NULL,
  points bigint NOT NULL,
  batches bigint NOT NULL,
  duplicates bigint NOT NULL,
  last_seen bigint NOT NULL,
  PRIMARY KEY (org, device, stream)
);

-- One row per accepted batch: the key makes two nodes unable to both
-- accept the same (device, stream, epoch, sequence).
CREATE TABLE batches (
  org text NOT NULL,
  device text NOT NULL,
  stream text NOT NULL,
  epoch text NOT NULL,
  sequence bigint NOT NULL,
  checksum bytea NOT NULL,
  points bigint NOT NULL,
  received_at bigint NOT NULL,
  PRIMARY KEY (org, device, stream, epoch, sequence)
);

-- A series' key hashes its name and labels: labels of any length fit the
-- unique index (a btree entry holds at most ~2.7 kB).
CREATE TABLE series (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  org text NOT NULL,
  name text NOT NULL,
  labels bytea NOT NULL,
  key bytea GENERATED ALWAYS AS (decode(md5(name), 'hex') || sha256(labels))
    STORED,
  UNIQUE (org, key)
);

-- Points, logs and events by the day (UTC) the cloud received them:
-- retention drops whole days. Partitions: fleetd_ensure_partitions.
CREATE TABLE points (
  org text NOT NULL,
  day date NOT NULL,
  id bigint GENERATED ALWAYS AS IDENTITY,  -- arrival order
  device text NOT NULL,
  epoch text NOT NULL,
  sequence bigint NOT NULL,
  series_id bigint NOT NULL,
  ts bigint NOT NULL,
  value float8,  -- for people: NULL for NaN
  bits bigint NOT NULL  -- the IEEE-754 bits: exact
) PARTITION BY RANGE (day);
CREATE INDEX points_by_batch ON points (org, device, epoch, sequence);

CREATE TABLE logs (
  org text NOT NULL,
  day date NOT NULL,
  id bigint GENERATED ALWAYS AS IDENTITY,
  device text NOT NULL,
  epoch text NOT NULL,
  sequence bigint NOT NULL,
  labels bytea NOT NULL,
  ts bigint NOT NULL,
  line text NOT NULL
) PARTITION BY RANGE (day);
CREATE INDEX logs_by_batch ON logs (org, device, epoch, sequence);

CREATE TABLE events (
  org text NOT NULL,
  day date NOT NULL,
  id bigint GENERATED ALWAYS AS IDENTITY,
  device text NOT NULL,
  epoch text NOT NULL,
  sequence bigint NOT NULL,
  ts bigint NOT NULL,
  kind text NOT NULL,
  message text NOT NULL,
  attributes bytea NOT NULL
) PARTITION BY RANGE (day);
CREATE INDEX events_by_batch ON events (org, device, epoch, sequence);

-- A device's columnar series session and its codec histories.
CREATE TABLE wire_series (
  org text NOT NULL,
  device text NOT NULL,
  epoch text NOT NULL,
  idx bigint NOT NULL,
  series_id bigint NOT NULL,
  PRIMARY KEY (org, device, epoch, idx)
);

CREATE TABLE wire_history (
  org text NOT NULL,
  device text NOT NULL,
  epoch text NOT NULL,
  history bytea NOT NULL,
  PRIMARY KEY (org, device, epoch)
);

CREATE TABLE device_capability (
  org text NOT NULL,
  device text NOT NULL,
  tier bigint NOT NULL,
  total_ram bigint NOT NULL,
  available_ram bigint NOT NULL,
  total_disk bigint NOT NULL,
  available_disk bigint NOT NULL,
  cpu_cores bigint NOT NULL,
  has_sqlite boolean NOT NULL,
  has_network boolean NOT NULL,
  updated_ms bigint NOT NULL,
  PRIMARY KEY (org, device)
);

CREATE TABLE device_config (
  org text NOT NULL,
  device text NOT NULL,
  version bigint NOT NULL,
  batch_size bigint NOT NULL,
  sync_interval_ms bigint NOT NULL,
  retention_ms bigint NOT NULL,
  zstd_level bigint NOT NULL,
  PRIMARY KEY (org, device)
);

-- Row Level Security: a transaction sees and writes the rows of the org
-- it set with set_config('app.org_id', org, true), and none without one
-- (after RESET the setting reads '', hence NULLIF). FORCE: the owner too.
DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['quotas', 'devices', 'device_keys',
                           'enroll_tokens', 'streams', 'batches', 'series',
                           'points', 'logs', 'events', 'wire_series',
                           'wire_history', 'device_capability',
                           'device_config'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY org_rows ON %I '
                   'USING (org = NULLIF(current_setting(''app.org_id'', true), '''')) '
                   'WITH CHECK (org = NULLIF(current_setting(''app.org_id'', true), ''''))',
                   t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO fleetd_app',
                   t);
  END LOOP;
END $$;

-- A request names its device by key or token only: the one row whose hash
-- the transaction set (app.key_hash / app.token_hash, hex) is readable
-- before the org is known. Reading only: changes need the org.
CREATE POLICY key_by_hash ON device_keys FOR SELECT
  USING (hash = decode(NULLIF(current_setting('app.key_hash', true), ''), 'hex'));
CREATE POLICY token_by_hash ON enroll_tokens FOR SELECT
  USING (hash = decode(NULLIF(current_setting('app.token_hash', true), ''), 'hex'));

GRANT SELECT, INSERT ON orgs TO fleetd_app;
GRANT SELECT ON fleetd_schema_migrations TO fleetd_app;

-- Partitions: the node's role may make the days a write needs and drop
-- whole past days, nothing else of the tables' structure. Both run as the
-- owner with this migration's search_path.
CREATE FUNCTION fleetd_ensure_partitions(first_day date, days integer)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
AS $$
DECLARE
  parent text;
  day date;
  part text;
  made integer := 0;
BEGIN
  IF first_day IS NULL OR days IS NULL OR days < 1 OR days > 62
     OR first_day < date '2000-01-01'
     OR first_day + days > current_date + 8 THEN
    RAISE EXCEPTION 'fleetd_ensure_partitions(%, %): 1..62 days from '
                    '2000-01-01 up to a week ahead', first_day, days
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  FOR i IN 0 .. days - 1 LOOP
    day := first_day + i;
    FOREACH parent IN ARRAY ARRAY['points', 'logs', 'events'] LOOP
      part := parent || '_' || to_char(day, 'YYYYMMDD');
      CONTINUE WHEN EXISTS (SELECT 1 FROM pg_class
                            WHERE relname = part
                              AND relnamespace = current_schema()::regnamespace);
      -- Nodes making the same day take turns ("fleetd" 2); the loser
      -- finds it made.
      PERFORM pg_advisory_xact_lock(7380385375772213250);
      BEGIN
        EXECUTE format('CREATE TABLE %I PARTITION OF %I '
                       'FOR VALUES FROM (%L) TO (%L)',
                       part, parent, day, day + 1);
        made := made + 1;
      EXCEPTION WHEN duplicate_table OR unique_violation THEN
        NULL;
      END;
    END LOOP;
  END LOOP;
  RETURN made;
END $$;

CREATE FUNCTION fleetd_drop_partitions_before(cutoff date)
RETURNS SETOF text LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
AS $$
DECLARE
  part text;
BEGIN
  -- Today's and later days stay, whatever a caller's clock says.
  IF cutoff IS NULL OR cutoff > current_date THEN
    RAISE EXCEPTION 'fleetd_drop_partitions_before(%): only days before '
                    'today (%) can go', cutoff, current_date
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  FOR part IN
    SELECT c.relname
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
      JOIN pg_class p ON p.oid = i.inhparent
     WHERE p.oid IN ('points'::regclass, 'logs'::regclass, 'events'::regclass)
       AND c.relname ~ ('^' || p.relname || '_[0-9]{8}$')
       AND to_date(right(c.relname, 8), 'YYYYMMDD') + 1 <= cutoff
     ORDER BY 1
  LOOP
    EXECUTE format('DROP TABLE %I', part);
    RETURN NEXT part;
  END LOOP;
END $$;

REVOKE ALL ON FUNCTION fleetd_ensure_partitions(date, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION fleetd_drop_partitions_before(date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fleetd_ensure_partitions(date, integer) TO fleetd_app;
GRANT EXECUTE ON FUNCTION fleetd_drop_partitions_before(date) TO fleetd_app;
