"""A dry run of the runtime: the control loop against the simulated inverter, on a scenario, as fast as it goes.

``dwars run --simulate`` and ``make run`` use it. The loop is the real one (Modbus TCP on 127.0.0.1, the
controller, the shield, the decision log); only the inverter, the clock and the inputs are simulated: each
interval's actual PV and load are played on the simulated battery after the decision.

What the simulated inverter did is scored by ``dwars evaluate``'s own measuring stick
(:func:`dwars.policy.evaluate.score`: the same objective, the same goal checks), so a dry run and an
evaluation of the same controller on the same scenario give the same figures, up to the rounding of the
Modbus setpoints and what the inverter cannot carry out (PV curtailment). :func:`compare` runs other controllers
(``none``, ``rule``) the same way on the same days.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dwars.config import Installation
from dwars.data.scenario import Scenario
from dwars.env.goals import deadlines
from dwars.env.modes import Decision
from dwars.policy.base import Home
from dwars.policy.decision_log import DecisionLog
from dwars.policy.evaluate import Trace, evaluate, score
from dwars.policy.registry import make_controller
from dwars.policy.shield import Shield
from dwars.runtime.clock import Tick
from dwars.runtime.driver import SunSpecDriver
from dwars.runtime.loop import ControlLoop, ReplayInputs
from dwars.runtime.sim_inverter import SimulatedInverter


@dataclass(frozen=True)
class RunSummary:
    """What a dry run did: intervals decided, failed ones, the state of charge at the end (%), and the run's
    figures by :func:`dwars.policy.evaluate.score` (``objective_eur``: energy cost + wear - the value of the energy
    gained; ``violations`` per goal, ...). ``cost_without_battery_eur``: the energy cost of the same PV and load
    with the battery idle (the ``none`` reference)."""

    intervals: int
    failures: int
    end_soc_pct: float
    figures: dict[str, Any]
    cost_without_battery_eur: float

    @property
    def cost_eur(self) -> float:
        return float(self.figures["objective_eur"])

    @property
    def violations(self) -> int:
        return int(sum(self.figures["violations"].values()))


async def _ticks(index: pd.DatetimeIndex) -> AsyncIterator[Tick]:
    for start in index:
        yield Tick(start)


def _trace(name: str, scenario: Scenario, energy0_kwh: float, played: list[tuple[Decision, Any]]) -> Trace:
    """The simulated inverter's intervals as a :class:`~dwars.policy.evaluate.Trace` (what it carried out)."""
    def column(field: str) -> np.ndarray:
        return np.array([float(getattr(r, field)) for _, r in played])

    return Trace(name, pd.DatetimeIndex(scenario.index), scenario.minutes, energy0_kwh,
                 np.array([int(d.mode) for d, _ in played], dtype=np.int8), np.array([d.power_kw for d, _ in played]),
                 column("energy_kwh"), column("charge_kw"), column("discharge_kw"), column("import_kw"),
                 column("export_kw"), column("curtailed_kw"), column("energy_cost_eur"), column("wear_eur"),
                 [d.reason for d, _ in played])


async def _run(inst: Installation, scenario: Scenario, controller: str, log_path: Path,
               policy_path: str | None) -> RunSummary:
    home = Home.from_installation(inst)
    inputs = ReplayInputs(scenario, home)
    prices = inputs.forecaster.import_price, inputs.forecaster.export_price
    inverter = SimulatedInverter(home.battery, inst.battery.initial_energy_kwh, home.grid_limit_kw,
                                 now=pd.Timestamp(scenario.index[0]))
    port = await inverter.start()
    driver = SunSpecDriver("127.0.0.1", port)
    start = inverter.now
    driver.clock = lambda: (inverter.now - start).total_seconds()  # the rate limit runs on simulated time
    played: list[tuple[Decision, Any]] = []
    # As in dwars evaluate: `none` is the home without a battery (idle, its goals do not apply), no shield.
    guard = None if controller in ("none", "oracle") else Shield(home)
    try:
        await driver.connect()
        with DecisionLog(log_path) as decision_log:
            loop = ControlLoop(home, make_controller(controller, home, scenario, policy_path=policy_path), driver,
                               inputs, scenario.minutes, guard, decision_log)

            def play(start: pd.Timestamp, applied: Decision) -> None:
                i = int(scenario.index.get_loc(start))
                carried_out = inverter.commanded()  # what the inverter does, whatever the loop meant
                r = inverter.advance(scenario.minutes, inputs.pv_kw[i], inputs.load_kw[i], prices[0][i],
                                     prices[1][i])
                played.append((Decision(carried_out.mode, carried_out.power_kw, applied.reason), r))

            n = await loop.run(_ticks(pd.DatetimeIndex(scenario.index)), play)
    finally:
        driver.close()
        await inverter.stop()
    trace = _trace(controller, scenario, inst.battery.initial_energy_kwh, played)
    goals = [] if controller == "none" else deadlines(inst, scenario.start, scenario.end, scenario.minutes)
    figures = score(trace, scenario, home, inputs.pv_kw, prices[0], goals)
    reference = evaluate(inst, scenario, ["none"]).results["none"]["energy_cost_eur"]
    return RunSummary(n, loop.failures, inverter.soc_pct, figures, float(reference))


def simulated_run(inst: Installation, scenario: Scenario, controller: str, log_path: str | Path,
                  policy_path: str | None = None) -> RunSummary:
    """Run the control loop over ``scenario`` against a simulated inverter; every decision goes to ``log_path``."""
    return asyncio.run(_run(inst, scenario, controller, Path(log_path), policy_path))


def compare(inst: Installation, scenario: Scenario, controllers: Sequence[str],
            policy_path: str | None = None) -> dict[str, RunSummary]:
    """Dry runs of ``controllers`` on the same scenario, through the same loop and simulated inverter (so that they
    share its limits, e.g. no PV curtailment over Modbus); their decision logs are not kept."""
    with tempfile.TemporaryDirectory(prefix="dwars-compare-") as folder:
        return {name: simulated_run(inst, scenario, name, Path(folder) / f"{name}.jsonl", policy_path)
                for name in controllers}
