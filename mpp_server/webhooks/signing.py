"""Standard Webhooks signatures (standardwebhooks.com, "Signature scheme"): HMAC-SHA256,
keyed with WEBHOOK_SECRET's decoded bytes, over `{webhook-id}.{webhook-timestamp}.{body}`,
sent as `v1,` + base64. The receiver checks it with any Standard Webhooks verifier; the
tests check it with the reference one (the `standardwebhooks` package)."""

from __future__ import annotations

import base64
import hashlib
import hmac

USER_AGENT = "mpp-server-webhooks"


def signature(key: bytes, webhook_id: str, timestamp_s: int, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp_s}.".encode() + body
    mac = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def headers(key: bytes, webhook_id: str, timestamp_s: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt: the id is the same on every retry, the timestamp is
    the attempt's (receivers refuse an old one: it guards against replays)."""
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp_s),
            "webhook-signature": signature(key, webhook_id, timestamp_s, body),
            "Content-Type": "application/json", "User-Agent": USER_AGENT}
