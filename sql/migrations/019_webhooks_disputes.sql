-- Telling the customer (issue 25, docs/notices.md): every event of the feed pushed to the
-- wallet backend as a signed webhook, from an outbox row staged in the event's own
-- transaction; and disputes, a customer's complaint about a payment, answered within
-- DISPUTE_RESPONSE_HOURS.

-- The dispute an event reports (dispute.opened, dispute.resolved).
ALTER TABLE events ADD COLUMN dispute_id text;

-- One delivery per event, staged by a trigger on events (sql/functions/webhooks.sql) in
-- the transaction that inserts the event; events from before this migration are not
-- delivered. No foreign key to events: retention may remove an old event, never its
-- delivery record. Status moves: sql/functions/states.sql ('webhook').
CREATE TABLE webhook_deliveries (
    event_id         bigint PRIMARY KEY,
    status           text NOT NULL CHECK (status IN ('PENDING', 'DELIVERED', 'GIVEN_UP')),
    -- When the delivery became due: the event's time, or the last replay's.
    -- WEBHOOK_MAX_AGE_S and the oldest-undelivered gauge count from it.
    pending_since    timestamptz NOT NULL,
    -- Due from then. A sender claims a due row by moving it past its lease (and counting
    -- the attempt) in a transaction of its own, committed before it calls the receiver.
    next_attempt_at  timestamptz NOT NULL,
    attempts         int NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- The last failed attempt's result (HTTP_500, TIMEOUT, CONNECTION_ERROR, ...).
    last_result      text CHECK (length(last_result) <= 300),
    delivered_at     timestamptz,
    given_up_at      timestamptz,
    replays          int NOT NULL DEFAULT 0 CHECK (replays >= 0)
);
-- The senders' one index: what is due. (The gauges and the give-up sweep read the few
-- PENDING rows through it too; every index is paid by every event's insert.)
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'PENDING';

-- A customer's complaint about a payment (POST /v1/disputes), keyed by the wallet's
-- disputeId (claimed first: docs/design.md, "Idempotency"). Status moves:
-- sql/functions/states.sql ('dispute'); the steps: sql/functions/disputes.sql.
CREATE TABLE disputes (
    dispute_id     text PRIMARY KEY CHECK (length(dispute_id) BETWEEN 1 AND 64),
    payment_id     text NOT NULL REFERENCES payments (payment_id),
    customer_id    text NOT NULL CHECK (length(customer_id) BETWEEN 1 AND 12),
    reason         text NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
    amount_tiyn    bigint NOT NULL CHECK (amount_tiyn > 0),
    status         text NOT NULL CHECK (status IN ('OPEN', 'RESOLVED')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    due_at         timestamptz NOT NULL,
    -- Kaspi's refunds of the payment credited while the dispute was open: it resolves
    -- REFUNDED once they cover its amount (disputes_refunded).
    refunded_tiyn  bigint NOT NULL DEFAULT 0 CHECK (refunded_tiyn >= 0),
    resolution     text CHECK (resolution IN ('REFUNDED', 'REJECTED', 'WITHDRAWN')),
    note           text CHECK (length(note) <= 1000),
    -- Who resolved it: an operator's login, `wallet` (withdrawn), `refund:<refundId>`.
    resolved_by    text CHECK (length(resolved_by) BETWEEN 1 AND 128),
    resolved_at    timestamptz,
    CHECK ((status = 'RESOLVED') = (resolution IS NOT NULL)),
    CHECK ((status = 'RESOLVED') = (resolved_at IS NOT NULL))
);
CREATE INDEX disputes_payment ON disputes (payment_id);
CREATE INDEX disputes_open_by_due ON disputes (due_at) WHERE status = 'OPEN';
