-- Refunds Kaspi asks for (POST /refund). refund_id is the primary key: one row, and so
-- one credit, per refundId, whatever the number of copies or their timing. A refused
-- refund is stored too, so a repeat gets the same answer.

CREATE TABLE refunds (
    refund_id       text PRIMARY KEY CHECK (length(refund_id) BETWEEN 1 AND 64),
    payment_id      text NOT NULL CHECK (length(payment_id) BETWEEN 1 AND 64),
    customer_id     text NOT NULL,
    amount_tiyn     bigint NOT NULL CHECK (amount_tiyn >= 0),
    status          text NOT NULL CHECK (status IN ('SUCCESS', 'REFUSED')),
    result_code     text NOT NULL,
    result_message  text NOT NULL,
    link_receipt    text,
    transfer_id     bigint REFERENCES transfers (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'SUCCESS') = (transfer_id IS NOT NULL))
);
CREATE INDEX refunds_payment ON refunds (payment_id);

-- Every request that reaches the Kaspi-facing listener, for incident review (kept
-- ≥ 30 days by the integration checklist). Append-only: the trigger refuses changes.
CREATE TABLE inbound_requests (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    source_ip    text NOT NULL,
    method       text NOT NULL,
    path         text NOT NULL,
    headers      jsonb NOT NULL,
    body_masked  text NOT NULL,
    http_status  int NOT NULL,
    answer       jsonb,
    duration_ms  int
);
CREATE INDEX inbound_requests_received ON inbound_requests (received_at);

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;
CREATE TRIGGER inbound_requests_append_only BEFORE UPDATE OR DELETE ON inbound_requests
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
