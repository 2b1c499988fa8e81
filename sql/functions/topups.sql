-- Top-ups by card (docs/topups.md): the top-up's row before the acquirer hears of it,
-- one order per topupId, the status API's verdict applied once (late too), and money
-- back to the card through the topup_refunds outbox. No transaction here spans an
-- acquirer call: work is claimed by a lease committed before the call (order, check,
-- refund attempt), and the answer is applied by its own short transaction, from the
-- status the work was claimed in. Outcomes are declared in mpp_server/domain/outcomes.py
-- (TopupCreateOutcome, TopupOrderOutcome, TopupCheckOutcome, TopupOutcome,
-- TopupRefundOutcome, TopupRefundClaim, TopupRefundAnswer).

-- The acquirer's clearing account's shard (ledger.shard_for(topupId) picks it).
CREATE OR REPLACE FUNCTION topup_clearing_account(p_provider text, p_shard int)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT id FROM accounts
     WHERE kind = 'acquirer_clearing_' || replace(p_provider, '-', '_')
       AND shard = p_shard AND customer_id IS NULL
$$;

-- POST /v1/topups's record, by the idempotency idiom (docs/design.md, "Idempotency"):
-- the top-up's row, CREATED, committed before the acquirer hears of it, with our name
-- for it at the acquirer where that is not the topupId (gateway_ref: Halyk's invoiceID,
-- 9 digits, unique in its last 6 for the first million invoices; Kaspi's ExternalId is
-- the topupId; Kapital's OrderID is the bank's). outcome: CREATED; REPEAT (this topupId
-- with this customer, provider and amount: the row as it stands); CONFLICT (this topupId
-- with other arguments); LIMIT_EXCEEDED (the balance, the customer's other open top-ups
-- and this one would exceed the cap of `level`, checked under the account's lock before
-- the card is charged: nothing is recorded, not even the claim or a new account).
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
                            next_check_at, gateway_ref)
        VALUES (p_topup_id, p_customer_id, p_provider, p_amount,
                now() + make_interval(secs => p_session_s),
                now() + make_interval(secs => p_first_check_s),
                CASE WHEN p_provider = 'halyk-epay'
                     THEN lpad(nextval('halyk_invoice_seq')::text, 9, '0') END)
        ON CONFLICT (topup_id) DO NOTHING RETURNING * INTO topup;
        IF NOT FOUND THEN
            SELECT * INTO topup FROM topups WHERE topup_id = p_topup_id;
            outcome := CASE WHEN (topup.customer_id, topup.provider, topup.amount_tiyn)
                                 = (p_customer_id, p_provider, p_amount)
                            THEN 'REPEAT' ELSE 'CONFLICT' END;
            RETURN;
        END IF;
        SELECT c.level, c.exceeded INTO level, v_exceeded
          FROM customer_credit_check(p_customer_id, p_amount, p_limits, p_topup_id) c;
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

-- ---- one order per topupId ------------------------------------------------------------

-- Who places the top-up's order at the acquirer: the caller that gets CLAIMED (a lease of
-- p_lease_s, committed before the call; order_attempts counts it). PLACED: it has its
-- page already; BUSY: another caller holds the lease (wait for its page); FINAL: the
-- top-up is no longer CREATED (no page is handed out for it).
CREATE OR REPLACE FUNCTION topup_order_claim(p_topup_id text, p_lease_s double precision,
                                             OUT outcome text, OUT topup topups)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT * INTO topup FROM topups WHERE topup_id = p_topup_id FOR UPDATE;
    IF topup.status <> 'CREATED' THEN
        outcome := 'FINAL';
    ELSIF topup.payment_url IS NOT NULL THEN
        outcome := 'PLACED';
    ELSIF topup.order_claimed_until > now() THEN
        outcome := 'BUSY';
    ELSE
        outcome := 'CLAIMED';
        UPDATE topups SET order_claimed_until = now() + make_interval(secs => p_lease_s),
                          order_attempts = order_attempts + 1, updated_at = now()
         WHERE topup_id = p_topup_id RETURNING * INTO topup;
    END IF;
END;
$$;

