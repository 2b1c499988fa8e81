-- Issue 15: the customer's identification level, and what the e-money limits per level
-- need (docs/design.md, "Identification, limits and the statement").

-- NONE for every account until the bank's core sets it (PUT .../identification). The
-- level is read under the account's row lock by every debit and credit it limits.
ALTER TABLE accounts
    ADD COLUMN identification_level text NOT NULL DEFAULT 'NONE'
        CHECK (identification_level IN ('NONE', 'SIMPLIFIED', 'FULL')),
    ADD COLUMN identification_changed_at timestamptz;

-- Which limit of which level a payment DECLINED with decline_code LIMIT_EXCEEDED would
-- have broken, so that a repeated confirm names it again.
ALTER TABLE payments
    ADD COLUMN exceeded_limit text CHECK (exceeded_limit IN ('payment', 'daily', 'monthly')),
    ADD COLUMN exceeded_level text CHECK (exceeded_level IN ('NONE', 'SIMPLIFIED', 'FULL')),
    ADD CHECK ((exceeded_limit IS NULL) = (exceeded_level IS NULL));

-- payment_debit sums a customer's debited payments of the current Kazakhstan month by
-- their debit time (confirmed_at).
CREATE INDEX payments_customer_confirmed ON payments (customer_id, confirmed_at)
    WHERE confirmed_at IS NOT NULL;
