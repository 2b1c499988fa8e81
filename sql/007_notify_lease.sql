-- apply_notify_answer, idempotent: the outbox row is claimed (deleted) first, so an
-- answer is applied once even when two senders got it. That happens only when the
-- request that decided a payment, sending its first notifyPayment under the lease
-- payment_debit gave it (next_attempt_at, no row lock: one round trip fewer, see
-- docs/notify-policy.md), overran the lease and the worker sent the same notify too;
-- Kaspi answers both the same (it is idempotent per paymentId). The second apply finds
-- no outbox row and changes nothing: outcome ALREADY_APPLIED.
-- Lock order, as in the worker's attempt: the outbox row, then the payment row.
CREATE OR REPLACE FUNCTION apply_notify_answer(p_payment_id text, p_sent_code text,
                                               p_code text, p_message text, p_link text,
                                               p_shard int,
                                               OUT outcome text, OUT payment payments)
LANGUAGE plpgsql AS $$
DECLARE
    v_account bigint;
    v_settlement bigint := settlement_account(p_shard);
    v_staged text;
BEGIN
    DELETE FROM notify_outbox WHERE payment_id = p_payment_id
    RETURNING result_code INTO v_staged;
    IF NOT FOUND THEN
        outcome := 'ALREADY_APPLIED';
        SELECT * INTO payment FROM payments WHERE payment_id = p_payment_id;
        RETURN;
    END IF;
    IF v_staged <> p_sent_code THEN
        RAISE EXCEPTION 'apply_notify_answer: % was staged with %, the answer is to %',
            p_payment_id, v_staged, p_sent_code;
    END IF;
    SELECT * INTO payment FROM payments WHERE payment_id = p_payment_id FOR UPDATE;
    IF p_sent_code <> 'SUCCESS' THEN
        outcome := 'ACKNOWLEDGED';
    ELSIF p_code = 'SUCCESS' THEN
        outcome := CASE WHEN payment.status = 'PENDING' THEN 'COMPLETED' ELSE 'RECEIPT' END;
        IF payment.status = 'PENDING' THEN
            INSERT INTO events (type, customer_id, payment_id, amount_tiyn)
            VALUES ('payment.completed', payment.customer_id, p_payment_id,
                    payment.amount_tiyn);
        END IF;
    ELSIF payment.status <> 'PENDING' THEN
        outcome := 'CONTRADICTED';
    ELSE
        outcome := 'DECLINED';
        SELECT id INTO v_account FROM accounts WHERE customer_id = payment.customer_id;
        PERFORM ledger_transfer('payment_return', p_payment_id, v_settlement, v_account,
                                payment.amount_tiyn);
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