-- The acquirer placed the order: its ids, the page, and the end of its own payment
-- session (p_session_end; EXPIRED is decided on it, not on our clock at creation).
-- STORED; PLACED (another attempt stored its order first: that one is the top-up's).
CREATE OR REPLACE FUNCTION topup_order_placed(p_topup_id text, p_order_id text,
                                              p_session_id text, p_payment_url text,
                                              p_page_key text, p_page_data jsonb,
                                              p_session_end timestamptz,
                                              OUT outcome text, OUT topup topups)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE topups
       SET provider_order_id = p_order_id, provider_session_id = p_session_id,
           payment_url = p_payment_url, page_key = p_page_key, page_data = p_page_data,
           expires_at = p_session_end, next_check_at = least(next_check_at, p_session_end),
           order_claimed_until = NULL, updated_at = now()
     WHERE topup_id = p_topup_id AND payment_url IS NULL RETURNING * INTO topup;
    IF FOUND THEN
        outcome := 'STORED';
    ELSE
        outcome := 'PLACED';
        SELECT * INTO topup FROM topups WHERE topup_id = p_topup_id;
    END IF;
END;
$$;

-- The order was not placed: refused (p_refused) or not answered. A refusal fails the
-- top-up only when nothing else can have reached the acquirer: this was the top-up's
-- only attempt and it has no page (FAILED, topup.failed). Otherwise the refusal may be
-- the acquirer's "a duplicate of the order you placed": the top-up stays CREATED (KEPT),
-- the poller asks about it, and its session's end decides. No answer: KEPT, the lease
-- released so that a repeat of the request tries again.
CREATE OR REPLACE FUNCTION topup_order_not_placed(p_topup_id text, p_refused boolean,
                                                  p_reason text,
                                                  OUT outcome text, OUT topup topups)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT * INTO topup FROM topups WHERE topup_id = p_topup_id FOR UPDATE;
    IF p_refused AND topup.status = 'CREATED' AND topup.order_attempts = 1
       AND topup.payment_url IS NULL THEN
        outcome := 'FAILED';
        INSERT INTO events (type, customer_id, topup_id, amount_tiyn)
        VALUES ('topup.failed', topup.customer_id, p_topup_id, topup.amount_tiyn);
    ELSE
        outcome := 'KEPT';
    END IF;
    UPDATE topups
       SET status = CASE WHEN outcome = 'FAILED' THEN 'FAILED' ELSE status END,
           failure_reason = CASE WHEN outcome = 'FAILED'
                                 THEN left('ORDER_REFUSED: ' || p_reason, 256)
                                 ELSE failure_reason END,
           last_check_error = CASE WHEN outcome = 'KEPT' THEN left(p_reason, 256)
                                   ELSE last_check_error END,
           order_claimed_until = NULL, updated_at = now()
     WHERE topup_id = p_topup_id RETURNING * INTO topup;
END;
$$;

-- ---- the status API's verdict, applied once ------------------------------------------

-- Who asks the acquirer about the top-up now: the caller that gets CLAIMED (a lease of
-- p_lease_s, committed before the call); a CREATED top-up, or a FAILED or EXPIRED one
-- still watched (watch_until) for money taken late. BUSY: another process is asking; it
-- will ask once more right after (recheck_requested), so a callback that arrived
-- meanwhile is always followed by a check. NOT_DUE: nothing left to ask.
CREATE OR REPLACE FUNCTION topup_check_claim(p_topup_id text, p_lease_s double precision,
                                             OUT outcome text, OUT topup topups)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT * INTO topup FROM topups WHERE topup_id = p_topup_id FOR UPDATE;
    IF NOT FOUND OR NOT (topup.status = 'CREATED' OR (topup.status IN ('FAILED', 'EXPIRED')
                                                      AND topup.watch_until > now())) THEN
        outcome := 'NOT_DUE';
    ELSIF topup.check_claimed_until > now() THEN
        outcome := 'BUSY';
        UPDATE topups SET recheck_requested = true WHERE topup_id = p_topup_id;
    ELSE
        outcome := 'CLAIMED';
        UPDATE topups SET check_claimed_until = now() + make_interval(secs => p_lease_s),
                          recheck_requested = false
         WHERE topup_id = p_topup_id RETURNING * INTO topup;
    END IF;
END;
$$;

-- What the acquirer's status API said, applied in a transaction of its own after the call
-- (the check's lease is released here). p_verdict: PAID (with the amount and currency the
-- acquirer took, and its transaction id), DECLINED (p_reason says why), EXPIRED (the
-- acquirer's session is over), WAITING (not paid yet) or NO_ANSWER (never a reason to
-- give up: it may have been paid). Only from the status the top-up had when claimed:
-- outcome: CREDITED (customer credited from the clearing account, topup.credited);
-- LATE_CREDITED (paid after we called it FAILED or EXPIRED: credited all the same, the
-- money is the customer's; counted); MISMATCHED / WRONG_CURRENCY (paid another amount,
-- or in another currency than tenge: FAILED, nothing credited, a person looks; late:
-- the watch ends); FAILED (declined: topup.failed, watched p_watch_s more, the customer
-- may retry the card on the page still open); EXPIRED (the session is over, the last
-- check found it unpaid: topup.failed, watched p_watch_s more); WAITING (checked
-- again after p_next_check_s, or at once if a callback came meanwhile); ALREADY_FINAL
-- (credited, or a final top-up whose late check found nothing new).
CREATE OR REPLACE FUNCTION topup_apply_status(p_topup_id text, p_verdict text, p_reason text,
                                              p_paid_amount bigint, p_paid_currency text,
                                              p_transaction_id text, p_shard int,
                                              p_next_check_s double precision,
                                              p_watch_s double precision,
                                              OUT outcome text, OUT topup topups)
LANGUAGE plpgsql AS $$
DECLARE
    v_account bigint;
    v_paid boolean := p_verdict = 'PAID';
    v_tenge boolean := p_paid_currency IS NOT DISTINCT FROM 'KZT';
    v_right_amount boolean;
BEGIN
    SELECT * INTO topup FROM topups WHERE topup_id = p_topup_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'topup_apply_status: unknown top-up %', p_topup_id;
    END IF;
    IF p_verdict NOT IN ('PAID', 'DECLINED', 'EXPIRED', 'WAITING', 'NO_ANSWER') THEN
        RAISE EXCEPTION 'topup_apply_status: unknown verdict %', p_verdict;
    END IF;
    v_right_amount := p_paid_amount IS NOT DISTINCT FROM topup.amount_tiyn;
    IF topup.status = 'CREDITED' OR (topup.status <> 'CREATED' AND NOT v_paid) THEN
        -- Watched after FAILED or EXPIRED, only money taken late changes anything.
        outcome := 'ALREADY_FINAL';
    ELSIF v_paid AND NOT v_tenge THEN
        outcome := 'WRONG_CURRENCY';
    ELSIF v_paid AND NOT v_right_amount THEN
        outcome := 'MISMATCHED';
    ELSIF v_paid AND topup.status <> 'CREATED' THEN
        outcome := 'LATE_CREDITED';
    ELSIF v_paid THEN
        outcome := 'CREDITED';
    ELSIF p_verdict = 'DECLINED' THEN
        outcome := 'FAILED';
    ELSIF p_verdict = 'EXPIRED' OR (p_verdict = 'WAITING' AND topup.expires_at <= now()) THEN
        outcome := 'EXPIRED';
    ELSE
        outcome := 'WAITING';
    END IF;
    IF outcome IN ('CREDITED', 'LATE_CREDITED') THEN
        SELECT id INTO v_account FROM accounts WHERE customer_id = topup.customer_id;
        -- The balance cap was checked when the top-up was created (open top-ups count);
        -- the card is charged by now, so the credit is made whatever the balance, and a
        -- balance left over the cap is counted (mpp_balance_over_cap_total).
        PERFORM ledger_transfer('topup', p_topup_id,
                                topup_clearing_account(topup.provider, p_shard), v_account,
                                topup.amount_tiyn);
        INSERT INTO events (type, customer_id, topup_id, amount_tiyn)
        VALUES ('topup.credited', topup.customer_id, p_topup_id, topup.amount_tiyn);
    ELSIF outcome IN ('FAILED', 'EXPIRED')
          OR (outcome IN ('MISMATCHED', 'WRONG_CURRENCY') AND topup.status = 'CREATED') THEN
        INSERT INTO events (type, customer_id, topup_id, amount_tiyn)
        VALUES ('topup.failed', topup.customer_id, p_topup_id, topup.amount_tiyn);
    END IF;
    UPDATE topups
       SET status = CASE WHEN outcome IN ('CREDITED', 'LATE_CREDITED') THEN 'CREDITED'
                         WHEN outcome = 'EXPIRED' THEN 'EXPIRED'
                         WHEN outcome IN ('FAILED', 'MISMATCHED', 'WRONG_CURRENCY')
                              AND status = 'CREATED' THEN 'FAILED'
                         ELSE status END,
           credited_at = CASE WHEN outcome IN ('CREDITED', 'LATE_CREDITED') THEN now() END,
           failure_reason = CASE
               WHEN outcome IN ('CREDITED', 'LATE_CREDITED') THEN NULL
               WHEN outcome = 'MISMATCHED'
               THEN left('AMOUNT_MISMATCH: acquirer took '
                         || coalesce(p_paid_amount::text, '?') || ' tiyn', 256)
               WHEN outcome = 'WRONG_CURRENCY'
               THEN left('CURRENCY_MISMATCH: acquirer charged '
                         || coalesce(p_paid_currency, '?'), 256)
               WHEN outcome = 'FAILED' THEN left(coalesce(p_reason, 'DECLINED'), 256)
               WHEN outcome = 'EXPIRED' THEN 'EXPIRED'
               ELSE failure_reason END,
           provider_transaction_id = coalesce(p_transaction_id, provider_transaction_id),
           -- The watch for money taken late (a declined card retried on the page still
           -- open, a payment the acquirer took after its session): p_watch_s more; a
           -- mismatch raised its alarm and is a person's now.
           watch_until = CASE
               WHEN outcome IN ('FAILED', 'EXPIRED')
               THEN now() + make_interval(secs => p_watch_s)
               WHEN outcome IN ('CREDITED', 'LATE_CREDITED', 'MISMATCHED', 'WRONG_CURRENCY')
               THEN NULL ELSE watch_until END,
           checks = checks + 1,
           last_check_error = CASE WHEN p_verdict = 'NO_ANSWER' THEN left(p_reason, 256) END,
           -- The last check comes when the session ends, not a backoff later; a callback
           -- during this check asks for the next at once.
           next_check_at = CASE
               WHEN recheck_requested THEN now()
               WHEN expires_at > now()
               THEN least(now() + make_interval(secs => p_next_check_s), expires_at)
               ELSE now() + make_interval(secs => p_next_check_s) END,
           check_claimed_until = NULL, recheck_requested = false, updated_at = now()
     WHERE topup_id = p_topup_id RETURNING * INTO topup;
END;
$$;

-- ---- money back to the card ------------------------------------------------------------

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

-- A refund to the card that did not happen: its money goes back to the wallet
-- (never refused for a limit: it is the customer's own), in the caller's transaction.
CREATE OR REPLACE FUNCTION topup_refund_give_back(p_refund topup_refunds, p_shard int)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_topup topups;
BEGIN
    SELECT * INTO v_topup FROM topups WHERE topup_id = p_refund.topup_id FOR UPDATE;
    PERFORM ledger_transfer('topup_refund_return', p_refund.refund_id,
                            topup_clearing_account(v_topup.provider, p_shard),
                            (SELECT id FROM accounts WHERE customer_id = v_topup.customer_id),
                            p_refund.amount_tiyn);
    UPDATE topups SET refunded_tiyn = refunded_tiyn - p_refund.amount_tiyn, updated_at = now()
     WHERE topup_id = p_refund.topup_id;
END;
$$;

-- Who makes the refund's next attempt: the caller that gets SEND (tell the acquirer:
-- sent_at is set now, before the call, since the request may reach it) or ASK (the
-- refund is UNKNOWN, or a sent attempt's answer was never applied, which makes it
-- UNKNOWN now: read the acquirer's books about the top-up, send nothing), under a
-- lease of p_lease_s (next_attempt_at; `attempts` numbers the attempt). Refunds of one
-- top-up go one at a time: while another is in flight (sent, unanswered) or UNKNOWN, the
-- acquirer's books could not tell whose refund they show (WAIT_TURN). NOT_DUE: answered,
-- or not due yet, or another process holds it. done_tiyn: what the top-up's COMPLETED
-- refunds add up to, the acquirer's books' expected total before this one.
CREATE OR REPLACE FUNCTION topup_refund_claim(p_refund_id text, p_lease_s double precision,
                                              OUT outcome text, OUT refund topup_refunds,
                                              OUT done_tiyn bigint)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT * INTO refund FROM topup_refunds WHERE refund_id = p_refund_id FOR UPDATE;
    IF NOT FOUND OR refund.status NOT IN ('PENDING', 'UNKNOWN')
       OR refund.next_attempt_at > now() THEN
        outcome := 'NOT_DUE';
        RETURN;
    END IF;
    IF refund.status = 'PENDING' AND EXISTS (
            SELECT 1 FROM topup_refunds o
             WHERE o.topup_id = refund.topup_id AND o.refund_id <> p_refund_id
               AND (o.status = 'UNKNOWN' OR (o.status = 'PENDING' AND o.sent_at IS NOT NULL))) THEN
        outcome := 'WAIT_TURN';  -- looked at again after a lease, not every poll
        UPDATE topup_refunds SET next_attempt_at = now() + make_interval(secs => p_lease_s)
         WHERE refund_id = p_refund_id;
        RETURN;
    END IF;
    -- PENDING with sent_at: an attempt was sent and its answer never applied (its
    -- process died, or its lease ran out): it may have been done, like an unanswered one.
    IF refund.status = 'UNKNOWN' OR refund.sent_at IS NOT NULL THEN
        outcome := 'ASK';
    ELSE
        outcome := 'SEND';
    END IF;
    SELECT coalesce(sum(amount_tiyn), 0) INTO done_tiyn FROM topup_refunds
     WHERE topup_id = refund.topup_id AND status = 'COMPLETED';
    UPDATE topup_refunds
       SET next_attempt_at = now() + make_interval(secs => p_lease_s),
           attempts = attempts + 1,
           status = CASE WHEN outcome = 'ASK' THEN 'UNKNOWN' ELSE status END,
           doubted = doubted OR outcome = 'ASK',
           sent_at = CASE WHEN outcome = 'SEND' THEN now() ELSE sent_at END
     WHERE refund_id = p_refund_id RETURNING * INTO refund;
END;
$$;

-- An attempt's result, applied in a transaction of its own after the call. p_attempt is
-- the attempt claimed; p_verdict: ACCEPTED (the acquirer took the refund), REFUSED (it
-- said no, finally), NO_ANSWER (nothing readable came back: it may have been done), or
-- LOOKED (an ASK: p_acquirer_refunded is what the acquirer's books show refunded of the
-- top-up, NULL when they could not be read). outcome:
--   COMPLETED: accepted, or the books show exactly this refund on top of the completed
--     ones (from any attempt: that is the acquirer's word);
--   REFUSED: refused, on a refund never in doubt: the money goes back to the wallet;
--   UNKNOWN: no answer, or refused after a doubt (its earlier request may still be done),
--     or books that show neither this refund nor its absence: never given back unasked;
--   RESEND: the books show it was not done and the last request is p_settle_s old: it is
--     sent again (PENDING);
--   WAITING: looked too early, or the books could not be read: asked again later;
--   ALREADY_APPLIED: answered before, or a stale attempt's answer that proves nothing.
CREATE OR REPLACE FUNCTION topup_refund_answer(p_refund_id text, p_attempt int, p_verdict text,
                                               p_reason text, p_operation text,
                                               p_acquirer_refunded bigint, p_shard int,
                                               p_retry_s double precision,
                                               p_settle_s double precision,
                                               OUT outcome text, OUT refund topup_refunds)
LANGUAGE plpgsql AS $$
DECLARE
    v_done bigint;
    v_current boolean;
BEGIN
    SELECT * INTO refund FROM topup_refunds WHERE refund_id = p_refund_id FOR UPDATE;
    IF p_verdict NOT IN ('ACCEPTED', 'REFUSED', 'NO_ANSWER', 'LOOKED') THEN
        RAISE EXCEPTION 'topup_refund_answer: unknown verdict %', p_verdict;
    END IF;
    v_current := refund.attempts = p_attempt;
    SELECT coalesce(sum(amount_tiyn), 0) INTO v_done FROM topup_refunds
     WHERE topup_id = refund.topup_id AND status = 'COMPLETED';
    IF refund.status NOT IN ('PENDING', 'UNKNOWN') THEN
        outcome := 'ALREADY_APPLIED';
    ELSIF p_verdict = 'ACCEPTED' OR (p_verdict = 'LOOKED'
                                     AND p_acquirer_refunded = v_done + refund.amount_tiyn) THEN
        outcome := 'COMPLETED';
    ELSIF NOT v_current THEN
        outcome := 'ALREADY_APPLIED';
    ELSIF p_verdict = 'REFUSED' AND NOT refund.doubted THEN
        outcome := 'REFUSED';
    ELSIF p_verdict IN ('REFUSED', 'NO_ANSWER') THEN
        outcome := 'UNKNOWN';
    ELSIF p_acquirer_refunded IS NULL THEN
        outcome := 'WAITING';
    ELSIF p_acquirer_refunded <> v_done THEN
        outcome := 'UNKNOWN';  -- books that show another refund than ours: a person looks
    ELSIF refund.sent_at <= now() - make_interval(secs => p_settle_s) THEN
        outcome := 'RESEND';
    ELSE
        outcome := 'WAITING';
    END IF;
    IF outcome = 'REFUSED' THEN
        PERFORM topup_refund_give_back(refund, p_shard);
    END IF;
    IF outcome = 'ALREADY_APPLIED' THEN
        RETURN;
    END IF;
    UPDATE topup_refunds
       SET status = CASE WHEN outcome IN ('COMPLETED', 'REFUSED', 'UNKNOWN') THEN outcome
                         WHEN outcome = 'RESEND' THEN 'PENDING' ELSE status END,
           doubted = doubted OR outcome = 'UNKNOWN',
           acquirer_reason = CASE WHEN p_reason IS NOT NULL THEN left(p_reason, 256)
                                  ELSE acquirer_reason END,
           operation = coalesce(p_operation, operation),
           acquirer_refunded_tiyn = coalesce(p_acquirer_refunded, acquirer_refunded_tiyn),
           answered_at = CASE WHEN outcome IN ('COMPLETED', 'REFUSED') THEN now() END,
           last_error = CASE WHEN p_verdict = 'NO_ANSWER' THEN left(p_reason, 256)
                             ELSE last_error END,
           -- RESEND: the books showed it not done; the next attempt sends it afresh.
           sent_at = CASE WHEN outcome = 'RESEND' THEN NULL ELSE sent_at END,
           next_attempt_at = now() + make_interval(secs => CASE WHEN outcome = 'RESEND'
                                                               THEN 0 ELSE p_retry_s END)
     WHERE refund_id = p_refund_id RETURNING * INTO refund;
END;
$$;

-- A person resolved an UNKNOWN refund with the bank (docs/runbook.md): it was done
-- (COMPLETED) or it was not (REFUSED: the money goes back to the wallet). outcome:
-- COMPLETED, REFUSED, NOT_UNKNOWN (the refund is not UNKNOWN: nothing changes).
CREATE OR REPLACE FUNCTION topup_refund_resolve(p_refund_id text, p_done boolean, p_by text,
                                                p_resolution text, p_shard int,
                                                OUT outcome text, OUT refund topup_refunds)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT * INTO refund FROM topup_refunds WHERE refund_id = p_refund_id FOR UPDATE;
    IF NOT FOUND OR refund.status <> 'UNKNOWN' THEN
        outcome := 'NOT_UNKNOWN';
        RETURN;
    END IF;
    outcome := CASE WHEN p_done THEN 'COMPLETED' ELSE 'REFUSED' END;
    IF outcome = 'REFUSED' THEN
        PERFORM topup_refund_give_back(refund, p_shard);
    END IF;
    UPDATE topup_refunds
       SET status = outcome, answered_at = now(), resolved_by = p_by,
           resolution = p_resolution
     WHERE refund_id = p_refund_id RETURNING * INTO refund;
END;
$$;
