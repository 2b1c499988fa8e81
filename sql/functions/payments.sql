-- A payment's steps (docs/design.md, "The path of one confirm"): every change of a
-- payment's status is made here or in notify.sql (the moves allowed: states.sql). Each is
-- one statement and returns an outcome declared in mpp_server/domain/outcomes.py.

-- Scan's answer recorded: a new payment, SCANNED; or, for a paymentId Kaspi gave before
-- (a Dynamic QR scanned again), the payment as it stands (created = false: the caller
-- refuses it to another customer).
CREATE OR REPLACE FUNCTION payment_scanned(p_payment_id text, p_customer_id text,
                                           p_qr_code_type text, p_amount bigint,
                                           p_until timestamptz, p_merchant jsonb,
                                           p_service jsonb, p_locale text,
                                           OUT created boolean, OUT payment payments)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payments (payment_id, customer_id, qr_code_type, status, amount_tiyn,
                          can_confirm_until, open_until, merchant, service, locale)
    VALUES (p_payment_id, p_customer_id, p_qr_code_type, 'SCANNED', p_amount, p_until,
            p_until, p_merchant, p_service, p_locale)
    ON CONFLICT (payment_id) DO NOTHING RETURNING * INTO payment;
    created := FOUND;
    IF NOT created THEN
        SELECT * INTO payment FROM payments WHERE payment_id = p_payment_id;
    END IF;
END;
$$;

-- Checkout's answer recorded (regulation §4.2): CHECKED_OUT with Kaspi's amount, its new
-- canConfirmUntil (NULL keeps scan's) and the parameters sent. outcome: CHECKED_OUT, or
-- CHANGED when the payment is no longer open (a confirm, cancel or expiry came first
-- while Kaspi was asked): the caller reads it and refuses.
CREATE OR REPLACE FUNCTION payment_checkout(p_payment_id text, p_amount bigint,
                                            p_until timestamptz, p_parameters jsonb,
                                            OUT outcome text, OUT payment payments)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE payments SET status = 'CHECKED_OUT', amount_tiyn = p_amount,
           can_confirm_until = coalesce(p_until, can_confirm_until),
           open_until = coalesce(p_until, can_confirm_until),
           checkout_parameters = p_parameters, updated_at = now()
     WHERE payment_id = p_payment_id AND status IN ('SCANNED', 'CHECKED_OUT')
    RETURNING * INTO payment;
    outcome := CASE WHEN FOUND THEN 'CHECKED_OUT' ELSE 'CHANGED' END;
END;
$$;

-- Checkout's final refusal recorded (regulation §4.2; which codes are final:
-- mpp_server/kaspi_client/codes.py CHECKOUT_FINAL_REFUSALS): EXPIRED for EXPIRED_CODE,
-- FAILED for PROCESS_FAIL ("the action must not be repeated"), with Kaspi's code and
-- message, which a repeated checkout answers without asking Kaspi again. Nothing was
-- debited, so nothing moves and Kaspi is not notified (it refused the payment itself).
-- outcome: FAILED, EXPIRED, or CHANGED when the payment is no longer open (a cancel or
-- the expiry sweep came first while Kaspi was asked): it keeps its status.
CREATE OR REPLACE FUNCTION payment_checkout_refused(p_payment_id text, p_code text,
                                                    p_message text, OUT outcome text)
LANGUAGE plpgsql AS $$
BEGIN
    IF p_code = 'EXPIRED_CODE' THEN
        outcome := 'EXPIRED';
    ELSE
        outcome := 'FAILED';
    END IF;
    UPDATE payments SET status = outcome, checkout_result_code = p_code,
           checkout_result_message = p_message, open_until = NULL, updated_at = now()
     WHERE payment_id = p_payment_id AND status IN ('SCANNED', 'CHECKED_OUT');
    IF NOT FOUND THEN
        outcome := 'CHANGED';
    END IF;
END;
$$;

