-- 0002_journal: the ingest journal (docs/data-stack.md, "The ingest
-- journal"): each accepted batch as a JournalEntry row, written in the
-- transaction of its ack, read by the sinks in commit order.

-- xid: the writer's transaction id. Identity ids are handed out before
-- commit, so ids do not follow commit order across writers; readers go by
-- (xid, id) and read only rows whose xid is below every running
-- transaction (pg_snapshot_xmin), so no later commit lands behind a cursor.
CREATE TABLE journal (
  received_ms bigint NOT NULL,
  xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  id bigint GENERATED ALWAYS AS IDENTITY,
  org text NOT NULL,
  device text NOT NULL,
  entry bytea NOT NULL  -- JournalEntry, zstd (messages/journal_codec.hpp)
) PARTITION BY RANGE (received_ms);
CREATE INDEX journal_order ON journal (xid, id);

-- Writers insert through the org policy; only the owner (below, through
-- the SECURITY DEFINER functions) reads across orgs.
ALTER TABLE journal ENABLE ROW LEVEL SECURITY;
ALTER TABLE journal FORCE ROW LEVEL SECURITY;
CREATE POLICY org_rows ON journal
  USING (org = NULLIF(current_setting('app.org_id', true), ''))
  WITH CHECK (org = NULLIF(current_setting('app.org_id', true), ''));
DO $$
BEGIN
  EXECUTE format('CREATE POLICY sink_reader ON journal TO %I USING (true)',
                 current_user);
END $$;
GRANT INSERT ON journal TO fleetd_app;

-- The journal's bytes, in 64 slots so that writers rarely share a row:
-- a trigger adds a row's bytes to its writer's slot; pruning subtracts.
CREATE TABLE journal_size (
  slot integer PRIMARY KEY,
  bytes bigint NOT NULL
);
INSERT INTO journal_size SELECT s, 0 FROM generate_series(0, 63) s;
GRANT SELECT, UPDATE ON journal_size TO fleetd_app;

CREATE FUNCTION fleetd_journal_added() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
  UPDATE journal_size SET bytes = bytes + octet_length(NEW.entry)
   WHERE slot = pg_backend_pid() % 64;
  RETURN NULL;
END $$;
CREATE TRIGGER journal_added AFTER INSERT ON journal
  FOR EACH ROW EXECUTE FUNCTION fleetd_journal_added();

-- Each sink's cursor, and which node drains it (the lease).
CREATE TABLE sink_cursors (
  sink text PRIMARY KEY,
  xid xid8 NOT NULL,
  id bigint NOT NULL,
  updated_ms bigint NOT NULL
);
CREATE TABLE sink_leases (
  sink text PRIMARY KEY,
  holder text NOT NULL,
  expires_ms bigint NOT NULL
);
GRANT SELECT, INSERT, UPDATE ON sink_cursors, sink_leases TO fleetd_app;

-- Hourly partitions by received_ms (hour = received_ms / 3600000).
CREATE FUNCTION fleetd_ensure_journal_partitions(first_hour bigint,
                                                 hours integer)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
AS $$
DECLARE
  part text;
  made integer := 0;
BEGIN
  IF first_hour IS NULL OR hours IS NULL OR hours < 1 OR hours > 48
     OR first_hour < 262968 THEN
    RAISE EXCEPTION 'fleetd_ensure_journal_partitions(%, %): 1..48 hours '
                    'from 2000', first_hour, hours
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  FOR h IN first_hour .. first_hour + hours - 1 LOOP
    part := 'journal_' || h;
    CONTINUE WHEN EXISTS (SELECT 1 FROM pg_class
                          WHERE relname = part
                            AND relnamespace = current_schema()::regnamespace);
    PERFORM pg_advisory_xact_lock(7380385375772213251);
    BEGIN
      EXECUTE format('CREATE TABLE %I PARTITION OF journal '
                     'FOR VALUES FROM (%s) TO (%s)',
                     part, h::bigint * 3600000, (h::bigint + 1) * 3600000);
      made := made + 1;
    EXCEPTION WHEN duplicate_table OR unique_violation THEN
      NULL;
    END;
  END LOOP;
  RETURN made;
END $$;

-- Up to n committed rows after the cursor, in commit-safe order.
CREATE FUNCTION fleetd_journal_read(after_xid xid8, after_id bigint, n integer)
RETURNS TABLE (xid xid8, id bigint, entry bytea)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
  SELECT j.xid, j.id, j.entry FROM journal j
   WHERE (j.xid, j.id) > (after_xid, after_id)
     AND j.xid < pg_snapshot_xmin(pg_current_snapshot())
   ORDER BY j.xid, j.id LIMIT n
$$;

CREATE FUNCTION fleetd_journal_lag(after_xid xid8, after_id bigint)
RETURNS TABLE (entries bigint, oldest_ms bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
  SELECT count(*), coalesce(min(j.received_ms), 0) FROM journal j
   WHERE (j.xid, j.id) > (after_xid, after_id)
$$;

-- The bound's inputs: bytes held and the oldest row's receipt.
CREATE FUNCTION fleetd_journal_bound()
RETURNS TABLE (bytes bigint, oldest_ms bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
  SELECT (SELECT coalesce(sum(s.bytes), 0)::bigint FROM journal_size s),
         (SELECT coalesce(min(j.received_ms), 0) FROM journal j)
$$;

-- Deletes the rows every sink of `sinks` passed (none while one of them
-- has no cursor yet); returns how many.
CREATE FUNCTION fleetd_journal_prune(sinks text[])
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
AS $$
DECLARE
  cx xid8;
  ci bigint;
  gone bigint;
  freed bigint;
BEGIN
  IF (SELECT count(*) FROM sink_cursors WHERE sink = ANY (sinks))
     < cardinality(sinks) OR cardinality(sinks) = 0 THEN
    RETURN 0;
  END IF;
  SELECT c.xid, c.id INTO cx, ci FROM sink_cursors c
   WHERE c.sink = ANY (sinks) ORDER BY c.xid, c.id LIMIT 1;
  WITH d AS (DELETE FROM journal j WHERE (j.xid, j.id) <= (cx, ci)
             RETURNING octet_length(j.entry) AS n)
  SELECT count(*), coalesce(sum(n), 0) INTO gone, freed FROM d;
  UPDATE journal_size SET bytes = bytes - freed
   WHERE slot = pg_backend_pid() % 64;
  RETURN gone;
END $$;

REVOKE ALL ON FUNCTION fleetd_ensure_journal_partitions(bigint, integer),
  fleetd_journal_read(xid8, bigint, integer), fleetd_journal_lag(xid8, bigint),
  fleetd_journal_bound(), fleetd_journal_prune(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fleetd_ensure_journal_partitions(bigint, integer),
  fleetd_journal_read(xid8, bigint, integer), fleetd_journal_lag(xid8, bigint),
  fleetd_journal_bound(), fleetd_journal_prune(text[]) TO fleetd_app;
