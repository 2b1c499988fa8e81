-- Top-ups by card (docs/topups.md): the status API's verdict applied once, and money
-- back to the card through the topup_refunds outbox. Outcomes are declared in
-- mpp_server/domain/outcomes.py (TopupOutcome, TopupRefundOutcome, TopupRefundAnswer).

-- The acquirer's clearing account's shard (ledger.shard_for(topupId) picks it).
CREATE OR REPLACE FUNCTION topup_clearing_account(p_provider text, p_shard int)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT id FROM accounts
     WHERE kind = 'acquirer_clearing_' || replace(p_provider, '-', '_')
       AND shard = p_shard AND customer_id IS NULL
$$;

-- POST /v1/topups's record, by the idempotency idiom (docs/design.md, "Idempotency"):
-- the top-up's row, CREATED, committed before the acquirer hears of it. outcome: CREATED;
-- REPEAT (this topupId with this customer, provider and amount: the row as it stands);
-- CONFLICT (this topupId with other arguments); LIMIT_EXCEEDED (the credit would lift the
-- balance over the cap of `level`, checked before the card is charged: nothing is
-- recorded, not even the claim or a new account).
CREATE OR REPLACE FUNCTION topup_create(p_topup_id text, p_customer_id text, p_provider text,
                                        p_amount bigint, p_session_s double precision,
                                        p_first_check_s double precision, p_limits jsonb,
                                        OUT outcome text, OUT level text, OUT topup topups)
LANGUAGE plpgsql AS $$
DECLARE
    v_exceeded boolean;
BEGIN
    BEGIN  -- the step: a refusal below undoes it all, the claim included
        INSERT INTO topups (topup_id, customer_id, provider, amount_tiyn, expires_at,
                            next_check_at)
        VALUES (p_topup_id, p_customer_id, p_provider, p_amount,
                now() + make_interval(secs => p_session_s),
                now() + make_interval(secs => p_first_check_s))
        ON CONFLICT (topup_id) DO NOTHING RETURNING * INTO topup;
        IF NOT FOUND THEN
            SELECT * INTO topup FROM topups WHERE topup_id = p_topup_id;
            outcome := CASE WHEN (topup.customer_id, topup.provider, topup.amount_tiyn)
                                 = (p_customer_id, p_provider, p_amount)
                            THEN 'REPEAT' ELSE 'CONFLICT' END;
            RETURN;
        END IF;
        SELECT c.level, c.exceeded INTO level, v_exceeded
          FROM customer_credit_check(p_customer_id, p_amount, p_limits) c;
        IF v_exceeded THEN
            outcome := 'LIMIT_EXCEEDED';
            RAISE SQLSTATE 'MP001';  -- undo the step (caught below)
        END IF;
        outcome := 'CREATED';
    EXCEPTION WHEN SQLSTATE 'MP001' THEN
        topup := NULL;  -- refused: outcome says why, nothing is recorded
    END;
END;
$$;

-- What the acquirer's status API said, applied in the caller's transaction, which holds
-- the top-up's row lock (the status was read under it: no other check can interleave).
-- p_verdict: PAID (with the amount the acquirer took), DECLINED (p_reason says why),
-- EXPIRED (the acquirer's session is over), WAITING (not paid yet) or NO_ANSWER (the
-- acquirer did not answer: never a reason to give up, it may have been paid).
-- outcome: CREDITED (customer credited from the clearing account, topup.credited),
-- MISMATCHED (paid another amount than ordered: FAILED, nothing credited, a person
-- looks), FAILED (topup.failed), EXPIRED (its session over and still unpaid:
-- topup.failed), WAITING (checked again after p_next_check_s), ALREADY_FINAL (a
-- concurrent check decided first: nothing changes).
CREATE OR REPLACE FUNCTION topup_apply_status(p_topup_id text, p_verdict text, p_reason text,
                                              p_paid_amount bigint, p_shard int,
                                              p_next_check_s double precision,
                                              OUT outcome text, OUT topup topups)
LANGUAGE plpgsql AS $$
DECLARE
    v_account bigint;
