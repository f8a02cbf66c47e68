"""End to end: the control loop drives the simulated inverter over real Modbus TCP for a simulated day."""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dwars.config import Installation
from dwars.data.io import sample_path
from dwars.data.scenario import Scenario, build_scenario
from dwars.env.modes import Decision
from dwars.policy.base import Home
from dwars.policy.decision_log import DecisionLog, read_records
from dwars.policy.evaluate import evaluate
from dwars.policy.registry import make_controller
from dwars.policy.shield import Shield
from dwars.runtime.clock import Tick
from dwars.runtime.driver import SunSpecDriver
from dwars.runtime.loop import ControlLoop, InputError, ReplayInputs, repair_forecasts
from dwars.runtime.sim_inverter import SimulatedInverter
from dwars.runtime.simulate import simulated_run


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

    async def run() -> tuple[int, int, bool]:
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
        return n, loop.failures, loop.safe_mode

    n, failures, safe_mode = asyncio.run(run())
    assert n == 6 and failures == 3  # every interval was attempted; the last three had no inverter
    records = read_records(tmp_path / "decisions.jsonl")
    assert len(records) == 6  # one record per interval, also for the intervals without a decision
    assert [r["soc_pct"] is None for r in records] == [False] * 3 + [True] * 3
    assert all(r["applied"]["mode"] == "msc" and r["reason"].startswith("no decision: ") for r in records[3:])
    assert "127.0.0.1" in records[-1]["reason"]  # the record says which inverter could not be read
    assert "no decision for" in caplog.text and "127.0.0.1" in caplog.text
    assert safe_mode and "safe mode:" in caplog.text  # three failed intervals in a row: safe mode, said so


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


class GappyInputs:
    """Replayed inputs whose forecasts have gaps (NaN) in PV, load and prices, as a broken feed delivers them."""

    def __init__(self, inner: ReplayInputs) -> None:
        self.inner = inner

    def at(self, when: pd.Timestamp) -> object:
        got = self.inner.at(when)
        f = got.forecasts
        pv, load, imp = f.pv_kw.copy(), f.load_kw.copy(), f.import_price_eur_per_kwh.copy()
        pv[2:9] = np.nan
        load[::5] = np.nan
        imp[6:] = np.nan
        return dataclasses.replace(got, forecasts=dataclasses.replace(f, pv_kw=pv, load_kw=load,
                                                                      import_price_eur_per_kwh=imp))


@pytest.mark.parametrize("controller", ["rule", "rl"])
def test_nan_forecasts_are_repaired_logged_once_and_keep_the_goals(tmp_path: Path, week_60: Scenario,
                                                                   home_inst: Installation, controller: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    home = Home.from_installation(home_inst)
    replay = ReplayInputs(week_60, home)
    start = int(np.flatnonzero(week_60.index == pd.Timestamp("2024-03-28", tz="Europe/Amsterdam"))[0])
    energies: list[float] = []

    async def run() -> int:
        inverter = SimulatedInverter(home.battery, home_inst.battery.initial_energy_kwh)
        port = await inverter.start()
        driver = SunSpecDriver("127.0.0.1", port)
        await driver.connect()
        loop = ControlLoop(home, make_controller(controller, home), driver, GappyInputs(replay), 60, Shield(home),
                           DecisionLog(tmp_path / "decisions.jsonl"))

        def play(when: pd.Timestamp, applied: Decision) -> None:
            i = int(week_60.index.get_loc(when))
            inverter.advance(60, replay.pv_kw[i], replay.load_kw[i])
            energies.append(inverter.energy_kwh)

        try:
            return await loop.run(day_of_ticks(week_60.index[start], 24, 60), play)
        finally:
            loop.decision_log.close()
            driver.close()
            await inverter.stop()

    assert asyncio.run(run()) == 24
    records = read_records(tmp_path / "decisions.jsonl")
    assert len(records) == 24 and all(r["soc_pct"] is not None for r in records)  # decided every interval
    assert caplog.text.count("PV forecast has 7 gaps: counted as no sun") == 1  # said once, not every interval
    assert "known prices end there" in caplog.text
    assert min(energies) >= home.battery.reserve_kwh - 1e-6


def test_repair_forecasts_leaves_a_clean_forecast_alone_and_fills_every_gap(week_60: Scenario,
                                                                            home_inst: Installation) -> None:
    home = Home.from_installation(home_inst)
    clean = ReplayInputs(week_60, home).at(week_60.index[30])
    same, notes = repair_forecasts(clean.forecasts, clean.last_load_kw)
    assert same is clean.forecasts and notes == {}
    gappy = GappyInputs(ReplayInputs(week_60, home)).at(week_60.index[30])
    fixed, notes = repair_forecasts(gappy.forecasts, 0.4)  # type: ignore[attr-defined]
    assert len(notes) == 3
    assert np.isfinite(fixed.pv_kw).all() and np.isfinite(fixed.load_kw).all()
    assert fixed.n_price_known == 6 and np.isfinite(fixed.import_price_eur_per_kwh).all()
    assert (fixed.pv_kw[2:9] == 0).all()  # no sun where the PV forecast had gaps


def test_a_dry_run_costs_what_dwars_evaluate_says_for_the_same_days(home_inst: Installation) -> None:
    """One loop, one measuring stick: the rule controller over Modbus (SoC read in 0.1 % steps, setpoints in
    0.01 % steps) ends where `dwars evaluate` ends on March days without negative prices (nothing to curtail)."""
    scenario = build_scenario(home_inst, [sample_path("prices_2024.json.gz")], "2024-03-27", "2024-03-29", 60,
                              weather=sample_path("knmi_debilt_260_2024_T_Q.csv.gz"), model_pv=True)
    with tempfile.TemporaryDirectory() as folder:
        run = simulated_run(home_inst, scenario, "rule", Path(folder) / "d.jsonl")
    reference = evaluate(home_inst, scenario, ["none", "rule"]).results
    assert run.violations == 0 and run.failures == 0
    assert run.cost_without_battery_eur == pytest.approx(reference["none"]["energy_cost_eur"])
    assert run.cost_eur == pytest.approx(reference["rule"]["objective_eur"], abs=0.02)
    assert abs(run.cost_eur - reference["rule"]["objective_eur"]) < 0.05 * (reference["none"]["objective_eur"]
                                                                           - reference["rule"]["objective_eur"])
