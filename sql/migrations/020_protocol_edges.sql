-- Issue 27, Kaspi's protocol at its edges (docs/design.md, "Kaspi's defective answers"):
-- a checkout Kaspi refused finally (regulation §4.2: PROCESS_FAIL, EXPIRED_CODE) is
-- recorded on the payment, FAILED (a new status) or EXPIRED, with Kaspi's code and
-- message, so a repeated checkout answers the same without asking Kaspi again.

ALTER TABLE payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check
    CHECK (status IN ('SCANNED', 'CHECKED_OUT', 'PENDING', 'COMPLETED', 'DECLINED',
                      'CANCELLED', 'EXPIRED', 'FAILED'));

ALTER TABLE payments
    ADD COLUMN checkout_result_code text CHECK (length(checkout_result_code) <= 64),
    ADD COLUMN checkout_result_message text CHECK (length(checkout_result_message) <= 256),
    ADD CONSTRAINT payments_checkout_refusal
        CHECK (checkout_result_code IS NULL OR status IN ('FAILED', 'EXPIRED'));