BEGIN
    SELECT * INTO topup FROM topups WHERE topup_id = p_topup_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'topup_apply_status: unknown top-up %', p_topup_id;
    END IF;
    IF topup.status <> 'CREATED' THEN
        outcome := 'ALREADY_FINAL';
        RETURN;
    END IF;
    IF p_verdict = 'PAID' AND p_paid_amount IS DISTINCT FROM topup.amount_tiyn THEN
        outcome := 'MISMATCHED';
    ELSIF p_verdict = 'PAID' THEN
        outcome := 'CREDITED';
        SELECT id INTO v_account FROM accounts WHERE customer_id = topup.customer_id;
        -- The balance cap was checked when the top-up was created (Topups.create); the
        -- card is charged by now, so the credit is made whatever the balance, and a
        -- balance left over the cap is counted (mpp_balance_over_cap_total).
        PERFORM ledger_transfer('topup', p_topup_id,
                                topup_clearing_account(topup.provider, p_shard), v_account,
                                topup.amount_tiyn);
        INSERT INTO events (type, customer_id, topup_id, amount_tiyn)
        VALUES ('topup.credited', topup.customer_id, p_topup_id, topup.amount_tiyn);
    ELSIF p_verdict = 'DECLINED' THEN
        outcome := 'FAILED';
    ELSIF p_verdict = 'EXPIRED' OR (p_verdict = 'WAITING' AND topup.expires_at <= now()) THEN
        outcome := 'EXPIRED';
    ELSIF p_verdict IN ('WAITING', 'NO_ANSWER') THEN
        outcome := 'WAITING';
    ELSE
        RAISE EXCEPTION 'topup_apply_status: unknown verdict %', p_verdict;
    END IF;
    IF outcome IN ('MISMATCHED', 'FAILED', 'EXPIRED') THEN
        INSERT INTO events (type, customer_id, topup_id, amount_tiyn)
        VALUES ('topup.failed', topup.customer_id, p_topup_id, topup.amount_tiyn);
    END IF;
    UPDATE topups
       SET status = CASE outcome WHEN 'CREDITED' THEN 'CREDITED' WHEN 'MISMATCHED' THEN 'FAILED'
                                 WHEN 'FAILED' THEN 'FAILED' WHEN 'EXPIRED' THEN 'EXPIRED'
                                 ELSE status END,
           credited_at = CASE WHEN outcome = 'CREDITED' THEN now() END,
           failure_reason = CASE WHEN outcome = 'MISMATCHED'
                                 THEN left('AMOUNT_MISMATCH: acquirer took '
                                           || coalesce(p_paid_amount::text, '?') || ' tiyn', 256)
                                 WHEN outcome = 'FAILED' THEN left(coalesce(p_reason, 'DECLINED'), 256)
                                 WHEN outcome = 'EXPIRED' THEN 'EXPIRED' END,
           checks = checks + 1,
           last_check_error = CASE WHEN p_verdict = 'NO_ANSWER' THEN left(p_reason, 256) END,
           -- The last check comes when the session ends, not a backoff later.
           next_check_at = CASE WHEN topup.expires_at > now()
                                THEN least(now() + make_interval(secs => p_next_check_s),
                                           topup.expires_at)
                                ELSE now() + make_interval(secs => p_next_check_s) END,
           updated_at = now()
     WHERE topup_id = p_topup_id RETURNING * INTO topup;
END;
$$;

-- POST /v1/topups/{topupId}/refunds: the wallet debited and the refund staged for the
-- acquirer in one transaction (the outbox worker tells the acquirer), the refundId
-- claimed first. Lock order: the refund's key, the top-up row, then the accounts
-- (ledger_transfer). outcome: STAGED, REPEAT (this refundId for this top-up and amount:
-- nothing more), CONFLICT (this refundId with other arguments), and the refusals that
-- record nothing: UNKNOWN_TOPUP, NOT_CREDITED, EXCEEDS (more than credited less
-- refunded), INSUFFICIENT_FUNDS (the wallet no longer holds the money).
CREATE OR REPLACE FUNCTION topup_refund_stage(p_refund_id text, p_topup_id text,
                                              p_amount bigint, p_shard int,
                                              OUT outcome text, OUT refund topup_refunds)
LANGUAGE plpgsql AS $$
DECLARE
    v_topup topups;
    v_account bigint;
