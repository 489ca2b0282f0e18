-- 0006_delivery: delivery accounting (fleetctl delivery): per device, stream
-- and hour the records received, duplicates absorbed, missing sequences and
-- the drops the device declared, written in each batch's transaction; and
-- the last drop counters each device stream declared (cumulative since its
-- store `origin` began), so a resend or a restart adds only their growth.
CREATE TABLE delivery (
  org text NOT NULL,
  device text NOT NULL,
  stream text NOT NULL,
  hour_ms bigint NOT NULL,
  received bigint NOT NULL,
  duplicates bigint NOT NULL,
  missing bigint NOT NULL,
  declared_drops bigint NOT NULL,
  PRIMARY KEY (org, device, stream, hour_ms)
);

CREATE TABLE declared_drops (
  org text NOT NULL,
  device text NOT NULL,
  stream text NOT NULL,
  origin text NOT NULL,
  records bigint NOT NULL,
  PRIMARY KEY (org, device, stream)
);

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['delivery', 'declared_drops'] LOOP
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
