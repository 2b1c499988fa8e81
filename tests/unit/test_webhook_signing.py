"""Webhook signatures are Standard Webhooks' (checked against the reference package,
`standardwebhooks`, not our own code), WEBHOOK_SECRET and WEBHOOK_URL are refused at start
when malformed, and the retries follow the contract (the first within 5 s, doubling to
the cap)."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from datetime import UTC, datetime

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from mpp_server.config import Settings, describe_settings_error, parse_webhook_secret
from mpp_server.services import webhook_policy
from mpp_server.webhooks.signing import headers, signature

KEY = secrets.token_bytes(32)
SECRET = "whsec_" + base64.b64encode(KEY).decode()


@given(webhook_id=st.text(alphabet="0123456789", min_size=1, max_size=18),
       timestamp_s=st.integers(min_value=0, max_value=4_102_444_800), body=st.binary(max_size=512))
def test_our_signature_is_the_reference_one(webhook_id: str, timestamp_s: int,
                                           body: bytes) -> None:
    reference = Webhook(SECRET).sign(webhook_id, datetime.fromtimestamp(timestamp_s, UTC),
                                     body)
    assert signature(KEY, webhook_id, timestamp_s, body) == reference


def test_the_reference_verifier_accepts_our_headers_and_refuses_a_changed_body() -> None:
    body = b'{"type":"payment.completed","timestamp":"2025-01-01T10:00:00+05:00","data":{}}'
    sent = headers(KEY, "17", int(datetime.now(UTC).timestamp()), body)
    assert Webhook(SECRET).verify(body, sent)["type"] == "payment.completed"
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b"completed", b"declined"), sent)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()).verify(
            body, sent)


def test_a_secret_without_padding_is_the_same_key() -> None:
    unpadded = "whsec_" + base64.b64encode(KEY[:25]).decode().rstrip("=")
    assert parse_webhook_secret(unpadded) == KEY[:25]


@pytest.mark.parametrize(("env", "said"), [
    ({"webhook_url": "https://wallet.example/hooks"}, "WEBHOOK_SECRET must be set"),
    ({"webhook_url": "wallet.example/hooks", "webhook_secret": SECRET},
     "WEBHOOK_URL must be an http:// or https:// URL"),
    ({"webhook_secret": base64.b64encode(KEY).decode()}, "must start with 'whsec_'"),
    ({"webhook_secret": "whsec_not base64!"}, "is not base64"),
    ({"webhook_secret": "whsec_" + base64.b64encode(KEY[:16]).decode()},
     "at least 24 bytes (it holds 16)"),
    ({"webhook_backoff_initial_ms": "6000"}, "less than or equal to 5000"),
])
def test_a_malformed_webhook_setting_is_refused_naming_it(env: dict[str, str],
                                                          said: str) -> None:
    with pytest.raises(pydantic.ValidationError) as refused:
        Settings(**env)  # type: ignore[arg-type]
    assert said in describe_settings_error(refused.value)


def test_serve_stops_at_start_without_the_secret() -> None:
    env = {**os.environ, "WEBHOOK_URL": "https://wallet.example/hooks",
           "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"}
    env.pop("WEBHOOK_SECRET", None)
    done = subprocess.run([sys.executable, "-m", "mpp_server", "serve"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "WEBHOOK_SECRET must be set" in done.stderr


def test_retries_start_within_5_seconds_and_double_up_to_the_cap() -> None:
    policy = webhook_policy(Settings(webhook_url="https://w.example/h", webhook_secret=SECRET))
    waits = [policy.backoff_s(attempt) for attempt in range(1, 12)]
    assert 0.9 * 2 <= waits[0] <= 2 <= 5  # WEBHOOK_BACKOFF_INITIAL_MS, less the jitter
    for before, after, attempt in zip(waits, waits[1:], range(1, 12), strict=False):
        full = min(600, 2 * 2 ** attempt)
        assert 0.9 * full <= after <= full, (attempt, before, after)
    assert max(waits) <= 600  # WEBHOOK_BACKOFF_MAX_MS
    assert policy.lease_s > policy.timeout_s  # a claim outlasts its call
