-- The notifyPayment outbox (docs/notify-policy.md): staging a notify, and Kaspi's answer
-- applied once. Outcomes are declared in mpp_server/domain/outcomes.py.

-- Stage a notifyPayment in the caller's transaction (the decision it reports commits with
-- it). The deciding request holds the row's lease for p_hold_s (next_attempt_at); the
-- worker of any process takes it after that. Used by payment_confirm and by cancel.
-- PL/pgSQL, as every function of the payment's path (ledger.sql, settlement_account).
CREATE OR REPLACE FUNCTION notify_stage(p_payment_id text, p_code text, p_message text,
                                        p_amount bigint, p_hold_s double precision)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO notify_outbox (payment_id, result_code, result_message, amount_tiyn,
                               next_attempt_at)
    VALUES (p_payment_id, p_code, p_message, p_amount,
            now() + make_interval(secs => p_hold_s));
END;
$$;

-- The worker's claim of a due row: a lease of p_lease_s (next_attempt_at moved ahead and
-- committed), so no row lock, transaction or connection is held while Kaspi is asked;
-- another process takes the row only when the lease has run out (a process that died).
-- Returns the row with what the notify needs of its payment, and `claimed_until`, the
-- lease's token for notify_attempt_failed; nothing when the row is gone, not due, or
-- being claimed by another process right now.
CREATE OR REPLACE FUNCTION notify_claim(p_payment_id text, p_lease_s double precision,
                                        OUT payment_id text, OUT result_code text,
                                        OUT result_message text, OUT amount_tiyn bigint,
                                        OUT attempts int, OUT customer_id text,
                                        OUT mpp_payment_id uuid, OUT locale text,
                                        OUT claimed_until timestamptz)
RETURNS SETOF record LANGUAGE sql AS $$
    WITH due AS (
        SELECT o.payment_id FROM notify_outbox o
         WHERE o.payment_id = p_payment_id AND o.next_attempt_at <= now()
           FOR UPDATE SKIP LOCKED
    )
    UPDATE notify_outbox o
       SET next_attempt_at = clock_timestamp() + make_interval(secs => p_lease_s)
      FROM due, payments p
     WHERE o.payment_id = due.payment_id AND p.payment_id = o.payment_id
    RETURNING o.payment_id, o.result_code, o.result_message, o.amount_tiyn, o.attempts,
              p.customer_id, p.mpp_payment_id, p.locale, o.next_attempt_at
$$;

-- A claimed attempt that got no final answer: counted on the row, the next one after
-- p_backoff_s. Only under the claim it made (p_claimed_until): if the lease ran out and
-- another process took the row, its lease stands. Returns the attempts so far, or NULL.
CREATE OR REPLACE FUNCTION notify_attempt_failed(p_payment_id text,
                                                 p_claimed_until timestamptz,
                                                 p_reason text,
                                                 p_backoff_s double precision)
RETURNS int LANGUAGE sql AS $$
    UPDATE notify_outbox
       SET attempts = attempts + 1, last_error = left(p_reason, 500),
           next_attempt_at = now() + make_interval(secs => p_backoff_s)
     WHERE payment_id = p_payment_id AND next_attempt_at = p_claimed_until
    RETURNING attempts
$$;

-- Kaspi's final answer to our notifyPayment, applied once (policy:
-- docs/notify-policy.md), in the caller's transaction. The outbox row is claimed
-- (deleted) first, and only the caller that deleted it applies the answer. Two callers
-- can hold the same answer only when the request that decided a payment, sending its
-- first notifyPayment under the lease payment_confirm gave it (next_attempt_at, no row
-- lock: docs/notify-policy.md), overran the lease and the worker sent the same notify
-- too; Kaspi answers both the same (it is idempotent per paymentId). The second caller
-- waits for the first's row lock, finds no row and changes nothing: ALREADY_APPLIED.
-- Lock order, as in the worker's attempt: the outbox row, then the payment row.
-- outcome: ACKNOWLEDGED (our cancel/decline was answered), COMPLETED, RECEIPT (already
-- COMPLETED through a refund: receipt recorded), DECLINED (money returned),
-- CONTRADICTED (a refund proved the payment completed, yet Kaspi answers an error), or
-- ALREADY_APPLIED. The settlement account is looked up only when money moves back.
CREATE OR REPLACE FUNCTION apply_notify_answer_once(p_payment_id text, p_sent_code text, p_code text,
                                         p_message text, p_link text, p_shard int,
                                         OUT outcome text, OUT payment payments)
LANGUAGE plpgsql AS $$
DECLARE
    v_staged text;
    v_account bigint;
BEGIN
    DELETE FROM notify_outbox WHERE payment_id = p_payment_id
    RETURNING result_code INTO v_staged;
    IF NOT FOUND THEN
        outcome := 'ALREADY_APPLIED';
        SELECT * INTO payment FROM payments WHERE payment_id = p_payment_id;
        RETURN;
    END IF;
    IF v_staged <> p_sent_code THEN
        RAISE EXCEPTION 'apply_notify_answer_once: % was staged with %, the answer is to %',
            p_payment_id, v_staged, p_sent_code;
    END IF;
    SELECT * INTO payment FROM payments WHERE payment_id = p_payment_id FOR UPDATE;
    IF p_sent_code <> 'SUCCESS' THEN
        outcome := 'ACKNOWLEDGED';
    ELSIF p_code = 'SUCCESS' AND payment.status = 'PENDING' THEN
        outcome := 'COMPLETED';
        INSERT INTO events (type, customer_id, payment_id, amount_tiyn)
        VALUES ('payment.completed', payment.customer_id, p_payment_id, payment.amount_tiyn);
    ELSIF p_code = 'SUCCESS' THEN
        outcome := 'RECEIPT';
    ELSIF payment.status <> 'PENDING' THEN
        outcome := 'CONTRADICTED';
    ELSE
        outcome := 'DECLINED';
        SELECT id INTO v_account FROM accounts WHERE customer_id = payment.customer_id;
        PERFORM ledger_transfer('payment_return', p_payment_id, settlement_account(p_shard),
                                v_account, payment.amount_tiyn);
        -- The decline frees the payment's share of the limits (in its own day and month).
        PERFORM account_paid_add(v_account, -payment.amount_tiyn, payment.confirmed_at);
        INSERT INTO events (type, customer_id, payment_id, amount_tiyn)
        VALUES ('payment.declined', payment.customer_id, p_payment_id, payment.amount_tiyn);
    END IF;
    -- One update of the row whatever the outcome (each update of an indexed status
    -- writes every index entry again).
    UPDATE payments
       SET status = CASE outcome WHEN 'COMPLETED' THEN 'COMPLETED'
                                 WHEN 'RECEIPT' THEN 'COMPLETED'
                                 WHEN 'DECLINED' THEN 'DECLINED' ELSE status END,
           link_receipt = CASE WHEN outcome IN ('COMPLETED', 'RECEIPT') THEN p_link
                               ELSE link_receipt END,
           kaspi_result_code = p_code, kaspi_result_message = p_message,
           kaspi_acknowledged = true, updated_at = now()
     WHERE payment_id = p_payment_id RETURNING * INTO payment;
END;
$$;
