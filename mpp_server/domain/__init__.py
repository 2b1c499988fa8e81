"""The money: ledger, payment state machine, refunds, events, notify outbox, outcomes.

Never imports the HTTP layer, the dev tools or the back office."""
