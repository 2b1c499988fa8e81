"""What the exchange journal keeps (mpp_server/redact.py), and the retentions it may be
given (issue 26)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mpp_server import redact

CARD = "4111111111111111"  # Luhn-valid: a card number wherever it appears


@pytest.mark.parametrize(("raw", "kept", "gone"), [
    ('{"client_secret": "s3cr3t", "amount": 1500.00}', ['"amount":"1500.00"'], ["s3cr3t"]),
    ('{"data": {"card": {"cardNumber": "' + CARD + '", "cvv": "123", "mask": "411111"}}}',
     ['"mask":"411111"'], [CARD, "123"]),
    ("grant_type=client_credentials&client_id=me&client_secret=s3cr3t",
     ["client_id=me", "client_secret=[REDACTED]"], ["s3cr3t"]),
    ("<TKKPG><Response><PAN>" + CARD + "</PAN><CVV2>321</CVV2><OrderID>77</OrderID>"
     "</Response></TKKPG>", ["<OrderID>77</OrderID>", "<PAN>[REDACTED]</PAN>"], [CARD, "321"]),
    ('{"description": "paid with ' + CARD + '"}', ["411111******1111"], [CARD]),
])
def test_secrets_and_card_data_are_redacted(raw: str, kept: list[str], gone: list[str]
                                            ) -> None:
    text = redact.body(raw)
    assert text is not None
    for piece in kept:
        assert piece in text.replace(" ", "")
    for piece in gone:
        assert piece not in text


@pytest.mark.parametrize("raw", [
    '{"invoiceId": "tu-1", "amount": 1500.00, "status": "CHARGED"}',
    "OrderId=857321001&SessionId=6149C24D",
    "<TKKPG><Response><Status>00</Status></Response></TKKPG>",
    '{"paymentId": "4111111111111112"}',  # not Luhn-valid: an id, not a card
    "OK", "",
])
def test_bodies_without_secrets_are_kept_to_the_byte(raw: str) -> None:
    assert redact.body(raw) == raw


def test_secret_query_parameters_are_redacted_in_the_target() -> None:
    assert redact.url("GET https://x/pay?invoiceId=7&access_token=abc") == (
        "GET https://x/pay?invoiceId=7&access_token=[REDACTED]")
    assert redact.url("GET https://x/pay?invoiceId=7") == "GET https://x/pay?invoiceId=7"


@pytest.mark.parametrize("variable", ["EXCHANGE_RETENTION_DAYS", "EVENTS_RETENTION_DAYS"])
def test_a_retention_below_thirty_days_stops_the_server_at_start(variable: str) -> None:
    env = {**os.environ, variable: "29"}
    done = subprocess.run([sys.executable, "-m", "mpp_server", "serve"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{variable} must be at least 30 days, got 29" in done.stderr
