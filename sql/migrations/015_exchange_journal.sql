-- Issue 26: records that last. The exchange journal, and money records that cannot be
-- rewritten (docs/operations.md, "Records, retention and roles").

-- One row per exchange with a counterpart: each call to Kaspi (scan, checkout, every
-- notifyPayment attempt), each inbound /refund, each acquirer call and callback, each
-- webhook delivery attempt. Written in batches by the server (mpp_server/journal.py),
-- never in a money transaction. Partitioned by UTC month of occurred_at so retention
-- drops whole months (retention_maintain, sql/functions/retention.sql) instead of
-- deleting rows. Bodies are text: Kapital speaks XML. Card data and secrets are redacted
-- before they are written; customer ids are kept as the protocol carries them.
CREATE TABLE exchange_journal (
    id               bigserial,
    occurred_at      timestamptz NOT NULL,
    direction        text NOT NULL CHECK (direction IN ('out', 'in')),
    counterparty     text NOT NULL CHECK (length(counterparty) BETWEEN 1 AND 32),
    operation        text NOT NULL CHECK (length(operation) BETWEEN 1 AND 64),
    -- The method and URL of the call (outbound), or the method and path (inbound).
    target           text CHECK (length(target) <= 2048),
    payment_id       text CHECK (length(payment_id) <= 64),
    refund_id        text CHECK (length(refund_id) <= 64),
    topup_id         text CHECK (length(topup_id) <= 64),
    request_id       text CHECK (length(request_id) <= 64),
    http_status      int,
    transport_error  text CHECK (length(transport_error) <= 256),
    duration_ms      int NOT NULL CHECK (duration_ms >= 0),
    request_body     text,
    response_body    text,
    PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);

-- The operators' console reads a payment's notifyPayment attempts, a top-up's acquirer
-- calls, a refund's exchanges.
CREATE INDEX exchange_journal_payment ON exchange_journal (payment_id, occurred_at)
    WHERE payment_id IS NOT NULL;
CREATE INDEX exchange_journal_topup ON exchange_journal (topup_id, occurred_at)
    WHERE topup_id IS NOT NULL;
CREATE INDEX exchange_journal_refund ON exchange_journal (refund_id, occurred_at)
    WHERE refund_id IS NOT NULL;

-- This month's partition and the next three (UTC months, named exchange_journal_YYYY_MM);
-- the server's maintenance keeps creating the coming ones.
DO $$
DECLARE
    v_this_month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
BEGIN
    FOR i IN 0..3 LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF exchange_journal FOR VALUES FROM (%L) TO (%L)',
                       'exchange_journal_' || to_char(v_this_month + make_interval(months => i),
                                                      'YYYY_MM'),
                       (v_this_month + make_interval(months => i)) AT TIME ZONE 'UTC',
                       (v_this_month + make_interval(months => i + 1)) AT TIME ZONE 'UTC');
    END LOOP;
END;
$$;

-- Money records are never rewritten: the triggers that keep them (append-only, never
-- deleted, kept at least 30 days) are the records policy of sql/functions/records.sql,
-- applied with the functions after every migration, so that a table a later migration
-- creates (disputes) is guarded too, whatever order migrations arrive in.

-- Events are kept EVENTS_RETENTION_DAYS; retention finds the old ones by time. BRIN:
-- events are inserted in time order, and a BRIN index costs an insert almost nothing.
CREATE INDEX events_created_brin ON events USING brin (created_at);
