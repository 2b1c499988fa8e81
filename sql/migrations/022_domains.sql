-- The single-column rules of the tables every payment and refund writes, as domains
-- (issue 28). The same rules as before, checked on the same writes; what changes is their
-- cost. PostgreSQL parses every CHECK constraint of a table from its stored text on
-- each INSERT or UPDATE statement (ExecRelCheck: stringToNode, then the expression
-- planned), every constraint of the table, whichever columns the statement writes: 12 KB of
-- node text for `payments` alone, three times a payment, about 14 % of PostgreSQL's CPU
-- per payment in the benchmark (docs/performance.md, "Constraints as domains"). A
-- domain's constraint is parsed once per connection (the type cache) and checked only
-- where a value of the column is written. The rules that span two columns (a customer's
-- balance never negative, refunds within the payment, ...) stay table CHECKs.
--
-- Without a table rewrite and without a long lock on a large table: each column first
-- becomes a domain with no constraint (binary-compatible, no rewrite, its indexes kept),
-- then the domain gets its constraint NOT VALID (enforced on every value written from
-- now on; the rows already stored are not read again, as each satisfied the table CHECK
-- this migration drops in the same transaction), then the table CHECK goes.

-- The status-move guards (sql/functions/states.sql) name their status column (UPDATE OF
-- status), and PostgreSQL does not change the type of a column a trigger names: they
-- are dropped here and created again by states.sql, which `migrate` applies after the
-- migrations in the same transaction, so no write ever sees the table unguarded.
DROP TRIGGER IF EXISTS payments_status_move ON payments;
DROP TRIGGER IF EXISTS refunds_status_move ON refunds;
DROP TRIGGER IF EXISTS webhook_deliveries_status_move ON webhook_deliveries;

CREATE DOMAIN ident64 AS text;                 -- Kaspi's and our keys: 1 to 64 characters
CREATE DOMAIN customer_ref AS text;            -- the wallet's customer id: 1 to 12
CREATE DOMAIN payment_status AS text;
CREATE DOMAIN refund_status AS text;
CREATE DOMAIN webhook_status AS text;
CREATE DOMAIN qr_code_type AS text;
CREATE DOMAIN locale_code AS text;
CREATE DOMAIN identification_level AS text;
CREATE DOMAIN limit_window AS text;
CREATE DOMAIN account_kind AS text;
CREATE DOMAIN transfer_kind AS text;
CREATE DOMAIN result_code AS text;             -- a counterpart's code, at most 64
CREATE DOMAIN result_message AS text;          -- a counterpart's message, at most 256
CREATE DOMAIN delivery_result AS text;         -- a webhook attempt's outcome, at most 300
CREATE DOMAIN tiyn_positive AS bigint;
CREATE DOMAIN tiyn_nonnegative AS bigint;
CREATE DOMAIN tiyn_nonzero AS bigint;
CREATE DOMAIN count_nonnegative AS int;

ALTER TABLE payments
    ALTER COLUMN payment_id TYPE ident64,
    ALTER COLUMN customer_id TYPE customer_ref,
    ALTER COLUMN qr_code_type TYPE qr_code_type,
    ALTER COLUMN status TYPE payment_status,
    ALTER COLUMN amount_tiyn TYPE tiyn_positive,
    ALTER COLUMN refunded_tiyn TYPE tiyn_nonnegative,
    ALTER COLUMN locale TYPE locale_code,
    ALTER COLUMN exceeded_level TYPE identification_level,
    ALTER COLUMN exceeded_limit TYPE limit_window,
    ALTER COLUMN checkout_result_code TYPE result_code,
    ALTER COLUMN checkout_result_message TYPE result_message;
ALTER TABLE refunds
    ALTER COLUMN refund_id TYPE ident64,
    ALTER COLUMN payment_id TYPE ident64,
    ALTER COLUMN status TYPE refund_status,
    ALTER COLUMN amount_tiyn TYPE tiyn_nonnegative;
ALTER TABLE accounts
    ALTER COLUMN customer_id TYPE customer_ref,
    ALTER COLUMN kind TYPE account_kind,
    ALTER COLUMN identification_level TYPE identification_level,
    ALTER COLUMN paid_day_tiyn TYPE tiyn_nonnegative,
    ALTER COLUMN paid_month_tiyn TYPE tiyn_nonnegative;
ALTER TABLE transfers
    ALTER COLUMN reference TYPE ident64,
    ALTER COLUMN kind TYPE transfer_kind,
    ALTER COLUMN amount_tiyn TYPE tiyn_positive;
ALTER TABLE entries
    ALTER COLUMN amount_tiyn TYPE tiyn_nonzero;
ALTER TABLE webhook_deliveries
    ALTER COLUMN status TYPE webhook_status,
    ALTER COLUMN attempts TYPE count_nonnegative,
    ALTER COLUMN replays TYPE count_nonnegative,
    ALTER COLUMN last_result TYPE delivery_result;

ALTER DOMAIN ident64 ADD CONSTRAINT ident64_length
    CHECK (length(VALUE) BETWEEN 1 AND 64) NOT VALID;
