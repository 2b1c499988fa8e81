-- A payment's money steps (docs/design.md, "The path of one confirm"). Each is one
-- statement and returns an outcome declared in mpp_server/domain/outcomes.py.

-- Debit the customer for a payment the caller validated in the status it read, and
-- stage notifyPayment SUCCESS; or, without the money or over a limit of the customer's
-- identification level, decline it and stage a failure notify so Kaspi closes it.
-- Returns an outcome of DebitOutcome: 'DEBITED', 'INSUFFICIENT_FUNDS', 'LIMIT_EXCEEDED'
-- (payments.exceeded_limit names the limit), 'EXPIRED' (canConfirmUntil less
-- p_margin_ms has passed by the time the locks are held: nothing debited, the payment
-- EXPIRED, nothing staged), or 'CHANGED' when the payment is no longer in the status the
-- caller validated (another request won the race: the caller reads it again and answers
-- what it finds). p_notices maps each staging outcome to the [resultCode, resultMessage]
-- it stages (mpp_server/domain/outcomes.py DEBIT_NOTICES, their one home); p_limits are
-- the limits by level (sql/functions/accounts.sql).
-- The deadline is checked here, after every lock is held and against the wall clock
-- (clock_timestamp(), not the transaction's start): a confirm that passed the caller's
-- check and then waited on a lock must not debit late (issue 14: it committed 3.5 s
-- past canConfirmUntil). p_margin_ms covers the rest of the statement and the commit.
CREATE OR REPLACE FUNCTION payment_debit(p_payment_id text, p_customer_id text,
                                         p_expected_status text, p_amount bigint,
                                         p_shard int, p_locale text,
                                         p_hold_s double precision, p_notices jsonb,
                                         p_limits jsonb, p_margin_ms int)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_account bigint;
    v_balance bigint;
    v_settlement bigint := settlement_account(p_shard);
    v_until timestamptz;
    v_limit text;
    v_outcome text;
BEGIN
    SELECT can_confirm_until INTO v_until FROM payments
     WHERE payment_id = p_payment_id AND status = p_expected_status
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
    IF v_until IS NOT NULL
       AND clock_timestamp() >= v_until - make_interval(secs => p_margin_ms / 1000.0) THEN
        UPDATE payments SET status = 'EXPIRED', updated_at = clock_timestamp()
         WHERE payment_id = p_payment_id;
        RETURN 'EXPIRED';
    END IF;
    IF v_account IS NOT NULL THEN
        -- Under the account's lock: concurrent confirms never pass a limit together.
        v_limit := payment_limit_exceeded(v_account, p_amount, p_limits, clock_timestamp());
    END IF;
    IF v_limit IS NOT NULL OR v_account IS NULL OR v_balance < p_amount THEN
        v_outcome := CASE WHEN v_limit IS NOT NULL THEN 'LIMIT_EXCEEDED'
                          ELSE 'INSUFFICIENT_FUNDS' END;
        UPDATE payments SET status = 'DECLINED', decline_code = v_outcome,
               exceeded_limit = v_limit, exceeded_level = CASE WHEN v_limit IS NOT NULL THEN
                   (SELECT identification_level FROM accounts WHERE id = v_account) END,
               amount_tiyn = p_amount, locale = coalesce(p_locale, locale), updated_at = now()
         WHERE payment_id = p_payment_id;
        INSERT INTO events (type, customer_id, payment_id, amount_tiyn)
        VALUES ('payment.declined', p_customer_id, p_payment_id, p_amount);
    ELSE
        v_outcome := 'DEBITED';
        PERFORM ledger_transfer('payment_debit', p_payment_id, v_account, v_settlement,
                                p_amount);
        UPDATE payments SET status = 'PENDING', amount_tiyn = p_amount,
               locale = coalesce(p_locale, locale), confirmed_at = clock_timestamp(),
               updated_at = clock_timestamp()
         WHERE payment_id = p_payment_id;
    END IF;
    PERFORM notify_stage(p_payment_id, p_notices -> v_outcome ->> 0,
                         p_notices -> v_outcome ->> 1, p_amount, p_hold_s);
    RETURN v_outcome;
END;
$$;

-- Kaspi proved it completed a PENDING payment whose notifyPayment answer we never got
-- (it refunds it, or its registry lists it): record it COMPLETED. The caller holds the
-- payment row FOR UPDATE. The outbox keeps running and records the receipt; it can no
-- longer decline the payment (apply_notify_answer: RECEIPT / CONTRADICTED).
CREATE OR REPLACE FUNCTION complete_unanswered(p_payment_id text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE payments SET status = 'COMPLETED', updated_at = now()
     WHERE payment_id = p_payment_id AND status = 'PENDING';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'complete_unanswered: payment % is not PENDING', p_payment_id;
    END IF;
    INSERT INTO events (type, customer_id, payment_id, amount_tiyn)
    SELECT 'payment.completed', customer_id, payment_id, amount_tiyn
      FROM payments WHERE payment_id = p_payment_id;
END;
$$;
