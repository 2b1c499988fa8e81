"""The dev launcher (mpp_server/devtools/launcher.py) sets every variable by which the
server reaches the simulator: nothing falls back on Settings' defaults, which are
production's."""

from __future__ import annotations

from mpp_server.config import Settings
from mpp_server.devtools.launcher import (
    CALLER_NAME,
    Listeners,
    Tokens,
    server_env,
    settings_kwargs,
    simulator_env,
    simulator_process_env,
)
from mpp_server.devtools.simulator.settings import SimulatorSettings

# Settings that say how to reach Kaspi or a card acquirer, or prove who we are to them;
# the page lifetimes are ours to choose, not the counterpart's.
COUNTERPART_PREFIXES = ("kaspi_base_url", "kaspi_caller_name", "halyk_epay_", "kapital_",
                        "kaspi_ecom_")


def test_every_setting_that_reaches_kaspi_or_an_acquirer_is_set_by_simulator_env() -> None:
    reaching = {name.upper() for name in Settings.model_fields
                if name.startswith(COUNTERPART_PREFIXES) and not name.endswith("_session_s")}
    env = simulator_env("http://127.0.0.1:9")
    assert reaching and reaching <= env.keys()
    assert all(value.startswith("http://127.0.0.1:9") for name, value in env.items()
               if name.endswith("_URL"))


def test_the_simulator_accepts_the_caller_name_the_server_is_given() -> None:
    sim = SimulatorSettings.model_validate(settings_kwargs(simulator_process_env(
        "127.0.0.1:9", "http://127.0.0.1:8/refund")))
    server = server_env("postgresql://mpp@127.0.0.1:7/mpp", "http://127.0.0.1:9",
                        Listeners.free(), Tokens.new("t"))
    assert server["KASPI_CALLER_NAME"] == CALLER_NAME
    assert sim.caller_names == {CALLER_NAME}
