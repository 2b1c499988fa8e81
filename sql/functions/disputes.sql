-- Disputes: a customer's complaint about a payment, answered within
-- DISPUTE_RESPONSE_HOURS (docs/notices.md). Every status change of a dispute is made
-- here (the moves allowed: states.sql 'dispute'). Outcomes are declared in
-- mpp_server/domain/outcomes.py (DisputeOpenOutcome, DisputeResolveOutcome).

-- POST /v1/disputes, by the idempotency idiom (docs/design.md, "Idempotency"): the
-- disputeId is claimed first (the OPEN row, inserted only for a payment we know); the
-- payment is then locked (a refund of it waits, and so sees the dispute, or went first)
-- and checked. p_amount NULL: the payment's amount. outcome: OPENED (dispute.opened);
-- REPEAT (this disputeId with this payment, customer, reason and amount: the stored row);
-- CONFLICT (this disputeId with other arguments); and the refusals that record nothing:
-- UNKNOWN_PAYMENT, CUSTOMER_MISMATCH (another customer's payment), NOT_PAID (nothing was
-- debited: not PENDING or COMPLETED), EXCEEDS (more than the payment).
CREATE OR REPLACE FUNCTION dispute_open(p_dispute_id text, p_payment_id text,
                                        p_customer_id text, p_reason text, p_amount bigint,
                                        p_response_hours double precision,
                                        OUT outcome text, OUT dispute disputes)
LANGUAGE plpgsql AS $$
DECLARE
    v_payment payments;
BEGIN
    BEGIN  -- the step: a refusal below undoes it all, the claim included
        INSERT INTO disputes (dispute_id, payment_id, customer_id, reason, amount_tiyn,
                              status, due_at)
        SELECT p_dispute_id, p_payment_id, p_customer_id, p_reason,
               -- (a payment without an amount was never debited: refused below)
               coalesce(p_amount, p.amount_tiyn, 1), 'OPEN',
               now() + make_interval(secs => p_response_hours * 3600)
          FROM payments p WHERE p.payment_id = p_payment_id
        ON CONFLICT (dispute_id) DO NOTHING RETURNING * INTO dispute;
        IF NOT FOUND THEN
            SELECT * INTO dispute FROM disputes WHERE dispute_id = p_dispute_id;
            outcome := CASE WHEN dispute.dispute_id IS NULL THEN 'UNKNOWN_PAYMENT'
                            WHEN (dispute.payment_id, dispute.customer_id, dispute.reason,
                                  dispute.amount_tiyn)
                                 = (p_payment_id, p_customer_id, p_reason,
                                    coalesce(p_amount, dispute.amount_tiyn))
                            THEN 'REPEAT' ELSE 'CONFLICT' END;
            IF outcome = 'UNKNOWN_PAYMENT' THEN
                dispute := NULL;
            END IF;
            RETURN;
        END IF;
        SELECT * INTO v_payment FROM payments WHERE payment_id = p_payment_id FOR UPDATE;
        IF v_payment.customer_id <> p_customer_id THEN
            outcome := 'CUSTOMER_MISMATCH';
        ELSIF v_payment.status NOT IN ('PENDING', 'COMPLETED') THEN
            outcome := 'NOT_PAID';
        ELSIF dispute.amount_tiyn > v_payment.amount_tiyn THEN
            outcome := 'EXCEEDS';
        END IF;
        IF outcome IS NOT NULL THEN
            RAISE SQLSTATE 'MP001';  -- undo the step (caught below)
        END IF;
        outcome := 'OPENED';
        INSERT INTO events (type, customer_id, payment_id, dispute_id, amount_tiyn)
        VALUES ('dispute.opened', p_customer_id, p_payment_id, p_dispute_id,
                dispute.amount_tiyn);
    EXCEPTION WHEN SQLSTATE 'MP001' THEN
        dispute := NULL;  -- refused: outcome says why, nothing is recorded
    END;
END;
$$;

-- The one way a dispute is resolved, by whoever resolves it: an operator (REJECTED, or
-- REFUNDED when Kaspi has refunded some of the payment), the wallet on the customer's
-- behalf (WITHDRAWN, p_customer_id given: only the dispute's own customer), or a refund
-- from Kaspi (disputes_refunded, below). RESOLVED with the resolution, the note and who,
-- and dispute.resolved. outcome: RESOLVED; REPEAT (already resolved so: nothing more);
-- ALREADY_RESOLVED (resolved otherwise: nothing changes); UNKNOWN; CUSTOMER_MISMATCH;
-- NOT_REFUNDED (REFUNDED asked, but Kaspi has refunded nothing of the payment).
CREATE OR REPLACE FUNCTION dispute_resolve(p_dispute_id text, p_resolution text,
                                           p_note text, p_by text, p_customer_id text,
                                           OUT outcome text, OUT dispute disputes)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT * INTO dispute FROM disputes WHERE dispute_id = p_dispute_id FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'UNKNOWN';
    ELSIF p_customer_id IS NOT NULL AND p_customer_id <> dispute.customer_id THEN
        outcome := 'CUSTOMER_MISMATCH';
    ELSIF dispute.status = 'RESOLVED' THEN
        outcome := CASE WHEN dispute.resolution = p_resolution THEN 'REPEAT'
                        ELSE 'ALREADY_RESOLVED' END;
    ELSIF p_resolution = 'REFUNDED' AND NOT EXISTS (
              SELECT 1 FROM payments WHERE payment_id = dispute.payment_id
                 AND refunded_tiyn > 0) THEN
        outcome := 'NOT_REFUNDED';
    ELSE
        outcome := 'RESOLVED';
        UPDATE disputes SET status = 'RESOLVED', resolution = p_resolution, note = p_note,
               resolved_by = p_by, resolved_at = clock_timestamp()
         WHERE dispute_id = p_dispute_id RETURNING * INTO dispute;
        INSERT INTO events (type, customer_id, payment_id, dispute_id, amount_tiyn)
        VALUES ('dispute.resolved', dispute.customer_id, dispute.payment_id, p_dispute_id,
                dispute.amount_tiyn);
    END IF;
END;
$$;

-- A refund from Kaspi credited for p_payment_id, in refund_apply's transaction (which
-- holds the payment's row lock): it counts towards every dispute of the payment open at
-- that moment, and each one whose amount the refunds credited since it opened now cover
-- is resolved REFUNDED (by `refund:<refundId>`). Returns how many it resolved.
CREATE OR REPLACE FUNCTION disputes_refunded(p_payment_id text, p_refund_id text,
                                             p_amount bigint)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    v_dispute disputes;
    v_resolved int := 0;
BEGIN
    FOR v_dispute IN
        UPDATE disputes SET refunded_tiyn = refunded_tiyn + p_amount
         WHERE payment_id = p_payment_id AND status = 'OPEN'
        RETURNING *
    LOOP
        CONTINUE WHEN v_dispute.refunded_tiyn < v_dispute.amount_tiyn;
        PERFORM dispute_resolve(v_dispute.dispute_id, 'REFUNDED',
                                format('Kaspi refunded %s KZT of it since it opened '
                                       '(last refund %s)',
                                       (v_dispute.refunded_tiyn / 100.0)::numeric(20, 2),
                                       p_refund_id),
                                'refund:' || p_refund_id, NULL);
        v_resolved := v_resolved + 1;
    END LOOP;
    RETURN v_resolved;
END;
$$;
