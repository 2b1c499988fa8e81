-- Kaspi's answer to a payment's notifyPayment (PENDING to COMPLETED or DECLINED) updates
-- the row in place of its heap page, without a new entry in any of its indexes (a HOT
-- update), and the confirm's update writes one index fewer (issue 28). PostgreSQL can
-- update in place only when no index names a column the update changes, predicates
-- included; two indexes named `status` in their predicate, so every status move wrote
-- an entry in each of the table's indexes again.
--
-- - What is still open to a confirm, for the expiry sweep (payments_expire_stale): the
--   column open_until, canConfirmUntil while the payment is SCANNED or CHECKED_OUT and
--   NULL from the step that closes it (sql/functions/payments.sql), indexed where set.
-- - What is PENDING: the notify outbox's rows (a PENDING payment always has one, staged
--   with its debit and removed with Kaspi's answer), joined to the payment by its key;
--   the `PENDING` index goes.
-- - payments_customer_confirmed served the limit check's sum of the month, which the
--   running totals (021) replaced; the recount (payments_counted) reads the customer's
--   payments through payments_customer.
-- - fillfactor 90: room on each new page for the answer's row version.
--
-- The new index is built by one read of the table under a SHARE lock (writes wait);
-- docs/operations.md gives the time it takes.

ALTER TABLE payments ADD COLUMN open_until timestamptz;
UPDATE payments SET open_until = can_confirm_until
 WHERE status IN ('SCANNED', 'CHECKED_OUT') AND can_confirm_until IS NOT NULL;
DROP INDEX payments_open_deadline;
CREATE INDEX payments_open_deadline ON payments (open_until) WHERE open_until IS NOT NULL;
DROP INDEX payments_pending;
DROP INDEX payments_customer_confirmed;
ALTER TABLE payments SET (fillfactor = 90);
