-- The two money steps of a payment, each one statement, so a confirm costs one round
-- trip for the debit and a notify answer one round trip to apply (docs/performance.md).
-- The Python state machine (mpp_server/payments.py, notifier.py) decides; these
-- functions do the locked, all-or-nothing writes it decided on.

-- The settlement account's shard (mpp_server/ledger.py shard_for picks it).
CREATE FUNCTION settlement_account(p_shard int) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT id FROM accounts WHERE kind = 'settlement' AND shard = p_shard
                              AND customer_id IS NULL
$$;

-- Debit the customer for a payment the caller validated in the status it read, and
-- stage notifyPayment SUCCESS; or, without the money, decline it and stage a
-- PROCESS_FAIL notify so Kaspi closes it. Returns 'DEBITED', 'INSUFFICIENT_FUNDS', or
-- 'CHANGED' when the payment is no longer in the status the caller validated (another
-- request won the race: the caller reads it again and answers what it finds).
CREATE FUNCTION payment_debit(p_payment_id text, p_customer_id text,
                              p_expected_status text, p_amount bigint, p_shard int,
                              p_locale text, p_hold_s double precision)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_account bigint;
    v_balance bigint;
    v_settlement bigint := settlement_account(p_shard);
    v_until timestamptz := now() + make_interval(secs => p_hold_s);
BEGIN
    PERFORM 1 FROM payments WHERE payment_id = p_payment_id AND status = p_expected_status
                              AND customer_id = p_customer_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'CHANGED';
    END IF;
    SELECT id INTO v_account FROM accounts WHERE customer_id = p_customer_id;
    IF FOUND THEN
        -- Both accounts in id order, as ledger_transfer does: no deadlock with a refund.
        PERFORM 1 FROM accounts WHERE id IN (v_account, v_settlement) ORDER BY id FOR UPDATE;
        SELECT balance_tiyn INTO v_balance FROM accounts WHERE id = v_account;
    END IF;
    IF v_account IS NULL OR v_balance < p_amount THEN
        UPDATE payments SET status = 'DECLINED', decline_code = 'INSUFFICIENT_FUNDS',
               amount_tiyn = p_amount, locale = coalesce(p_locale, locale), updated_at = now()
         WHERE payment_id = p_payment_id;
        INSERT INTO notify_outbox (payment_id, result_code, result_message, amount_tiyn,
                                   next_attempt_at)
        VALUES (p_payment_id, 'PROCESS_FAIL', 'insufficient funds', p_amount, v_until);
        INSERT INTO events (type, customer_id, payment_id, amount_tiyn)
        VALUES ('payment.declined', p_customer_id, p_payment_id, p_amount);
        RETURN 'INSUFFICIENT_FUNDS';
    END IF;
    PERFORM ledger_transfer('payment_debit', p_payment_id, v_account, v_settlement, p_amount);
    UPDATE payments SET status = 'PENDING', amount_tiyn = p_amount,
           locale = coalesce(p_locale, locale), confirmed_at = now(), updated_at = now()
     WHERE payment_id = p_payment_id;
    INSERT INTO notify_outbox (payment_id, result_code, result_message, amount_tiyn,
                               next_attempt_at)
    VALUES (p_payment_id, 'SUCCESS', 'success', p_amount, v_until);
    RETURN 'DEBITED';
END;
$$;

-- Apply Kaspi's final answer to our notifyPayment (policy: docs/notify-policy.md) and
-- remove the outbox row, in the caller's transaction (which holds the outbox row lock).
-- outcome: ACKNOWLEDGED (our cancel/decline was answered), COMPLETED, RECEIPT (already
-- COMPLETED through a refund: receipt recorded), DECLINED (money returned), or
-- CONTRADICTED (a refund proved the payment completed, yet Kaspi answers an error).
CREATE FUNCTION apply_notify_answer(p_payment_id text, p_sent_code text, p_code text,
                                    p_message text, p_link text, p_shard int,
                                    OUT outcome text, OUT payment payments)
LANGUAGE plpgsql AS $$
DECLARE
    v_account bigint;
    v_settlement bigint := settlement_account(p_shard);
BEGIN
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
    DELETE FROM notify_outbox WHERE payment_id = p_payment_id;
END;
$$;
