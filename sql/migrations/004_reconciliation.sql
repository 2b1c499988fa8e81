-- Reconciliation against Kaspi's daily and monthly registries (regulation §5): one row
-- per imported file, one row per discrepancy found. See mpp_server/reconcile/ and
-- docs/reconciliation.md. A file is identified by its SHA-256: importing it again
-- changes nothing.

CREATE TABLE reconciliation_runs (
    id                    bigserial PRIMARY KEY,
    file_sha256           text NOT NULL UNIQUE CHECK (file_sha256 ~ '^[0-9a-f]{64}$'),
    file_name             text NOT NULL,
    kind                  text NOT NULL CHECK (kind IN ('daily', 'monthly')),
    -- The registry's period in Kazakhstan's local dates: [period_start, period_end).
    period_start          date NOT NULL,
    period_end            date NOT NULL,
    -- matched: no open discrepancy when the run ended; discrepancies: some were open.
    status                text NOT NULL CHECK (status IN ('matched', 'discrepancies')),
    rows_count            int NOT NULL CHECK (rows_count >= 0),
    matched_count         int NOT NULL CHECK (matched_count >= 0),
    discrepancy_count     int NOT NULL CHECK (discrepancy_count >= 0),
    -- What Kaspi's file says ...
    kaspi_payments_count  int NOT NULL,
    kaspi_payments_tiyn   bigint NOT NULL,
    kaspi_refunds_count   int NOT NULL,
    kaspi_refunds_tiyn    bigint NOT NULL,
    kaspi_fees_tiyn       bigint NOT NULL,
    -- ... and what our books say for the same period (by our completion time).
    our_payments_count    int NOT NULL,
    our_payments_tiyn     bigint NOT NULL,
    our_refunds_count     int NOT NULL,
    our_refunds_tiyn      bigint NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    CHECK (period_end > period_start),
    CHECK (matched_count <= rows_count)
);
CREATE INDEX reconciliation_runs_registry
    ON reconciliation_runs (kind, period_start, id DESC);

CREATE TABLE reconciliation_discrepancies (
    id            bigserial PRIMARY KEY,
    run_id        bigint NOT NULL REFERENCES reconciliation_runs (id),
    kind          text NOT NULL CHECK (kind IN (
                    'not_in_our_books', 'not_in_registry', 'amount_mismatch',
                    'type_mismatch', 'customer_mismatch', 'reference_mismatch',
                    'status_mismatch', 'pending_completed',
                    'registry_confirms_declined_payment')),
    -- The registry's "ID операции Kaspi" (paymentId or refundId) and, when we know the
    -- operation, our id for it (mppPaymentId of a payment, refundId of a refund).
    kaspi_id      text,
    our_id        text,
    -- The registry row (Excel's row number), none for what only our books have.
    row_number    int,
    -- expected: what Kaspi's registry says; actual: what our books say.
    expected      text,
    actual        text,
    message       text NOT NULL,
    resolved      boolean NOT NULL DEFAULT false,
    resolved_at   timestamptz,
    resolution    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (resolved = (resolved_at IS NOT NULL))
);
CREATE INDEX reconciliation_discrepancies_run ON reconciliation_discrepancies (run_id, id);
CREATE INDEX reconciliation_discrepancies_open ON reconciliation_discrepancies (kaspi_id)
    WHERE NOT resolved;

-- What a run reads for its period: payments by their debit time, refunds by theirs.
CREATE INDEX payments_confirmed ON payments (confirmed_at) WHERE confirmed_at IS NOT NULL;
CREATE INDEX refunds_created ON refunds (created_at);