ALTER DOMAIN customer_ref ADD CONSTRAINT customer_ref_length
    CHECK (length(VALUE) BETWEEN 1 AND 12) NOT VALID;
ALTER DOMAIN payment_status ADD CONSTRAINT payment_status_known
    CHECK (VALUE IN ('SCANNED', 'CHECKED_OUT', 'PENDING', 'COMPLETED', 'DECLINED',
                     'CANCELLED', 'EXPIRED', 'FAILED')) NOT VALID;
ALTER DOMAIN refund_status ADD CONSTRAINT refund_status_known
    CHECK (VALUE IN ('RECEIVED', 'SUCCESS', 'REFUSED')) NOT VALID;
ALTER DOMAIN webhook_status ADD CONSTRAINT webhook_status_known
    CHECK (VALUE IN ('PENDING', 'DELIVERED', 'GIVEN_UP')) NOT VALID;
ALTER DOMAIN qr_code_type ADD CONSTRAINT qr_code_type_known
    CHECK (VALUE IN ('Dynamic', 'Static', 'Custom')) NOT VALID;
ALTER DOMAIN locale_code ADD CONSTRAINT locale_code_known
    CHECK (VALUE IN ('ru-RU', 'kk-KZ')) NOT VALID;
ALTER DOMAIN identification_level ADD CONSTRAINT identification_level_known
    CHECK (VALUE IN ('NONE', 'SIMPLIFIED', 'FULL')) NOT VALID;
ALTER DOMAIN limit_window ADD CONSTRAINT limit_window_known
    CHECK (VALUE IN ('payment', 'daily', 'monthly')) NOT VALID;
ALTER DOMAIN account_kind ADD CONSTRAINT account_kind_known
    CHECK (VALUE IN ('customer', 'settlement', 'funding', 'acquirer_clearing_halyk_epay',
                     'acquirer_clearing_kapital', 'acquirer_clearing_kaspi_ecom')) NOT VALID;
ALTER DOMAIN transfer_kind ADD CONSTRAINT transfer_kind_known
    CHECK (VALUE IN ('deposit', 'payment_debit', 'payment_return', 'refund_credit', 'topup',
                     'topup_refund', 'topup_refund_return')) NOT VALID;
ALTER DOMAIN result_code ADD CONSTRAINT result_code_length
    CHECK (length(VALUE) <= 64) NOT VALID;
ALTER DOMAIN result_message ADD CONSTRAINT result_message_length
    CHECK (length(VALUE) <= 256) NOT VALID;
ALTER DOMAIN delivery_result ADD CONSTRAINT delivery_result_length
    CHECK (length(VALUE) <= 300) NOT VALID;
ALTER DOMAIN tiyn_positive ADD CONSTRAINT tiyn_positive CHECK (VALUE > 0) NOT VALID;
ALTER DOMAIN tiyn_nonnegative ADD CONSTRAINT tiyn_nonnegative CHECK (VALUE >= 0) NOT VALID;
ALTER DOMAIN tiyn_nonzero ADD CONSTRAINT tiyn_nonzero CHECK (VALUE <> 0) NOT VALID;
ALTER DOMAIN count_nonnegative ADD CONSTRAINT count_nonnegative CHECK (VALUE >= 0) NOT VALID;

ALTER TABLE payments
    DROP CONSTRAINT payments_payment_id_check,
    DROP CONSTRAINT payments_customer_id_check,
    DROP CONSTRAINT payments_qr_code_type_check,
    DROP CONSTRAINT payments_status_check,
    DROP CONSTRAINT payments_amount_tiyn_check,
    DROP CONSTRAINT payments_refunded_tiyn_check,
    DROP CONSTRAINT payments_locale_check,
    DROP CONSTRAINT payments_exceeded_level_check,
    DROP CONSTRAINT payments_exceeded_limit_check,
    DROP CONSTRAINT payments_checkout_result_code_check,
    DROP CONSTRAINT payments_checkout_result_message_check;
ALTER TABLE refunds
    DROP CONSTRAINT refunds_refund_id_check,
    DROP CONSTRAINT refunds_payment_id_check,
    DROP CONSTRAINT refunds_status_check,
    DROP CONSTRAINT refunds_amount_tiyn_check;
ALTER TABLE accounts
    DROP CONSTRAINT accounts_customer_id_check,
    DROP CONSTRAINT accounts_kind_check,
    DROP CONSTRAINT accounts_identification_level_check,
    DROP CONSTRAINT accounts_paid_day_tiyn_check,
    DROP CONSTRAINT accounts_paid_month_tiyn_check;
ALTER TABLE transfers
    DROP CONSTRAINT transfers_reference_check,
    DROP CONSTRAINT transfers_kind_check,
    DROP CONSTRAINT transfers_amount_tiyn_check;
ALTER TABLE entries
    DROP CONSTRAINT entries_amount_tiyn_check;
ALTER TABLE webhook_deliveries
    DROP CONSTRAINT webhook_deliveries_status_check,
    DROP CONSTRAINT webhook_deliveries_attempts_check,
    DROP CONSTRAINT webhook_deliveries_replays_check,
    DROP CONSTRAINT webhook_deliveries_last_result_check;
