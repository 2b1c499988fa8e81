-- Payments: Kaspi's paymentId is the key; our own id (mppPaymentId) is a uuid.
-- The status is a one-way state machine (see mpp_server/payments.py TRANSITIONS).

CREATE TABLE payments (
    payment_id          text PRIMARY KEY CHECK (length(payment_id) BETWEEN 1 AND 64),
    mpp_payment_id      uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    customer_id         text NOT NULL CHECK (length(customer_id) BETWEEN 1 AND 12),
    qr_code_type        text NOT NULL CHECK (qr_code_type IN ('Dynamic', 'Static', 'Custom')),
    status              text NOT NULL CHECK (status IN ('SCANNED', 'CHECKED_OUT', 'PENDING',
                          'COMPLETED', 'DECLINED', 'CANCELLED', 'EXPIRED')),
    amount_tiyn         bigint CHECK (amount_tiyn > 0),
    refunded_tiyn       bigint NOT NULL DEFAULT 0 CHECK (refunded_tiyn >= 0),
    can_confirm_until   timestamptz,
    merchant            jsonb NOT NULL,
    service             jsonb,
    locale              text NOT NULL DEFAULT 'ru-RU' CHECK (locale IN ('ru-RU', 'kk-KZ')),
    -- Why we declined (INSUFFICIENT_FUNDS, ...) or what Kaspi answered.
    decline_code        text,
    kaspi_result_code   text,
    kaspi_result_message text,
    link_receipt        text,
    -- true once Kaspi answered our notifyPayment (success, cancel or decline).
    kaspi_acknowledged  boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    confirmed_at        timestamptz,
    -- Refunds never exceed the payment (the row is locked while a refund is applied).
    CONSTRAINT refunds_within_payment CHECK (refunded_tiyn <= coalesce(amount_tiyn, 0)),
    CHECK (status NOT IN ('PENDING', 'COMPLETED') OR amount_tiyn IS NOT NULL)
);
CREATE INDEX payments_customer ON payments (customer_id, created_at);
CREATE INDEX payments_pending ON payments (confirmed_at) WHERE status = 'PENDING';

-- The durable outbox of notifyPayment calls: a row exists from the moment the decision
-- is committed until Kaspi has answered. Workers take rows with FOR UPDATE SKIP LOCKED
-- and hold the lock through the HTTP call, so one payment is never notified by two
-- processes at once; a crashed process's lock dies with its connection.
CREATE TABLE notify_outbox (
    payment_id       text PRIMARY KEY REFERENCES payments (payment_id),
    result_code      text NOT NULL,
    result_message   text NOT NULL,
    amount_tiyn      bigint,
    attempts         int NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notify_outbox_due ON notify_outbox (next_attempt_at);

-- The Custom QR parameters sent to checkout, kept for incident review.
ALTER TABLE payments ADD COLUMN checkout_parameters jsonb;
CREATE INDEX payments_open_deadline ON payments (can_confirm_until)
    WHERE status IN ('SCANNED', 'CHECKED_OUT');
