"""The gateways' own example bodies (mpp_server/devtools/simulator/acquirers/examples.py,
each naming its page) read by our clients as they are: what a documented answer means
to us is decided by this code, not by the simulator that answers with them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from mpp_server import jsonutil
from mpp_server.acquirers import halyk_epay, kapital, kaspi_ecom
from mpp_server.acquirers.base import AcquirerNoAnswer, Verdict
from mpp_server.devtools.simulator.acquirers import examples


def _halyk(body: str, **changes: object) -> dict[str, object]:
    answer = jsonutil.loads(body)
    answer["transaction"].update(changes)
    return dict(answer)


def test_halyk_paid_status_example_is_paid_with_its_refunds() -> None:
    """check-status-payment's example: CHARGE, orgAmount what was charged, amount what is
    left after refunds; numbers read exactly, never as floats."""
    status = halyk_epay.read_status(jsonutil.loads(examples.HALYK_STATUS.body), "000512345")
    assert status.verdict is Verdict.PAID
    assert (status.paid_tiyn, status.refunded_tiyn) == (150050, 30000)
    assert status.paid_currency == "KZT"
    assert status.transaction_id == "5d0c2f4e-9a1b-4c7e-8f3a-2b6d1e0a9c47"


@pytest.mark.parametrize(("name", "verdict"), [
    ("REJECT", Verdict.DECLINED), ("FAILED", Verdict.DECLINED), ("CANCEL", Verdict.DECLINED),
    ("AUTH", Verdict.WAITING), ("NEW", Verdict.WAITING), ("3D", Verdict.WAITING),
    ("REFUND", Verdict.DECLINED)])
def test_halyk_status_names(name: str, verdict: Verdict) -> None:
    body = _halyk(examples.HALYK_STATUS.body, statusName=name)
    assert halyk_epay.read_status(body, "000512345").verdict is verdict


def test_halyk_refunded_transaction_is_never_a_credit() -> None:
    status = halyk_epay.read_status(_halyk(examples.HALYK_STATUS.body, statusName="REFUND"),
                                    "000512345")
    assert status.verdict is Verdict.DECLINED and status.refunded_tiyn == status.paid_tiyn


def test_halyk_not_found_is_not_paid_yet() -> None:
    status = halyk_epay.read_status(jsonutil.loads(examples.HALYK_STATUS_NOT_FOUND.body),
                                    "000512345")
    assert status.verdict is Verdict.WAITING


@pytest.mark.parametrize("code", ["103", "104", "106", "109", "999"])
def test_halyk_terminal_and_system_codes_are_no_verdict(code: str) -> None:
    with pytest.raises(AcquirerNoAnswer):
        halyk_epay.read_status({"resultCode": code, "resultMessage": "x"}, "000512345")


def test_halyk_status_of_another_invoice_is_no_verdict() -> None:
    with pytest.raises(AcquirerNoAnswer):
        halyk_epay.read_status(jsonutil.loads(examples.HALYK_STATUS.body), "000512346")


def test_halyk_postlink_example_is_trusted_only_with_our_secret_hash() -> None:
    secret = "the merchant's secret"
    body = json.loads(examples.HALYK_POSTLINK.body)
    assert halyk_epay.postlink_claim(secret, body) is None  # the example's hash: not ours
    body["secret_hash"] = halyk_epay.secret_hash(secret, body["invoiceId"])
    claim = halyk_epay.postlink_claim(secret, body)
    assert claim is not None and claim.claims_paid and claim.order_id == "000512345"
    failed = halyk_epay.postlink_claim(secret, {**body, "code": "error"})
    assert failed is not None and not failed.claims_paid


def test_kapital_information_example_is_paid_in_its_currency() -> None:
    answer = kapital.parse_xml(examples.KAPITAL_INFORMATION.body)
    assert answer is not None
    status = kapital.read_information(answer, "APPROVED")
    assert status.verdict is Verdict.PAID
    assert (status.paid_tiyn, status.paid_currency, status.refunded_tiyn) == (1000, "AZN", 0)
    reversed_ = kapital.read_information(answer, "REVERSED")
    assert reversed_.verdict is Verdict.DECLINED and reversed_.refunded_tiyn == 1000


def test_kapital_xmlmsg_example_names_the_order_and_claims_nothing_we_trust() -> None:
    claim = kapital.callback_claim(examples.KAPITAL_XMLMSG.body)
    assert claim is not None and claim.order_id == "48151" and claim.claims_paid


def test_kapital_answers_with_a_doctype_are_not_read() -> None:
    evil = ('<?xml version="1.0"?><!DOCTYPE m [<!ENTITY e "x">]>'
            "<Message><OrderID>1</OrderID></Message>")
    assert kapital.parse_xml(evil) is None
    assert kapital.callback_claim(evil) is None


def test_kaspi_status_and_link_examples() -> None:
    status = kaspi_ecom.read_status(jsonutil.loads(examples.KASPI_STATUS.body)["Data"], 70000)
    assert status.verdict is Verdict.PAID
    assert (status.paid_tiyn, status.paid_currency) == (70000, "KZT")
    link = jsonutil.loads(examples.KASPI_LINK.body)["Data"]
    assert kaspi_ecom._when(link["ExpireDate"]) == datetime(2025, 3, 14, 5, 50, 30, 123000,
                                                            tzinfo=UTC)


@pytest.mark.parametrize(("state", "verdict"), [
    ("QrTokenCreated", Verdict.WAITING), ("Wait", Verdict.WAITING),
    ("Error", Verdict.DECLINED), ("Something new", Verdict.WAITING)])
def test_kaspi_status_vocabulary(state: str, verdict: Verdict) -> None:
    assert kaspi_ecom.read_status({"Status": state}, 70000).verdict is verdict


def test_every_example_names_its_page() -> None:
    found = [v for v in vars(examples).values() if isinstance(v, examples.Example)]
    assert len(found) >= 12
    for example in found:
        assert example.source and ("epayment.kz" in example.source or "/" in example.source)
