"""The Kaspi Pay simulator: Kaspi's MPP endpoints plus a control API (docs/simulator.md)."""

from __future__ import annotations

from mpp_server.devtools.simulator.app import create_app
from mpp_server.devtools.simulator.settings import SimulatorSettings

__all__ = ["SimulatorSettings", "create_app"]
