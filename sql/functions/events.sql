-- The event feed's publisher (docs/events.md). Events are inserted
-- unnumbered (seq NULL) by the transactions whose change they report; this gives the
-- committed ones their place in the feed.

-- Number committed, unnumbered events in id order (at most p_batch), one publisher at
-- a time: the advisory lock is held to commit, so every number this call gives is
-- visible before any number a later call gives, and a reader that has seen seq N has
-- seen every seq below it. Nothing else is waited for, so no transaction outside the
-- server (another database's, an idle session's, a reconciliation run's, a prepared
-- one's) can hold the feed back.
-- One courtesy, bounded: an event whose transaction began after the oldest open
-- transaction of this database that is writing events (it holds RowExclusiveLock on
-- `events`) waits for that transaction, so that the feed follows id order when a short
-- write commits late; but never longer than p_hold_ms after its own transaction began.
-- Returns how many events it numbered.
CREATE OR REPLACE FUNCTION events_publish(p_hold_ms int, p_batch int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    v_writer_since timestamptz;
    v_numbered int;
BEGIN
    PERFORM pg_advisory_xact_lock(7172208, 1);  -- ('mpp' as an int, the publisher)
    SELECT min(a.xact_start) INTO v_writer_since
      FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'relation' AND l.relation = 'events'::regclass
       AND l.mode = 'RowExclusiveLock' AND l.granted
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND l.pid <> pg_backend_pid();
    UPDATE events e SET seq = n.seq
      FROM (SELECT r.id, nextval('events_seq') AS seq
              FROM (SELECT id FROM events
                     WHERE seq IS NULL
                       AND (v_writer_since IS NULL OR created_at < v_writer_since
                            OR created_at < clock_timestamp()
                                            - make_interval(secs => p_hold_ms / 1000.0))
                     ORDER BY id LIMIT p_batch) r) n
     WHERE e.id = n.id;
    GET DIAGNOSTICS v_numbered = ROW_COUNT;
    RETURN v_numbered;
END;
$$;
