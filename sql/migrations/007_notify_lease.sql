-- Kaspi's answer applied once: the outbox row is claimed (deleted) first, and only the
-- caller that deleted it applies the answer (sql/005 apply_notify_answer, whose own
-- DELETE of the row then finds nothing). Two callers can hold the same answer only
-- when the request that decided a payment, sending its first notifyPayment under the
-- lease payment_debit gave it (next_attempt_at, no row lock: docs/notify-policy.md),
-- overran the lease and the worker sent the same notify too; Kaspi answers both the
-- same (it is idempotent per paymentId). The second caller waits for the first's row
-- lock, finds no row and changes nothing: outcome ALREADY_APPLIED.
-- Lock order, as in the worker's attempt: the outbox row, then the payment row.
CREATE FUNCTION apply_notify_answer_once(p_payment_id text, p_sent_code text, p_code text,
                                         p_message text, p_link text, p_shard int,
                                         OUT outcome text, OUT payment payments)
LANGUAGE plpgsql AS $$
DECLARE
    v_staged text;
    v_applied record;
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
    SELECT a.outcome, a.payment INTO v_applied
      FROM apply_notify_answer(p_payment_id, p_sent_code, p_code, p_message, p_link,
                               p_shard) a;
    outcome := v_applied.outcome;
    payment := v_applied.payment;
END;
$$;

-- POST /refund and its entry in the inbound request log, in one statement (one round
-- trip, one commit): the log row carries the answer refund_apply decided.
CREATE FUNCTION refund_apply_logged(p_refund_id text, p_payment_id text, p_customer_id text,
                                    p_amount bigint, p_link text, p_shard int,
                                    p_source_ip text, p_path text, p_headers jsonb,
                                    p_body_masked text, p_elapsed_ms int,
                                    OUT code text, OUT message text, OUT outcome text)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT r.code, r.message, r.outcome INTO code, message, outcome
      FROM refund_apply(p_refund_id, p_payment_id, p_customer_id, p_amount, p_link,
                        p_shard) r;
    INSERT INTO inbound_requests (source_ip, method, path, headers, body_masked,
                                  http_status, answer, duration_ms)
    VALUES (p_source_ip, 'POST', p_path, p_headers, p_body_masked, 200,
            jsonb_build_object('result', jsonb_build_object('resultCode', code,
                                                            'resultMessage', message)),
            p_elapsed_ms + (extract(epoch FROM clock_timestamp() - statement_timestamp())
                            * 1000)::int);
END;
$$;
