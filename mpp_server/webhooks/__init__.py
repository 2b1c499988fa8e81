"""Webhooks to the wallet backend (docs/notices.md): every event of the feed POSTed to
WEBHOOK_URL, signed the Standard Webhooks way, at least once.

- signing.py: the signature and headers (the reference verifier, the `standardwebhooks`
  package, checks them in the tests);
- sender.py: the outbox's sender (claim with a lease, call, record; backoff, giving up,
  the metrics);
- store.py: what operators do with a delivery (replay, list);
- cli.py: `python -m mpp_server webhooks ...`.
The outbox rows are staged by a trigger on events (sql/functions/webhooks.sql).
"""
