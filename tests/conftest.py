"""Shared fixtures: real scenarios built once per test session from the bundled samples, and a real MQTT broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_mqtt import Broker

from dwars.config import Installation, load_config
from dwars.data.io import sample_path
from dwars.data.scenario import Scenario, build_scenario

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def home_inst() -> Installation:
    return load_config(ROOT / "examples" / "home.toml")


def _scenario(inst: Installation, start: str, end: str, minutes: int) -> Scenario:
    return build_scenario(inst, [sample_path("prices_2024.json.gz")], start, end, minutes,
                          weather=sample_path("knmi_debilt_260_2024_T_Q.csv.gz"), model_pv=True)


@pytest.fixture(scope="session")
def make_scenario():
    """``make_scenario(inst, start, end, minutes)``: a real 2024 scenario (bundled prices and De Bilt weather)."""
    return _scenario


@pytest.fixture(scope="session")
def week_60(home_inst: Installation) -> Scenario:
    """A real week of 2024 around the spring DST change, hourly, PV modelled for examples/home.toml."""
    return _scenario(home_inst, "2024-03-27", "2024-04-03", 60)


@pytest.fixture(scope="session")
def week_15(home_inst: Installation) -> Scenario:
    """The same week at 15 minutes."""
    return _scenario(home_inst, "2024-03-27", "2024-04-03", 15)


@pytest.fixture(scope="session")
def june_15(home_inst: Installation) -> Scenario:
    """Four sunny days in June 2024 at 15 minutes (negative prices at midday)."""
    return _scenario(home_inst, "2024-06-08", "2024-06-12", 15)


@pytest.fixture(scope="session")
def december_60(home_inst: Installation) -> Scenario:
    """A dark, expensive week of December 2024, hourly (price peaks above 0.8 EUR/kWh)."""
    return _scenario(home_inst, "2024-12-09", "2024-12-16", 60)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real mosquitto on a free port of 127.0.0.1, stopped after the test."""
    b = Broker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()
