-- Top-ups under a flaky acquirer (issue 22, docs/topups.md): no connection or transaction
-- is held across an acquirer call any more. A process claims the work first (a lease
-- committed before the call), calls, then applies the answer in a short transaction of
-- its own; the answer applies once because every status move starts from the status it
-- was claimed in.

-- Our own name for the top-up at the acquirer, fixed before it hears of it, so a lost
-- answer can still be asked about: Halyk's invoiceID (digits, from halyk_invoice_seq).
-- Kaspi's ExternalId is the topupId itself; Kapital takes none (its OrderID is the bank's).
CREATE SEQUENCE halyk_invoice_seq MINVALUE 1 START 100001 NO CYCLE;

ALTER TABLE topups
    ADD COLUMN gateway_ref text CHECK (length(gateway_ref) BETWEEN 1 AND 64),
    -- The acquirer's id of the payment itself (Halyk: the transaction id its refunds
    -- take; learned from the status API).
    ADD COLUMN provider_transaction_id text
        CHECK (length(provider_transaction_id) BETWEEN 1 AND 128),
    -- What our own payment page needs (Halyk: the payment token bound to the invoice),
    -- and the unguessable key of its URL.
    ADD COLUMN page_key text UNIQUE CHECK (length(page_key) BETWEEN 16 AND 64),
    ADD COLUMN page_data jsonb,
    -- One order per topupId: the process placing it holds this lease (order_attempts
    -- counts the tries that may have reached the acquirer).
    ADD COLUMN order_claimed_until timestamptz,
    ADD COLUMN order_attempts int NOT NULL DEFAULT 0,
    -- One status check at a time across processes: the lease of the one asking, and a
    -- callback that came meanwhile (the next check then comes at once).
    ADD COLUMN check_claimed_until timestamptz,
    ADD COLUMN recheck_requested boolean NOT NULL DEFAULT false,
    -- A FAILED or EXPIRED top-up is still asked about until then: money the acquirer
    -- takes late (a page kept open, a retried card) is credited late.
    ADD COLUMN watch_until timestamptz;

CREATE UNIQUE INDEX topups_gateway_ref ON topups (provider, gateway_ref);
CREATE INDEX topups_watched ON topups (next_check_at)
    WHERE status IN ('FAILED', 'EXPIRED') AND watch_until IS NOT NULL;
-- The balance cap counts the customer's open top-ups.
CREATE INDEX topups_open_by_customer ON topups (customer_id) WHERE status = 'CREATED';

-- Money back to the card whose outcome is unknown (an attempt unanswered) is UNKNOWN: it
-- is never given back to the wallet before the acquirer's own books say it did not
-- happen. `doubted`: it was UNKNOWN once, so a later refusal is no proof either.
ALTER TABLE topup_refunds DROP CONSTRAINT topup_refunds_status_check;
ALTER TABLE topup_refunds ADD CONSTRAINT topup_refunds_status_check
    CHECK (status IN ('PENDING', 'UNKNOWN', 'COMPLETED', 'REFUSED'));
ALTER TABLE topup_refunds DROP CONSTRAINT topup_refunds_check;
ALTER TABLE topup_refunds ADD CONSTRAINT topup_refunds_answered_check
    CHECK ((status IN ('PENDING', 'UNKNOWN')) = (answered_at IS NULL));
ALTER TABLE topup_refunds
    -- The last time a request for it may have reached the acquirer.
    ADD COLUMN sent_at timestamptz,
    ADD COLUMN doubted boolean NOT NULL DEFAULT false,
    -- What the acquirer's books showed refunded of the top-up at the last look, tiyn.
    ADD COLUMN acquirer_refunded_tiyn bigint,
    -- Who resolved an UNKNOWN refund by hand, and what the bank said.
    ADD COLUMN resolved_by text CHECK (length(resolved_by) BETWEEN 1 AND 100),
    ADD COLUMN resolution text CHECK (length(resolution) BETWEEN 1 AND 2000);
DROP INDEX topup_refunds_due;
CREATE INDEX topup_refunds_due ON topup_refunds (next_attempt_at)
    WHERE status IN ('PENDING', 'UNKNOWN');
