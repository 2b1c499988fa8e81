"""Every outcome a money step in SQL can return is declared once, in
mpp_server/domain/outcomes.py, and every declared outcome is returned by its function."""

from __future__ import annotations

import re
from enum import StrEnum

import pytest

from mpp_server.domain.outcomes import (
    DEBIT_NOTICES,
    DEBIT_NOTICES_ARG,
    RETURNED_BY,
    ConfirmOutcome,
    RefundOutcome,
)
from mpp_server.migrate import SQL_DIR

_LITERAL = re.compile(r"'([A-Z][A-Z_]*)'")
# Where a function's outcome is set or returned: `outcome := ...;`, `v_outcome := ...;`,
# `RETURN ...;`; and where it is compared: `outcome IN (...)`, `outcome = '...'`,
# `CASE outcome WHEN ... END`.
_SET = re.compile(r"\b(?:v_)?outcome\s*:=\s*([^;]*);|\bRETURN\s+([^;]*);", re.I)
_COMPARED = re.compile(r"\b(?:v_)?outcome\s+IN\s*\(([^)]*)\)|\b(?:v_)?outcome\s*=\s*('[^']*')"
                       r"|\bCASE\s+(?:v_)?outcome\b(.*?)\bEND\b", re.I | re.S)


def _function_bodies() -> dict[str, str]:
    bodies = {}
    for path in (SQL_DIR / "functions").glob("*.sql"):
        text = path.read_text()
        for match in re.finditer(r"CREATE OR REPLACE FUNCTION (\w+)\((.*?)\n\$\$;", text, re.S):
            bodies[match.group(1)] = match.group(2)
    return bodies


def _literals(body: str, pattern: re.Pattern[str]) -> set[str]:
    found: set[str] = set()
    for match in pattern.finditer(body):
        for group in match.groups():
            if group:
                found |= set(_LITERAL.findall(group))
    return found


@pytest.mark.parametrize("enum", list(RETURNED_BY), ids=lambda e: e.__name__)
def test_sql_returns_exactly_the_declared_outcomes(enum: type[StrEnum]) -> None:
    bodies = _function_bodies()
    returned: set[str] = set()
    compared: set[str] = set()
    for name in RETURNED_BY[enum]:
        assert name in bodies, f"{name} is not defined in sql/functions"
        returned |= _literals(bodies[name], _SET)
        compared |= _literals(bodies[name], _COMPARED)
    declared = {member.value for member in enum}
    assert returned - declared == set(), f"returned by SQL, not declared in {enum.__name__}"
    assert declared - returned == set(), f"declared in {enum.__name__}, never returned"
    assert compared <= declared, f"compared in SQL, not declared: {compared - declared}"


def test_every_function_that_sets_an_outcome_is_declared() -> None:
    setters = {name for name, body in _function_bodies().items()
               if re.search(r"\b(?:v_)?outcome\s*:=\s*'", body)}
    assert setters <= {name for names in RETURNED_BY.values() for name in names}


def test_the_outcome_test_sees_an_undeclared_value() -> None:
    """The parser the tests above rely on finds a literal in each form it reads."""
    body = ("IF x THEN outcome := 'NEW_ONE'; END IF; RETURN 'OTHER';"
            " UPDATE t SET s = CASE outcome WHEN 'THIRD' THEN 1 END;")
    assert _literals(body, _SET) == {"NEW_ONE", "OTHER"}
    assert _literals(body, _COMPARED) == {"THIRD"}


def test_each_staging_debit_outcome_names_what_it_stages() -> None:
    # A refusal or an expiry stages nothing.
    assert ConfirmOutcome.EXPIRED not in DEBIT_NOTICES
    assert ConfirmOutcome.DECIDED not in DEBIT_NOTICES
    assert {o.staged for o in DEBIT_NOTICES} == set(DEBIT_NOTICES.values())
    assert DEBIT_NOTICES_ARG["INSUFFICIENT_FUNDS"] == ["PROCESS_FAIL", "insufficient funds"]
    assert DEBIT_NOTICES_ARG["LIMIT_EXCEEDED"] == ["PROCESS_FAIL", "limit exceeded"]
    assert {o for o in RefundOutcome if o.credited} == {RefundOutcome.CREDITED,
                                                         RefundOutcome.CREDITED_PENDING}
