-- Reconciliation that never says "matched" when Kaspi's money and ours disagree (issue 18):
-- the new kinds of discrepancy, what each carries for the operator (sheet, customer, the
-- registry's time and ours), who acknowledged it, and which run matched which operation.
-- docs/reconciliation.md states the rules.

ALTER TABLE reconciliation_discrepancies
    DROP CONSTRAINT reconciliation_discrepancies_kind_check;
ALTER TABLE reconciliation_discrepancies
    ADD CONSTRAINT reconciliation_discrepancies_kind_check CHECK (kind IN (
        'not_in_our_books', 'not_in_registry', 'amount_mismatch', 'type_mismatch',
        'customer_mismatch', 'reference_mismatch', 'status_mismatch', 'pending_completed',
        'registry_confirms_declined_payment', 'registry_confirms_cancelled_payment',
        'time_mismatch', 'matched_by_another_registry', 'fee_mismatch',
        'settlement_mismatch'));

ALTER TABLE reconciliation_discrepancies
    -- The registry's sheet (a large month spans sheets); row_number is within it.
    ADD COLUMN sheet text,
    -- The customer of the row (or of our operation when only our books have it).
    ADD COLUMN customer_id text,
    -- The row's date and time (UTC+5 in the file) and our completion time (the debit of a
    -- payment, the SUCCESS answer of a refund).
    ADD COLUMN registry_at timestamptz,
    ADD COLUMN our_at timestamptz,
    -- Who acknowledged it (`reconcile ack`); NULL when a later run resolved it. The reason
    -- is in `resolution`. Nothing is ever deleted.
    ADD COLUMN resolved_by text CHECK (resolved_by IS NULL OR resolved);

-- One registry of each kind settles an operation once: a payment matched by the daily
-- registry of the 29th must not be matched by the 30th's too (nor by two months' files).
-- A corrected file for the same period takes the match over (run_id moves to it).
CREATE TABLE reconciliation_matches (
    kind          text NOT NULL CHECK (kind IN ('daily', 'monthly')),
    op_type       text NOT NULL CHECK (op_type IN ('payment', 'refund')),
    kaspi_id      text NOT NULL,
    period_start  date NOT NULL,
    run_id        bigint NOT NULL REFERENCES reconciliation_runs (id),
    PRIMARY KEY (kind, op_type, kaspi_id)
);
-- A run looks its rows up by Kaspi id (of either type).
CREATE INDEX reconciliation_matches_kaspi_id ON reconciliation_matches (kaspi_id);
