"""End to end: the control loop drives the simulated inverter over real Modbus TCP for a simulated day."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dwars.config import Installation
from dwars.data.scenario import Scenario
from dwars.env.modes import Decision
from dwars.policy.base import Home
from dwars.policy.decision_log import DecisionLog, read_records
from dwars.policy.registry import make_controller
from dwars.policy.shield import Shield
from dwars.runtime.clock import Tick
from dwars.runtime.driver import SunSpecDriver
from dwars.runtime.loop import ControlLoop, InputError, ReplayInputs
from dwars.runtime.sim_inverter import SimulatedInverter


async def day_of_ticks(start: pd.Timestamp, n: int, minutes: int) -> AsyncIterator[Tick]:
    for k in range(n):
        yield Tick(start + pd.Timedelta(minutes=minutes * k))


def test_a_simulated_day_under_the_shipped_policy(tmp_path: Path, week_60: Scenario,
                                                  home_inst: Installation) -> None:
    home = Home.from_installation(home_inst)
    inputs = ReplayInputs(week_60, home)
    pv, load = inputs.pv_kw, inputs.load_kw
    prices = inputs.forecaster.import_price, inputs.forecaster.export_price
    first = int(np.flatnonzero(week_60.index == pd.Timestamp("2024-03-28", tz="Europe/Amsterdam"))[0])
    seen: list[tuple[Decision, Decision]] = []
    energies: list[float] = []
    cost = [0.0]

    async def run() -> int:
        inverter = SimulatedInverter(home.battery, home_inst.battery.initial_energy_kwh)
        port = await inverter.start()
        driver = SunSpecDriver("127.0.0.1", port)
        await driver.connect()
        loop = ControlLoop(home, make_controller("rl", home), driver, inputs, 60, Shield(home),
                           DecisionLog(tmp_path / "decisions.jsonl"))

        def play(start: pd.Timestamp, applied: Decision) -> None:
            i = int(week_60.index.get_loc(start))
            seen.append((applied, inverter.commanded()))
            r = inverter.advance(60, pv[i], load[i], prices[0][i], prices[1][i])
            cost[0] += float(r.energy_cost_eur)
            energies.append(inverter.energy_kwh)

        try:
            return await loop.run(day_of_ticks(week_60.index[first], 24, 60), play)
        finally:
            loop.decision_log.close()
            driver.close()
            await inverter.stop()

    assert asyncio.run(run()) == 24
    records = read_records(tmp_path / "decisions.jsonl")
    assert len(records) == 24  # one record per interval
    for applied, commanded in seen:  # the inverter carries out what the loop applied
        assert commanded.mode == applied.mode
        assert commanded.power_kw == pytest.approx(applied.power_kw, abs=0.01)
    assert len({applied.mode for applied, _ in seen}) >= 2  # a real day, not one mode throughout
    assert [r["applied"]["mode"] for r in records] == [applied.mode.name.lower() for applied, _ in seen]
    assert all(r["reason"] for r in records)  # every decision explains itself
    assert min(energies) >= home.battery.reserve_kwh - 1e-6  # the reserve held
    assert np.isfinite(cost[0])


def test_inputs_outside_the_scenario_are_a_clear_error(week_60: Scenario, home_inst: Installation) -> None:
    inputs = ReplayInputs(week_60, Home.from_installation(home_inst))
    with pytest.raises(InputError, match="no prices or forecasts for 2025-01-01T00:00:00\\+00:00"):
        inputs.at(pd.Timestamp("2025-01-01", tz="UTC"))


def test_a_dead_inverter_link_mid_day_is_logged_and_survived(tmp_path: Path, week_60: Scenario,
                                                            home_inst: Installation,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    home = Home.from_installation(home_inst)
    inputs = ReplayInputs(week_60, home)

    async def run() -> tuple[int, int]:
        inverter = SimulatedInverter(home.battery, 6.0)
        port = await inverter.start()
        driver = SunSpecDriver("127.0.0.1", port, timeout_s=0.3, retries=1)
        await driver.connect()
        loop = ControlLoop(home, make_controller("rule", home), driver, inputs, 60, Shield(home),
                           DecisionLog(tmp_path / "decisions.jsonl"))

        async def play(start: pd.Timestamp, applied: Decision) -> None:
            if start == week_60.index[2]:
                await inverter.stop()  # the link dies after the third decision

        try:
            n = await loop.run(day_of_ticks(week_60.index[0], 6, 60), play)
        finally:
            loop.decision_log.close()
            driver.close()
        return n, loop.failures

    n, failures = asyncio.run(run())
    assert n == 6 and failures == 3  # every interval was attempted; the last three had no inverter
    assert len(read_records(tmp_path / "decisions.jsonl")) == 3  # the decisions taken are all in the log
    assert "no decision for" in caplog.text and "127.0.0.1" in caplog.text


def test_a_restart_mid_day_continues_the_same_log(tmp_path: Path, week_60: Scenario,
                                                  home_inst: Installation) -> None:
    """dwars stops after three intervals and starts again (new loop, new connection, same inverter and log)."""
    home = Home.from_installation(home_inst)
    inputs = ReplayInputs(week_60, home)
    path = tmp_path / "decisions.jsonl"

    async def run() -> float:
        inverter = SimulatedInverter(home.battery, 6.0)
        port = await inverter.start()

        async def session(first: int) -> None:
            driver = SunSpecDriver("127.0.0.1", port)
            await driver.connect()
            with DecisionLog(path) as decision_log:
                loop = ControlLoop(home, make_controller("rule", home), driver, inputs, 60, Shield(home),
                                   decision_log)

                def play(start: pd.Timestamp, applied: Decision) -> None:
                    i = int(week_60.index.get_loc(start))
                    inverter.advance(60, inputs.pv_kw[i], inputs.load_kw[i])

                await loop.run(day_of_ticks(week_60.index[first], 3, 60), play)
            driver.close()

        try:
            await session(0)
            with path.open("ab") as f:  # killed mid-write: half a record at the end of the file
                f.write(b'{"time": "2024-03-27T02:00')
            await session(3)
        finally:
            await inverter.stop()
        return inverter.energy_kwh

    assert asyncio.run(run()) >= home.battery.reserve_kwh
    records = read_records(path)
    assert len(records) == 6  # nothing lost, the torn line repaired, no duplicate
    times = [pd.Timestamp(r["time"]) for r in records]
    assert times == sorted(times) and len(set(times)) == 6
