-- Refunds Kaspi asks for, as one statement with their request-log entry (docs/refunds.md).
-- Outcomes are declared in mpp_server/domain/outcomes.py.

-- One credit per refundId, by the idempotency idiom (docs/design.md, "Idempotency"): the
-- refunds primary key is claimed first (RECEIVED, decided before this transaction ends);
-- a duplicate's INSERT waits for the first transaction and then answers what it stored.
-- A refusal is stored too: Kaspi gets the same answer every time (regulation §4.4).
-- outcome: CREDITED, CREDITED_PENDING (the payment was PENDING, now COMPLETED),
-- REPEAT, CONFLICT (same refundId, other arguments: PARAM_ILLEGAL), REFUSED
-- (PARAM_ILLEGAL), NOT_REFUNDABLE (PROCESS_FAIL), REFUSED_DECLINED (PROCESS_FAIL for a
-- payment we DECLINED: an alarm).
CREATE OR REPLACE FUNCTION refund_apply(p_refund_id text, p_payment_id text, p_customer_id text,
                             p_amount bigint, p_link text, p_shard int,
                             OUT code text, OUT message text, OUT outcome text)
LANGUAGE plpgsql AS $$
DECLARE
    v_stored refunds;
    v_payment payments;
    v_account bigint;
    v_transfer bigint;
BEGIN
    INSERT INTO refunds (refund_id, payment_id, customer_id, amount_tiyn, status,
                         result_code, result_message, link_receipt)
    VALUES (p_refund_id, p_payment_id, p_customer_id, p_amount, 'RECEIVED', 'PROCESS_FAIL',
            'in process', p_link)
    ON CONFLICT (refund_id) DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO v_stored FROM refunds WHERE refund_id = p_refund_id;
        IF (v_stored.payment_id, v_stored.customer_id, v_stored.amount_tiyn)
           IS DISTINCT FROM (p_payment_id, p_customer_id, p_amount) THEN
            code := 'PARAM_ILLEGAL';
            message := 'refundId was already used with another payment, customer or amount';
            outcome := 'CONFLICT';
        ELSE
            code := v_stored.result_code;
            message := v_stored.result_message;
            outcome := 'REPEAT';
        END IF;
        RETURN;
    END IF;

    -- Which code a refusal gets (regulation §4.4's codes; the table: docs/refunds.md):
    -- PARAM_ILLEGAL, "a wrong parameter of the request", when the request names what
    -- cannot be (an amount not above zero, a payment we do not know, another
    -- customer's payment); PROCESS_FAIL, "a general failure of business processing; the
    -- action must not be repeated", when the request is right but the payment refuses it
    -- (not completed, or less left to refund than asked). A stored answer is repeated as
    -- it was stored, whichever rule stored it.
    code := 'PARAM_ILLEGAL';
    outcome := 'REFUSED';
    SELECT * INTO v_payment FROM payments WHERE payment_id = p_payment_id FOR UPDATE;
    IF p_amount <= 0 THEN
        message := 'refundAmount must be positive';
    ELSIF v_payment.payment_id IS NULL THEN
        message := 'unknown paymentId';
    ELSIF v_payment.customer_id <> p_customer_id THEN
        message := 'customerId is not the payment''s customer';
    ELSIF v_payment.status NOT IN ('PENDING', 'COMPLETED') THEN
        code := 'PROCESS_FAIL';
        message := format('payment is %s, not COMPLETED', v_payment.status);
        IF v_payment.status = 'DECLINED' THEN
            outcome := 'REFUSED_DECLINED';
        ELSE
            outcome := 'NOT_REFUNDABLE';
        END IF;
    ELSIF p_amount > v_payment.amount_tiyn - v_payment.refunded_tiyn THEN
        code := 'PROCESS_FAIL';
        outcome := 'NOT_REFUNDABLE';
        message := format('refund would exceed the payment: %s tiyn left to refund',
                          v_payment.amount_tiyn - v_payment.refunded_tiyn);
    ELSE
        outcome := 'CREDITED';
        IF v_payment.status = 'PENDING' THEN
            PERFORM complete_unanswered(p_payment_id);
            outcome := 'CREDITED_PENDING';
        END IF;
        SELECT id INTO v_account FROM accounts WHERE customer_id = p_customer_id;
        v_transfer := ledger_transfer('refund_credit', p_refund_id, settlement_account(p_shard),
                                      v_account, p_amount);
        UPDATE payments SET refunded_tiyn = refunded_tiyn + p_amount, updated_at = now()
         WHERE payment_id = p_payment_id;
        INSERT INTO events (type, customer_id, payment_id, refund_id, amount_tiyn)
        VALUES ('refund.credited', p_customer_id, p_payment_id, p_refund_id, p_amount);
        -- A customer's open dispute of the payment that this refund now covers is
        -- resolved REFUNDED (disputes.sql).
        PERFORM disputes_refunded(p_payment_id, p_refund_id, p_amount);
        code := 'SUCCESS';
        message := 'success';
    END IF;
    UPDATE refunds SET status = CASE WHEN v_transfer IS NULL THEN 'REFUSED' ELSE 'SUCCESS' END,
           result_code = code, result_message = message, transfer_id = v_transfer
     WHERE refund_id = p_refund_id;
END;
$$;

-- POST /refund and its entry in the inbound request log, in one statement (one round
-- trip, one commit): the log row carries the answer refund_apply decided.
CREATE OR REPLACE FUNCTION refund_apply_logged(p_refund_id text, p_payment_id text, p_customer_id text,
                                    p_amount bigint, p_link text, p_shard int,
                                    p_source_ip text, p_path text, p_headers jsonb,
                                    p_body_masked text, p_elapsed_ms int,
                                    OUT code text, OUT message text, OUT outcome text)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT r.code, r.message, r.outcome INTO code, message, outcome
      FROM refund_apply(p_refund_id, p_payment_id, p_customer_id, p_amount, p_link,
                        p_shard) r;
    PERFORM inbound_log_insert(
        p_source_ip, 'POST', p_path, p_headers, p_body_masked, 200,
        jsonb_build_object('result', jsonb_build_object('resultCode', code,
                                                        'resultMessage', message)),
        p_elapsed_ms + (extract(epoch FROM clock_timestamp() - statement_timestamp())
                        * 1000)::int);
END;
$$;
