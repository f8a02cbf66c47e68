"""A dry run of the runtime: the control loop against the simulated inverter, on a scenario, as fast as it goes.

``dwars run --simulate`` and ``make run`` use it. The loop is the real one (Modbus TCP on 127.0.0.1, the
controller, the shield, the decision log); only the inverter, the clock and the inputs are simulated: each
interval's actual PV and load are played on the simulated battery after the decision.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dwars.config import Installation
from dwars.data.scenario import Scenario
from dwars.env.dispatch import simulate_interval, terminal_value_eur_per_kwh
from dwars.env.modes import Decision, Mode
from dwars.policy.base import Home
from dwars.policy.decision_log import DecisionLog
from dwars.policy.registry import make_controller
from dwars.policy.shield import Shield
from dwars.runtime.clock import Tick
from dwars.runtime.driver import SunSpecDriver
from dwars.runtime.loop import ControlLoop, ReplayInputs
from dwars.runtime.sim_inverter import SimulatedInverter


@dataclass(frozen=True)
class RunSummary:
    """What a dry run did: intervals decided, failed ones, the cost (EUR) with the battery and without one (the
    ``none`` reference, same PV and load), and the state of charge at the end (%). The cost with the battery is
    ``dwars evaluate``'s objective: energy cost + wear - the value of the energy it gained over the run."""

    intervals: int
    failures: int
    cost_eur: float
    cost_without_battery_eur: float
    end_soc_pct: float


async def _ticks(index: pd.DatetimeIndex) -> AsyncIterator[Tick]:
    for start in index:
        yield Tick(start)


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
    cost, reference = [0.0], [0.0]
    try:
        await driver.connect()
        with DecisionLog(log_path) as decision_log:
            loop = ControlLoop(home, make_controller(controller, home, scenario, policy_path=policy_path), driver,
                               inputs, scenario.minutes, Shield(home), decision_log)

            def play(start: pd.Timestamp, applied: Decision) -> None:
                i = int(scenario.index.get_loc(start))
                r = inverter.advance(scenario.minutes, inputs.pv_kw[i], inputs.load_kw[i], prices[0][i], prices[1][i])
                cost[0] += float(r.energy_cost_eur + r.wear_eur)
                idle = simulate_interval(home.battery.reserve_kwh, int(Mode.HOLD), 0.0, inputs.pv_kw[i],
                                         inputs.load_kw[i], prices[0][i], prices[1][i], scenario.dt_h, home.battery,
                                         home.grid_limit_kw)
                reference[0] += float(idle.energy_cost_eur)

            n = await loop.run(_ticks(pd.DatetimeIndex(scenario.index)), play)
    finally:
        driver.close()
        await inverter.stop()
    gained_kwh = inverter.energy_kwh - inst.battery.initial_energy_kwh
    value = terminal_value_eur_per_kwh(pd.DatetimeIndex(scenario.index), scenario.minutes, prices[0])
    return RunSummary(n, loop.failures, cost[0] - value * gained_kwh, reference[0], inverter.soc_pct)


def simulated_run(inst: Installation, scenario: Scenario, controller: str, log_path: str | Path,
                  policy_path: str | None = None) -> RunSummary:
    """Run the control loop over ``scenario`` against a simulated inverter; every decision goes to ``log_path``."""
    return asyncio.run(_run(inst, scenario, controller, Path(log_path), policy_path))
