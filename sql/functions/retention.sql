-- Retention (docs/operations.md, "Records, retention and roles"): the exchange journal's
-- monthly partitions created ahead and dropped when old, the inbound request log and the
-- event feed pruned. SECURITY DEFINER: they run as the owner, because the server's role
-- owns nothing and may delete nothing; it may only ask for this, with retentions of at
-- least 30 days, so not even a compromised server can shorten the records below that.

-- The journal's partition for the UTC month of p_month, named exchange_journal_YYYY_MM,
-- created when missing (true). Not granted to the server: retention_maintain calls it.
CREATE OR REPLACE FUNCTION exchange_journal_partition(p_month date) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET timezone = 'UTC'
AS $$
DECLARE
    v_start timestamp := date_trunc('month', p_month::timestamp);
    v_name text := 'exchange_journal_' || to_char(p_month, 'YYYY_MM');
BEGIN
    IF to_regclass(v_name) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF exchange_journal FOR VALUES FROM (%L) TO (%L)',
                   v_name, v_start AT TIME ZONE 'UTC',
                   (v_start + interval '1 month') AT TIME ZONE 'UTC');
    RETURN true;
END;
$$;

-- One round of retention, under an advisory lock (another server's round in progress:
-- ran false, nothing done). Creates this month's partition and the next three; drops
-- the journal's months that ended more than p_exchange_days ago (so a row is kept at
-- least p_exchange_days, at most a month longer); deletes at most p_batch inbound
-- requests older than p_exchange_days, p_batch published events older than
-- p_events_days and p_batch delivered webhooks of events gone (the caller calls again
-- while a batch comes back full: each round is its own short transaction). lock_timeout: dropping a partition locks the journal; a
-- long reader must not queue the journal's writers behind it (the round fails and the
-- next one tries again).
CREATE OR REPLACE FUNCTION retention_maintain(p_exchange_days int, p_events_days int,
                                              p_batch int,
                                              OUT ran boolean, OUT partitions_created int,
                                              OUT partitions_dropped int,
                                              OUT inbound_deleted int,
                                              OUT events_deleted int,
                                              OUT deliveries_deleted int)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET timezone = 'UTC'
SET lock_timeout = '2s' AS $$
DECLARE
    v_this_month timestamp := date_trunc('month', now());
    v_partition text;
BEGIN
    IF p_exchange_days < 30 OR p_events_days < 30 THEN
        RAISE EXCEPTION 'retention_maintain: retentions below 30 days are refused (% and %)',
            p_exchange_days, p_events_days;
    END IF;
    IF p_batch NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'retention_maintain: batch % is not between 1 and 100000', p_batch;
    END IF;
    ran := pg_try_advisory_xact_lock(7172208, 26);  -- ('mpp' as an int, issue 26)
    IF NOT ran THEN
        RETURN;
    END IF;
    partitions_created := 0;
    FOR i IN 0..3 LOOP
        IF exchange_journal_partition((v_this_month + make_interval(months => i))::date) THEN
            partitions_created := partitions_created + 1;
        END IF;
    END LOOP;
    partitions_dropped := 0;
    FOR v_partition IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'exchange_journal'::regclass
           AND c.relname ~ '^exchange_journal_\d{4}_\d{2}$'
           AND (to_date(right(c.relname, 7), 'YYYY_MM') + interval '1 month')
               <= (now() - make_interval(days => p_exchange_days))::timestamp
         ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE %I', v_partition);
        partitions_dropped := partitions_dropped + 1;
    END LOOP;
    DELETE FROM inbound_requests WHERE id IN (
        SELECT id FROM inbound_requests
         WHERE received_at < now() - make_interval(days => p_exchange_days)
         ORDER BY received_at LIMIT p_batch);
    GET DIAGNOSTICS inbound_deleted = ROW_COUNT;
    -- Only published events (an unnumbered one has not reached the feed yet), and never
    -- the newest: it marks the feed's end, beyond which a cursor is refused, and a cursor
    -- handed out must stay valid after a quiet spell longer than the retention.
    DELETE FROM events WHERE id IN (
        SELECT id FROM events
         WHERE created_at < now() - make_interval(days => p_events_days)
           AND seq < (SELECT max(seq) FROM events)
         LIMIT p_batch);
    GET DIAGNOSTICS events_deleted = ROW_COUNT;
    -- A webhook's delivery record goes with its event, once delivered (the oldest event
    -- kept bounds the scan); a delivery given up or pending stays until it is delivered.
    DELETE FROM webhook_deliveries WHERE event_id IN (
        SELECT event_id FROM webhook_deliveries
         WHERE event_id < (SELECT min(id) FROM events) AND status = 'DELIVERED'
         ORDER BY event_id LIMIT p_batch);
    GET DIAGNOSTICS deliveries_deleted = ROW_COUNT;
END;
$$;
