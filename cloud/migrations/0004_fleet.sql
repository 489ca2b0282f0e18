-- 0004_fleet: the fleet view (docs/data-stack.md, "The fleet sink"): per
-- device and series the latest value and hourly aggregates, written by the
-- fleet sink from the journal, and the device registry over the store's
-- own tables. Runs inside the runner's transaction; see docs/postgresql.md.

-- The batches the fleet sink has added, keyed as the batches table: a
-- replayed entry finds its key here and adds nothing. Rows older than the
-- journal's retention are pruned by the sink (no entry can come back).
CREATE TABLE fleet_applied (
  org text NOT NULL,
  device text NOT NULL,
  stream text NOT NULL,
  epoch text NOT NULL,
  sequence bigint NOT NULL,
  applied_ms bigint NOT NULL,
  PRIMARY KEY (org, device, stream, epoch, sequence)
);
CREATE INDEX fleet_applied_by_age ON fleet_applied (org, applied_ms);

-- labels: canonical text (as ClickHouse's); key hashes metric and labels,
-- so that labels of any length fit the unique index (md5: the immutable
-- hash of text; a crafted collision can only merge one device's own series).
CREATE TABLE fleet_latest (
  org text NOT NULL,
  device text NOT NULL,
  metric text NOT NULL,
  labels text NOT NULL,
  key bytea GENERATED ALWAYS AS
    (decode(md5(metric), 'hex') || decode(md5(labels), 'hex')) STORED,
  ts bigint NOT NULL,
  value float8 NOT NULL,  -- NaN and infinities as PostgreSQL spells them
  bits bigint NOT NULL,  -- the IEEE-754 bits: exact
  PRIMARY KEY (org, device, key)
);

-- Finite samples only (NaN and infinities are left out of every column);
-- avg is sum / count at read time.
CREATE TABLE fleet_hourly (
  org text NOT NULL,
  device text NOT NULL,
  metric text NOT NULL,
  labels text NOT NULL,
  key bytea GENERATED ALWAYS AS
    (decode(md5(metric), 'hex') || decode(md5(labels), 'hex')) STORED,
  hour_s bigint NOT NULL,  -- the hour's start, seconds since the epoch
  sum float8 NOT NULL,
  count bigint NOT NULL,
  min float8 NOT NULL,
  max float8 NOT NULL,
  PRIMARY KEY (org, device, key, hour_s)
);

-- A stream's last accepted batch (streams.last_seen also counts duplicates).
ALTER TABLE streams ADD COLUMN last_batch_ms bigint NOT NULL DEFAULT 0;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['fleet_applied', 'fleet_latest',
                           'fleet_hourly'] LOOP
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

-- One row per device of the org: what it is (capability, config version)
-- and how its sync goes (per-stream counters summed, each stream's last
-- sequence). security_invoker: the caller's org policy applies.
CREATE VIEW device_registry WITH (security_invoker = true) AS
SELECT d.org, d.device, d.created_ms, d.revoked_ms,
       coalesce(s.last_seen_ms, 0) AS last_seen_ms,
       coalesce(s.last_batch_ms, 0) AS last_batch_ms,
       coalesce(s.batches, 0) AS batches,
       coalesce(s.duplicates, 0) AS duplicates,
       coalesce(s.points, 0) AS points,
       coalesce(s.last_sequences, '{}') AS last_sequences,
       c.tier, c.total_ram, c.available_ram, c.total_disk, c.available_disk,
       c.cpu_cores, c.has_sqlite, c.has_network,
       c.updated_ms AS capability_ms,
       coalesce(g.version, 0) AS config_version
  FROM devices d
  LEFT JOIN (SELECT org, device, max(last_seen) AS last_seen_ms,
                    max(last_batch_ms) AS last_batch_ms,
                    sum(batches)::bigint AS batches,
                    sum(duplicates)::bigint AS duplicates,
                    sum(points)::bigint AS points,
                    jsonb_object_agg(stream, last_sequence) AS last_sequences
               FROM streams GROUP BY org, device) s USING (org, device)
  LEFT JOIN device_capability c USING (org, device)
  LEFT JOIN device_config g USING (org, device);
GRANT SELECT ON device_registry TO fleetd_app;
