"""A few-second run of `python -m bench --smoke`: it completes, with limits on, and the
books balance. (Timings belong to `make bench`; nothing here asserts a rate.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_bench_smoke_run_completes_with_invariants(admin_dsn: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--month-history", "30",
                           "--out", str(out)],
                          cwd=ROOT, env={**os.environ, "DATABASE_URL": admin_dsn},
                          capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["invariants"]["ok"] and result["invariants"]["pending_left"] == 0
    assert result["dynamic"]["done"] > 0 and result["static"]["done"] > 0
    assert result["refunds"]["done"] > 0
    assert result["dynamic"]["failed"] == result["static"]["failed"] == 0
    assert result["refunds"]["failed"] == 0
    assert result["db_round_trips_per_payment"] > 0
    # Limits on by default; the customer seeded with a month of payments paid too.
    assert result["settings"]["limits_mci"] not in ("", "{}")
    assert result["month_history"]["payments_this_month"] == 30
    assert result["month_history"]["confirms"] > 0
    webhooks = result["webhooks_light_load"]
    assert webhooks["events"] > 0 and webhooks["delivered"] == webhooks["events"]
    assert "ledger invariants" in proc.stdout