-- An open payment past its canConfirmUntil (less the confirm's safety margin) is EXPIRED:
-- no debit. Kaspi is not told (it expires the payment itself). True when this call made
-- the move; false when the payment had left p_expected_status (another step won).
CREATE OR REPLACE FUNCTION payment_expire(p_payment_id text, p_expected_status text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE payments SET status = 'EXPIRED', open_until = NULL, updated_at = clock_timestamp()
     WHERE payment_id = p_payment_id AND status = p_expected_status;
    RETURN FOUND;
END;
$$;

-- The background sweep: every open payment whose canConfirmUntil has passed, EXPIRED
-- (payment_expire each); how many.
CREATE OR REPLACE FUNCTION payments_expire_stale() RETURNS int
LANGUAGE sql AS $$
    SELECT count(*) FILTER (WHERE payment_expire(payment_id, status))::int
      FROM payments
     WHERE open_until < now() AND status IN ('SCANNED', 'CHECKED_OUT')
$$;

-- The customer backed out (regulation §4.3): CANCELLED, and CANCELLED_BY_CLIENT staged
-- for Kaspi (p_code, p_message: outcomes.py CANCEL_NOTICE) under the request's lease.
-- outcome: CANCELLED; ALREADY_CANCELLED (a repeat: nothing more); CHANGED (no longer
-- open: the caller refuses with the payment's status).
CREATE OR REPLACE FUNCTION payment_cancel(p_payment_id text, p_code text, p_message text,
                                          p_hold_s double precision,
                                          OUT outcome text, OUT payment payments)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT * INTO payment FROM payments WHERE payment_id = p_payment_id FOR UPDATE;
    IF payment.status = 'CANCELLED' THEN
        outcome := 'ALREADY_CANCELLED';
    ELSIF payment.status NOT IN ('SCANNED', 'CHECKED_OUT') THEN
        outcome := 'CHANGED';
    ELSE
        outcome := 'CANCELLED';
        UPDATE payments SET status = 'CANCELLED', open_until = NULL, updated_at = now()
         WHERE payment_id = p_payment_id RETURNING * INTO payment;
        PERFORM notify_stage(p_payment_id, p_code, p_message, NULL, p_hold_s);
    END IF;
END;
$$;

-- Confirm's one statement (regulation §4.3; docs/design.md, "The path of one confirm"),
-- one round trip and one transaction before Kaspi is told: the payment locked and
-- checked against the request, then the customer debited and notifyPayment SUCCESS
-- staged; or, without the money or over a limit of the customer's identification level,
-- the payment declined and a failure notify staged so Kaspi closes it. Until issue 28 the
-- confirm read the payment in a round trip of its own and validated it in Python; the
-- rules of a confirm now live here, and the caller turns each refusal into its error
-- (mpp_server/domain/payments.py confirm).
-- Returns `payment` as the statement left it, and an outcome (ConfirmOutcome,
-- mpp_server/domain/outcomes.py): DEBITED; INSUFFICIENT_FUNDS or LIMIT_EXCEEDED
-- (DECLINED, payments.exceeded_limit naming the limit); EXPIRED (canConfirmUntil less
-- p_margin_ms has passed by the time the locks are held: the payment EXPIRED, nothing
-- debited or staged); or, nothing written: NOT_FOUND, NOT_YOURS (another customer
-- scanned it), DECIDED (PENDING, COMPLETED or DECLINED already: a repeat, answered from
-- the row), CLOSED (EXPIRED, CANCELLED or FAILED), AMOUNT_REQUIRED (a Static QR code has
-- no amount of its own), AMOUNT_NOT_WHOLE (a Static amount must be positive whole tenge,
-- as notifyPayment's paymentAmount is), CHECKOUT_REQUIRED (a Custom QR payment not
-- checked out), AMOUNT_DIFFERS (an amount that is not the payment's).
-- Locks, always in this order: the payment row first (concurrent confirms of one payment
-- run one after another: one debits, the others find it DECIDED), then the customer's
-- account alone (its row lock orders every debit and credit of the customer; the limits
-- and the balance are read under it, O(1) from the running totals), and the settlement
-- shard's account only in ledger_transfer, after the checks (customer accounts before
-- system ones: no deadlock).
-- The deadline is checked after the locks are held and against the wall clock
-- (clock_timestamp(), not the transaction's start): a confirm that waited on a lock must
-- not debit late (issue 14: one committed 3.5 s past canConfirmUntil). p_margin_ms
-- covers the rest of the statement and the commit.
-- p_shard is the settlement shard (mpp_server/domain/ledger.py shard_for); p_hold_s the
-- request's lease on the outbox row; p_notices maps each staging outcome to the
-- [resultCode, resultMessage] it stages (outcomes.py DEBIT_NOTICES, their one home);
-- p_limits the limits by level (accounts.sql); p_now the debit's time for the limits'
-- calendar and confirmed_at (NULL: the clock; the tests of the running totals pass their
-- own to cross midnights).
CREATE OR REPLACE FUNCTION payment_confirm(p_payment_id text, p_customer_id text,
                                           p_amount bigint, p_shard int, p_locale text,
                                           p_hold_s double precision, p_notices jsonb,
                                           p_limits jsonb, p_margin_ms int,
                                           p_now timestamptz DEFAULT NULL,
                                           OUT outcome text, OUT payment payments)
LANGUAGE plpgsql AS $$
DECLARE
    v_static boolean;
    v_amount bigint;
    v_account accounts;
    v_now timestamptz;
    v_limit text;
BEGIN
    SELECT * INTO payment FROM payments WHERE payment_id = p_payment_id FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'NOT_FOUND';
        RETURN;
    END IF;
    v_static := payment.qr_code_type = 'Static';
    IF payment.customer_id <> p_customer_id THEN
        outcome := 'NOT_YOURS';
    ELSIF payment.status IN ('PENDING', 'COMPLETED', 'DECLINED') THEN
        outcome := 'DECIDED';
    ELSIF payment.status NOT IN ('SCANNED', 'CHECKED_OUT') THEN
        outcome := 'CLOSED';
    ELSIF v_static AND p_amount IS NULL THEN
        outcome := 'AMOUNT_REQUIRED';
    ELSIF v_static AND (p_amount <= 0 OR p_amount % 100 <> 0) THEN
        outcome := 'AMOUNT_NOT_WHOLE';
    ELSIF payment.qr_code_type = 'Custom' AND payment.status = 'SCANNED' THEN
        outcome := 'CHECKOUT_REQUIRED';
    ELSIF NOT v_static AND p_amount <> payment.amount_tiyn THEN
        outcome := 'AMOUNT_DIFFERS';
    END IF;
    IF outcome IS NOT NULL THEN
        RETURN;
    END IF;
    v_amount := CASE WHEN v_static THEN p_amount ELSE payment.amount_tiyn END;
    SELECT * INTO v_account FROM accounts WHERE customer_id = p_customer_id FOR UPDATE;
    v_now := coalesce(p_now, clock_timestamp());
    IF payment.can_confirm_until IS NOT NULL
       AND clock_timestamp() >= payment.can_confirm_until
                                - make_interval(secs => p_margin_ms / 1000.0) THEN
        outcome := 'EXPIRED';
        PERFORM payment_expire(p_payment_id, payment.status);
        SELECT * INTO payment FROM payments WHERE payment_id = p_payment_id;
        RETURN;
    END IF;
    IF v_account.id IS NOT NULL THEN
        v_limit := payment_limit_exceeded(v_account, v_amount, p_limits, v_now);
    END IF;
    IF v_limit IS NOT NULL OR v_account.id IS NULL OR v_account.balance_tiyn < v_amount THEN
        outcome := CASE WHEN v_limit IS NOT NULL THEN 'LIMIT_EXCEEDED'
                        ELSE 'INSUFFICIENT_FUNDS' END;
        UPDATE payments SET status = 'DECLINED', decline_code = outcome,
               exceeded_limit = v_limit, exceeded_level = CASE WHEN v_limit IS NOT NULL
                   THEN v_account.identification_level END,
               amount_tiyn = v_amount, locale = coalesce(p_locale, locale),
               open_until = NULL, updated_at = now()
         WHERE payment_id = p_payment_id RETURNING * INTO payment;
        INSERT INTO events (type, customer_id, payment_id, amount_tiyn)
        VALUES ('payment.declined', p_customer_id, p_payment_id, v_amount);
    ELSE
        outcome := 'DEBITED';
        -- The debit moves the running totals of the limits too (p_paid_at).
        PERFORM ledger_transfer('payment_debit', p_payment_id, v_account.id,
                                settlement_account(p_shard), v_amount, v_now);
        UPDATE payments SET status = 'PENDING', amount_tiyn = v_amount,
               locale = coalesce(p_locale, locale), confirmed_at = v_now,
               open_until = NULL, updated_at = clock_timestamp()
         WHERE payment_id = p_payment_id RETURNING * INTO payment;
    END IF;
    PERFORM notify_stage(p_payment_id, p_notices -> outcome ->> 0,
                         p_notices -> outcome ->> 1, v_amount, p_hold_s);
END;
$$;

-- Kaspi proved it completed a PENDING payment whose notifyPayment answer we never got
-- (it refunds it, or its registry lists it): record it COMPLETED. The caller holds the
-- payment row FOR UPDATE. The outbox keeps running and records the receipt; it can no
-- longer decline the payment (apply_notify_answer_once: RECEIPT / CONTRADICTED).
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
