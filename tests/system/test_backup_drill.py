"""`make backup-drill` (issue 26): a point-in-time restore with pgBackRest finds exactly
the payments made before the target time, with the books balanced, and all of them when
restored to the latest WAL; a mismatch is a non-zero exit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mpp_server.devtools.backup_drill import Found, verdict

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("pgbackrest") is None,
                    reason="pgbackrest is not installed (apt-get install pgbackrest; "
                           ".ci/run installs it)")
def test_backup_drill_restores_exactly_the_payments_before_the_target() -> None:
    folder = Path(tempfile.mkdtemp(prefix="mpp-drill-"))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mpp_server", "backup-drill", "--payments", "12",
             "--after", "5", "--dir", str(folder / "drill")],
            cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"tool": "pgbackrest", "restored_to": result["restored_to"],
                      "payments_before_target": 12, "payments_after_target": 5,
                      "found": 12, "invariants": True, "found_at_latest": 17}


def test_the_drill_fails_on_any_mismatch() -> None:
    ids = ["p1", "p2"]
    assert verdict(ids, Found({"p1", "p2"}, all_completed=True, invariants=True))
    assert not verdict(ids, Found({"p1", "p2", "p3"}, all_completed=True, invariants=True))
    assert not verdict(ids, Found({"p1"}, all_completed=True, invariants=True))
    assert not verdict(ids, Found({"p1", "p9"}, all_completed=True, invariants=True))
    assert not verdict(ids, Found({"p1", "p2"}, all_completed=False, invariants=True))
    assert not verdict(ids, Found({"p1", "p2"}, all_completed=True, invariants=False))
