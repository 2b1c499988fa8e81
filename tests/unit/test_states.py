"""The status moves the database allows (sql/functions/states.sql) are the statuses
declared in mpp_server/domain/outcomes.py, and Python moves no status itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mpp_server.domain.outcomes import MACHINES
from mpp_server.migrate import SQL_DIR

_MOVE = re.compile(r"\('(\w+)',\s*'(\w*)',\s*'(\w+)'\)")
_PACKAGE = Path(__file__).resolve().parents[2] / "mpp_server"


def _moves() -> set[tuple[str, str, str]]:
    text = (SQL_DIR / "functions" / "states.sql").read_text()
    body = text[text.index("FUNCTION status_moves()"):text.index("$$;")]
    return {(m.group(1), m.group(2), m.group(3)) for m in _MOVE.finditer(body)}


def test_the_moves_name_exactly_the_declared_machines() -> None:
    assert {machine for machine, _, _ in _moves()} == set(MACHINES)


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_each_machine_moves_between_its_declared_statuses(machine: str) -> None:
    enum, _ = MACHINES[machine]
    moves = {(frm, to) for m, frm, to in _moves() if m == machine}
    named = {frm for frm, _ in moves if frm} | {to for _, to in moves}
    declared = {status.value for status in enum}
    assert named - declared == set(), f"states.sql names statuses {enum.__name__} lacks"
    assert declared - named == set(), f"{enum.__name__} declares statuses no move reaches"
    assert any(frm == "" for frm, _ in moves), f"no status a new {machine} starts in"


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_each_machine_has_its_trigger(machine: str) -> None:
    _, table = MACHINES[machine]
    text = (SQL_DIR / "functions" / "states.sql").read_text()
    assert re.search(rf"UPDATE OF status ON {table}\s+FOR EACH ROW EXECUTE FUNCTION "
                     rf"status_move_check\('{machine}'\)", text), f"no guard on {table}"


def test_no_python_writes_a_status() -> None:
    """Every status change goes through sql/functions (the server's own code)."""
    writes = re.compile(r"UPDATE\s+\w+\s+SET\s+(?:[^;\"']*,\s*)?status\s*=", re.I)
    inserts = re.compile(r"INSERT\s+INTO\s+(payments|refunds|topups|topup_refunds|"
                         r"webhook_deliveries|disputes)\b", re.I)
    found = [f"{path.relative_to(_PACKAGE)}" for path in _PACKAGE.rglob("*.py")
             if "devtools" not in path.parts
             and (writes.search(path.read_text()) or inserts.search(path.read_text()))]
    assert found == []


def test_the_parser_sees_a_move() -> None:
    assert _MOVE.findall("('payment', '', 'SCANNED'),\n ('x', 'A', 'B')") == [
        ("payment", "", "SCANNED"), ("x", "A", "B")]
