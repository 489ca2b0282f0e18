-- 0005_journal_partitions: old hourly journal partitions are dropped once
-- empty, and a sink's lag is read from two index lookups, not a count
-- (docs/data-stack.md, "The ingest journal").

-- Drops the journal partitions of hours before `before_hour` (and before
-- the server's hour - 2, whatever the caller's clock says) that hold no
-- row: pruning deleted every row all enabled sinks passed, so an empty old
-- partition holds nothing unread. Each partition is locked SHARE (writers
-- to it wait, readers do not) and checked empty; then the parent is locked
-- once for the DROPs. A lock not granted within 100 ms is given up, so
-- ingest never waits longer on it. Returns the partitions dropped and
-- whether every candidate was looked at (false: try again later).
CREATE FUNCTION fleetd_journal_drop_partitions(before_hour bigint,
                                               OUT dropped integer,
                                               OUT complete boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
AS $$
DECLARE
  server_hour bigint := floor(extract(epoch FROM clock_timestamp()) / 3600);
  part text;
  held boolean;
  empty text[] := '{}';
BEGIN
  dropped := 0;
  complete := true;
  IF before_hour IS NULL THEN
    RAISE EXCEPTION 'fleetd_journal_drop_partitions(NULL)'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- One dropper at a time across nodes; the others leave it to that one.
  IF NOT pg_try_advisory_xact_lock(7380385375772213252) THEN
    RETURN;
  END IF;
  PERFORM set_config('lock_timeout', '100ms', true);
  FOR part IN
    SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = 'journal'::regclass
       AND c.relname ~ '^journal_[0-9]{1,12}$'
       AND substr(c.relname, 9)::bigint
           < least(before_hour, server_hour - 2)
     ORDER BY substr(c.relname, 9)::bigint
  LOOP
    BEGIN
      EXECUTE format('LOCK TABLE %I IN SHARE MODE', part);
      EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I)', part) INTO held;
      IF NOT held THEN
        empty := empty || part;
      END IF;
    EXCEPTION WHEN lock_not_available THEN
      complete := false;
    END;
  END LOOP;
  IF cardinality(empty) = 0 THEN
    RETURN;
  END IF;
  BEGIN
    LOCK TABLE journal IN ACCESS EXCLUSIVE MODE;
    FOREACH part IN ARRAY empty LOOP
      EXECUTE format('DROP TABLE %I', part);
      dropped := dropped + 1;
    END LOOP;
  EXCEPTION WHEN lock_not_available THEN
    dropped := 0;
    complete := false;
  END;
END $$;

-- Rows after the cursor: the last id handed out minus the first id after
-- the cursor, plus one (ids rolled back or committed out of order make it
-- approximate; no row after the cursor makes it exactly 0).
CREATE OR REPLACE FUNCTION fleetd_journal_lag(after_xid xid8, after_id bigint)
RETURNS TABLE (entries bigint, oldest_ms bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
  SELECT CASE WHEN f.id IS NULL THEN 0
              ELSE greatest(s.last_value - f.id + 1, 1) END,
         coalesce(f.received_ms, 0)
    FROM (SELECT last_value FROM journal_id_seq) s
    LEFT JOIN (SELECT j.id, j.received_ms FROM journal j
                WHERE (j.xid, j.id) > (after_xid, after_id)
                ORDER BY j.xid, j.id LIMIT 1) f ON true
$$;

REVOKE ALL ON FUNCTION fleetd_journal_drop_partitions(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fleetd_journal_drop_partitions(bigint)
  TO fleetd_app;

-- The bound's inputs without a scan: the oldest row is taken as the first
-- in read order (one index lookup; across writers' clocks, approximate).
CREATE OR REPLACE FUNCTION fleetd_journal_bound()
RETURNS TABLE (bytes bigint, oldest_ms bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
  SELECT (SELECT coalesce(sum(s.bytes), 0)::bigint FROM journal_size s),
         coalesce((SELECT j.received_ms FROM journal j
                    ORDER BY j.xid, j.id LIMIT 1), 0)
$$;
