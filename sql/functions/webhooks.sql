-- Webhooks to the wallet backend (docs/notices.md): the outbox of deliveries, one row per
-- event, and its steps. Outcomes are declared in mpp_server/domain/outcomes.py
-- (WebhookAttemptOutcome, WebhookReplayOutcome); the sender is mpp_server/webhooks/.

-- Staged in the event's own transaction, whoever inserts the event (every money step of
-- payments.sql, notify.sql, refunds.sql, topups.sql, disputes.sql): one place, so no step
-- can forget it, and the delivery commits or rolls back with the event it reports.
-- BEFORE the insert (the event's id and created_at are already set by their defaults): an
-- AFTER trigger queues the row and reads it back at the statement's end, about 15 µs an
-- event more (issue 28); if the event's insert then fails, the statement fails and takes
-- the delivery with it.
CREATE OR REPLACE FUNCTION webhook_stage() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (event_id, status, pending_since, next_attempt_at)
    VALUES (NEW.id, 'PENDING', NEW.created_at, NEW.created_at);
    RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER events_webhook_stage BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION webhook_stage();

-- A sender claims up to p_batch due deliveries: each is moved p_lease_s into the future
-- (no other sender takes it meanwhile) and its attempt counted, in the caller's own
-- short transaction, committed before the receiver is called: no lock, transaction or
-- connection is held across the call. A sender that dies mid-call leaves the row due
-- again when the lease ends. Never claimed: a delivery older than p_max_age_s (pending
-- since then), which webhooks_give_up_expired gives up. Returns (event_id, attempt):
-- the attempt number is the claim's, which webhook_attempt_done checks.
CREATE OR REPLACE FUNCTION webhook_claim(p_batch int, p_lease_s double precision,
                                         p_max_age_s double precision)
RETURNS TABLE (event_id bigint, attempt int)
LANGUAGE sql AS $$
    UPDATE webhook_deliveries d
       SET attempts = d.attempts + 1,
           next_attempt_at = now() + make_interval(secs => p_lease_s)
      FROM (SELECT w.event_id FROM webhook_deliveries w
             WHERE w.status = 'PENDING' AND w.next_attempt_at <= now()
               AND w.pending_since > now() - make_interval(secs => p_max_age_s)
             ORDER BY w.next_attempt_at LIMIT p_batch
             FOR UPDATE SKIP LOCKED) due
     WHERE d.event_id = due.event_id
    RETURNING d.event_id, d.attempts
$$;

-- The attempt's result. A 2xx (p_delivered) is a fact whoever holds the lease: the
-- delivery is DELIVERED. A failure counts only for the claim that still holds the row
-- (p_attempt is its number, the status PENDING); otherwise a later claim took over and
-- this one changes nothing (SUPERSEDED). A failure is retried after p_retry_in_s, unless
-- that would fall after WEBHOOK_MAX_AGE_S (p_max_age_s) from pending_since, or the
-- delivery cannot be made at all (p_final: its event is gone): then GIVEN_UP.
-- outcome: DELIVERED, RETRY, GIVEN_UP, SUPERSEDED.
CREATE OR REPLACE FUNCTION webhook_attempt_done(p_event_id bigint, p_attempt int,
                                                p_delivered boolean, p_result text,
                                                p_retry_in_s double precision,
                                                p_max_age_s double precision,
                                                p_final boolean,
                                                OUT outcome text,
                                                OUT delivery webhook_deliveries)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT * INTO delivery FROM webhook_deliveries WHERE event_id = p_event_id FOR UPDATE;
    IF delivery.status IS DISTINCT FROM 'PENDING'
       OR (NOT p_delivered AND delivery.attempts <> p_attempt) THEN
        outcome := 'SUPERSEDED';
        RETURN;
    END IF;
    IF p_delivered THEN
        outcome := 'DELIVERED';
    ELSIF p_final OR clock_timestamp() + make_interval(secs => p_retry_in_s)
                     > delivery.pending_since + make_interval(secs => p_max_age_s) THEN
        outcome := 'GIVEN_UP';
    ELSE
        outcome := 'RETRY';
    END IF;
    UPDATE webhook_deliveries
       SET status = CASE outcome WHEN 'DELIVERED' THEN 'DELIVERED'
                                 WHEN 'GIVEN_UP' THEN 'GIVEN_UP' ELSE status END,
           delivered_at = CASE WHEN outcome = 'DELIVERED' THEN clock_timestamp()
                               ELSE delivered_at END,
           given_up_at = CASE WHEN outcome = 'GIVEN_UP' THEN clock_timestamp()
                              ELSE given_up_at END,
           last_result = CASE WHEN p_delivered THEN last_result ELSE left(p_result, 300) END,
           next_attempt_at = CASE WHEN outcome = 'RETRY'
                                  THEN clock_timestamp() + make_interval(secs => p_retry_in_s)
                                  ELSE next_attempt_at END
     WHERE event_id = p_event_id RETURNING * INTO delivery;
END;
$$;

-- Deliveries still PENDING WEBHOOK_MAX_AGE_S after they became due and not leased by a
-- sender: GIVEN_UP (no server sent them in time: no WEBHOOK_URL configured meanwhile, or
-- a sender died holding the last lease). Returns their event ids.
CREATE OR REPLACE FUNCTION webhooks_give_up_expired(p_max_age_s double precision)
RETURNS SETOF bigint
LANGUAGE sql AS $$
    UPDATE webhook_deliveries
       SET status = 'GIVEN_UP', given_up_at = now(),
           last_result = coalesce(last_result, 'NOT_ATTEMPTED')
     WHERE status = 'PENDING' AND next_attempt_at <= now()
       AND pending_since <= now() - make_interval(secs => p_max_age_s)
    RETURNING event_id
$$;

-- An operator sends a delivery again (`python -m mpp_server webhooks replay ID`, the
-- console): GIVEN_UP or DELIVERED becomes PENDING, due now, with a fresh
-- WEBHOOK_MAX_AGE_S. outcome: REPLAYED, ALREADY_PENDING (nothing to do: a sender has it),
-- UNKNOWN (no delivery of that event), EVENT_GONE (retention removed the event: nothing
-- to send).
CREATE OR REPLACE FUNCTION webhook_replay(p_event_id bigint, OUT outcome text,
                                          OUT delivery webhook_deliveries)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT * INTO delivery FROM webhook_deliveries WHERE event_id = p_event_id FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'UNKNOWN';
    ELSIF NOT EXISTS (SELECT 1 FROM events WHERE id = p_event_id) THEN
        outcome := 'EVENT_GONE';
    ELSIF delivery.status = 'PENDING' THEN
        outcome := 'ALREADY_PENDING';
    ELSE
        outcome := 'REPLAYED';
        UPDATE webhook_deliveries
           SET status = 'PENDING', pending_since = now(), next_attempt_at = now(),
               replays = replays + 1
         WHERE event_id = p_event_id RETURNING * INTO delivery;
    END IF;
END;
$$;
