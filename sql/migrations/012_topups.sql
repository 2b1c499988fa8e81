-- Top-ups by card (issue 16, docs/topups.md): the wallet is a merchant of three card
-- acquirers. A top-up row is committed before the acquirer hears of it; it is credited
-- once, from the acquirer's clearing account, after the acquirer's status API says paid.

-- Other migrations widen these CHECK lists too: extend whatever list is there now, so
-- the order in which migrations add kinds does not matter.
DO $$
DECLARE
    v_table text;
    v_constraint text;
    v_add text[];
    v_kinds text[];
BEGIN
    FOR v_table, v_constraint, v_add IN VALUES
        ('accounts', 'accounts_kind_check',
         ARRAY['acquirer_clearing_halyk_epay', 'acquirer_clearing_kapital',
               'acquirer_clearing_kaspi_ecom']),
        ('transfers', 'transfers_kind_check',
         ARRAY['topup', 'topup_refund', 'topup_refund_return'])
    LOOP
        SELECT array_agg(DISTINCT m[1]) INTO v_kinds
          FROM pg_constraint c,
               regexp_matches(pg_get_constraintdef(c.oid), '''([a-z_]+)''', 'g') m
         WHERE c.conname = v_constraint AND c.conrelid = v_table::regclass;
        SELECT array_agg(DISTINCT k ORDER BY k) INTO v_kinds
          FROM unnest(v_kinds || v_add) k;
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', v_table, v_constraint);
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (kind = ANY (%L::text[]))',
                       v_table, v_constraint, v_kinds);
    END LOOP;
END;
$$;

-- acquirer_clearing_<provider>: what the acquirer owes us for card payments it took
-- (credited top-ups less refunds sent back to the card), negative by construction like
-- funding. One kind per acquirer so each one's settlement can be reconciled alone;
-- 16 shards each (picked by topupId) so concurrent credits do not queue on one row.
INSERT INTO accounts (kind, shard)
SELECT k, s FROM unnest(ARRAY['acquirer_clearing_halyk_epay', 'acquirer_clearing_kapital',
                              'acquirer_clearing_kaspi_ecom']) AS k,
                 generate_series(0, 15) AS s;

CREATE TABLE topups (
    topup_id             text PRIMARY KEY CHECK (length(topup_id) BETWEEN 1 AND 64),
    customer_id          text NOT NULL CHECK (length(customer_id) BETWEEN 1 AND 12),
    provider             text NOT NULL CHECK (provider IN ('halyk-epay', 'kapital',
                                                           'kaspi-ecom')),
    amount_tiyn          bigint NOT NULL CHECK (amount_tiyn > 0),
    status               text NOT NULL DEFAULT 'CREATED'
                           CHECK (status IN ('CREATED', 'CREDITED', 'FAILED', 'EXPIRED')),
    -- Halyk's invoice id, Kapital's OrderId, Kaspi's paymentId; NULL until the acquirer
    -- answered the order's creation.
    provider_order_id    text CHECK (length(provider_order_id) BETWEEN 1 AND 128),
    provider_session_id  text CHECK (length(provider_session_id) BETWEEN 1 AND 128),
    payment_url          text CHECK (length(payment_url) BETWEEN 1 AND 2048),
    failure_reason       text CHECK (length(failure_reason) <= 256),
    refunded_tiyn        bigint NOT NULL DEFAULT 0,
    -- The status poller: when to ask the acquirer next, how often it asked, and when the
    -- acquirer's payment session is over (then one last check, then EXPIRED).
    expires_at           timestamptz NOT NULL,
    next_check_at        timestamptz NOT NULL,
    checks               int NOT NULL DEFAULT 0,
    last_check_error     text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    credited_at          timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'CREDITED') = (credited_at IS NOT NULL)),
    -- Never more back to the card than was credited.
    CHECK (refunded_tiyn >= 0 AND refunded_tiyn <= amount_tiyn),
    CHECK (refunded_tiyn = 0 OR status = 'CREDITED')
);
CREATE UNIQUE INDEX topups_provider_order ON topups (provider, provider_order_id);
CREATE INDEX topups_due ON topups (next_check_at) WHERE status = 'CREATED';

-- Money back to the card; a PENDING row is the outbox: the wallet was debited, the
-- acquirer not told yet (or it has not answered). COMPLETED: the acquirer accepted it;
-- REFUSED: it refused finally and the money went back to the wallet.
CREATE TABLE topup_refunds (
    refund_id        text PRIMARY KEY CHECK (length(refund_id) BETWEEN 1 AND 64),
    topup_id         text NOT NULL REFERENCES topups (topup_id),
    amount_tiyn      bigint NOT NULL CHECK (amount_tiyn > 0),
    status           text NOT NULL DEFAULT 'PENDING'
                       CHECK (status IN ('PENDING', 'COMPLETED', 'REFUSED')),
    -- Kapital: Reverse (the whole amount, the day it was paid) or Refund; the last sent.
    operation        text,
    acquirer_reason  text CHECK (length(acquirer_reason) <= 256),
    attempts         int NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    answered_at      timestamptz,
    CHECK ((status = 'PENDING') = (answered_at IS NULL))
);
CREATE INDEX topup_refunds_topup ON topup_refunds (topup_id);
CREATE INDEX topup_refunds_due ON topup_refunds (next_attempt_at) WHERE status = 'PENDING';

ALTER TABLE events ADD COLUMN topup_id text;