BEGIN
    BEGIN  -- the step (docs/design.md, "Idempotency"): a refusal undoes the claim
        INSERT INTO topup_refunds (refund_id, topup_id, amount_tiyn)
        SELECT p_refund_id, p_topup_id, p_amount
         WHERE EXISTS (SELECT 1 FROM topups WHERE topup_id = p_topup_id)
        ON CONFLICT (refund_id) DO NOTHING RETURNING * INTO refund;
        IF NOT FOUND THEN
            SELECT * INTO refund FROM topup_refunds WHERE refund_id = p_refund_id;
            outcome := CASE WHEN refund.refund_id IS NULL THEN 'UNKNOWN_TOPUP'
                            WHEN (refund.topup_id, refund.amount_tiyn) = (p_topup_id, p_amount)
                            THEN 'REPEAT' ELSE 'CONFLICT' END;
            RETURN;
        END IF;
        SELECT * INTO v_topup FROM topups WHERE topup_id = p_topup_id FOR UPDATE;
        IF v_topup.status <> 'CREDITED' THEN
            outcome := 'NOT_CREDITED';
        ELSIF v_topup.refunded_tiyn + p_amount > v_topup.amount_tiyn THEN
            outcome := 'EXCEEDS';
        ELSE
            SELECT id INTO v_account FROM accounts WHERE customer_id = v_topup.customer_id;
            BEGIN
                PERFORM ledger_transfer('topup_refund', p_refund_id, v_account,
                                        topup_clearing_account(v_topup.provider, p_shard),
                                        p_amount);
            EXCEPTION WHEN check_violation THEN
                outcome := 'INSUFFICIENT_FUNDS';
            END;
        END IF;
        IF outcome IS NOT NULL THEN
            RAISE SQLSTATE 'MP001';  -- undo the step (caught below)
        END IF;
        outcome := 'STAGED';
        UPDATE topups SET refunded_tiyn = refunded_tiyn + p_amount, updated_at = now()
         WHERE topup_id = p_topup_id;
    EXCEPTION WHEN SQLSTATE 'MP001' THEN
        refund := NULL;  -- refused: outcome says why, nothing is recorded
    END;
END;
$$;

-- The acquirer's final answer to a refund, in the caller's transaction (which holds the
-- refund row's lock). p_verdict: ACCEPTED or REFUSED. outcome: COMPLETED, REFUSED (the
-- money returned to the wallet: never refused for a limit, it is the customer's own),
-- ALREADY_APPLIED.
CREATE OR REPLACE FUNCTION topup_refund_answer(p_refund_id text, p_verdict text,
                                               p_reason text, p_operation text, p_shard int,
                                               OUT outcome text, OUT refund topup_refunds)
LANGUAGE plpgsql AS $$
DECLARE
    v_topup topups;
    v_account bigint;
BEGIN
    SELECT * INTO refund FROM topup_refunds WHERE refund_id = p_refund_id FOR UPDATE;
    IF refund.status <> 'PENDING' THEN
        outcome := 'ALREADY_APPLIED';
        RETURN;
    END IF;
    IF p_verdict = 'ACCEPTED' THEN
        outcome := 'COMPLETED';
    ELSIF p_verdict = 'REFUSED' THEN
        outcome := 'REFUSED';
        SELECT * INTO v_topup FROM topups WHERE topup_id = refund.topup_id FOR UPDATE;
        SELECT id INTO v_account FROM accounts WHERE customer_id = v_topup.customer_id;
        PERFORM ledger_transfer('topup_refund_return', p_refund_id,
                                topup_clearing_account(v_topup.provider, p_shard), v_account,
                                refund.amount_tiyn);
        UPDATE topups SET refunded_tiyn = refunded_tiyn - refund.amount_tiyn,
                          updated_at = now()
         WHERE topup_id = refund.topup_id;
    ELSE
        RAISE EXCEPTION 'topup_refund_answer: unknown verdict %', p_verdict;
    END IF;
    UPDATE topup_refunds
       SET status = outcome, acquirer_reason = left(p_reason, 256), operation = p_operation,
           answered_at = now()
     WHERE refund_id = p_refund_id RETURNING * INTO refund;
END;
$$;
