-- What an operator may ask of the background workers from the console (issue 24): "try
-- again now". The console never calls Kaspi or an acquirer itself; it makes the row the
-- worker of any server process would take later due now, in the operator's transaction
-- (which also writes the audit row). Outcomes: mpp_server/domain/outcomes.py DueNow.
-- DUE_NOW: the row is due now; IN_PROGRESS: a worker holds it at this moment (its
-- attempt is under way: nothing to do); NOT_WAITING: nothing is waiting (Kaspi has
-- answered, the top-up is decided, or there is no such row).

-- The notifyPayment outbox row of a payment. Safe within the deciding request's lease
-- too: an answer applies once (apply_notify_answer_once), and Kaspi answers a repeated
-- notify the same (docs/notify-policy.md).
CREATE OR REPLACE FUNCTION notify_due_now(p_payment_id text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM notify_outbox WHERE payment_id = p_payment_id FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        PERFORM 1 FROM notify_outbox WHERE payment_id = p_payment_id;
        RETURN CASE WHEN FOUND THEN 'IN_PROGRESS' ELSE 'NOT_WAITING' END;
    END IF;
    UPDATE notify_outbox SET next_attempt_at = least(next_attempt_at, now())
     WHERE payment_id = p_payment_id;
    RETURN 'DUE_NOW';
END;
$$;

-- The status check of a CREATED top-up (the poller asks the acquirer's status API).
CREATE OR REPLACE FUNCTION topup_check_due_now(p_topup_id text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM topups WHERE topup_id = p_topup_id AND status = 'CREATED'
        FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        PERFORM 1 FROM topups WHERE topup_id = p_topup_id AND status = 'CREATED';
        RETURN CASE WHEN FOUND THEN 'IN_PROGRESS' ELSE 'NOT_WAITING' END;
    END IF;
    UPDATE topups SET next_check_at = least(next_check_at, now())
     WHERE topup_id = p_topup_id;
    RETURN 'DUE_NOW';
END;
$$;
