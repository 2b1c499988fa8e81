"""Issue 24: the console's parts that need no database: the journal's canonical form
(frozen: journals already written must keep verifying), how values are shown, where a
sign-in may send the browser."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from mpp_server.audit import GENESIS, Entry
from mpp_server.console.formatting import age, signed_tenge, subject_view, tenge, web_link
from mpp_server.console.operators import Role
from mpp_server.console.web import local_path

ENTRY = Entry(1, datetime(2026, 12, 6, 12, 0, 0, 123456, tzinfo=UTC), "ops", 7, "console",
              "sign_in", "operator:ops",
              {"source_ip": "10.0.0.1", "method": "password", "note": "Ünï ✓"})


def test_the_canonical_form_and_the_hash_are_frozen() -> None:
    canonical = ('{"action":"sign_in","actor":"ops","at_us":1796558400123456,'
                 '"details":{"method":"password","note":"Ünï ✓","source_ip":"10.0.0.1"},'
                 '"id":1,"operator_id":7,"subject":"operator:ops","via":"console"}')
    assert ENTRY.canonical() == canonical.encode()
    expected = hashlib.sha256(GENESIS.encode() + b"\n" + canonical.encode()).hexdigest()
    assert ENTRY.chained_hash(GENESIS) == expected
    assert expected == "e9b847e4aba688a1b901b4d5c6a48245a28b3fafdf3869f91b1bc76ec87dcc59"


@pytest.mark.parametrize("change", [
    {"actor": "ops2"}, {"operator_id": None}, {"via": "cli"}, {"action": "sign_out"},
    {"subject": "operator:x"}, {"details": {"method": "password"}},
    {"at": datetime(2026, 12, 6, 12, 0, 0, 123457, tzinfo=UTC)}, {"id": 2}])
def test_any_change_of_a_row_changes_its_hash(change: dict[str, object]) -> None:
    changed = Entry(**{**ENTRY.__dict__, **change})
    assert changed.chained_hash(GENESIS) != ENTRY.chained_hash(GENESIS)
    assert ENTRY.chained_hash("1" * 64) != ENTRY.chained_hash(GENESIS)


def test_money_is_shown_in_tenge_with_thousands_grouped() -> None:
    assert tenge(150_000) == "1\u2009500.00"
    assert tenge(-5) == "-0.05"
    assert tenge(None) == "—"
    assert signed_tenge(10_000) == "+100.00" and signed_tenge(-10_000) == "-100.00"


def test_ages_and_subjects() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert age(now - timedelta(seconds=90), now) == "1 min ago"
    assert age(now + timedelta(hours=3), now) == "in 3 h"
    assert subject_view("customer:900912345678") == ("customer 9009********",
                                                     "/customers/900912345678")
    assert subject_view("discrepancy:12") == ("discrepancy 12", "")
    assert web_link("javascript:alert(1)") == "" and web_link("https://k.kz/r") == "https://k.kz/r"


@pytest.mark.parametrize("target, goes", [
    ("/payments/1?x=2", "/payments/1?x=2"), (None, "/"), ("", "/"),
    ("//evil.example", "/"), ("/\\evil.example", "/"), ("https://evil.example", "/"),
    ("/ok\r\nSet-Cookie: x", "/")])
def test_after_sign_in_only_a_path_of_ours(target: str | None, goes: str) -> None:
    assert local_path(target) == goes


def test_roles_are_ordered() -> None:
    assert Role.ADMIN.may(Role.OPERATOR) and Role.OPERATOR.may(Role.VIEWER)
    assert not Role.VIEWER.may(Role.OPERATOR) and not Role.OPERATOR.may(Role.ADMIN)
