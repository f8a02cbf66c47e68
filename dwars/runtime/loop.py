"""The control loop: each interval, read the battery, decide, pass the shield, command the inverter, log it.

One :meth:`ControlLoop.decide` per interval start (from :func:`dwars.runtime.clock.ticks`):

1. read the state of charge from the inverter (:class:`~dwars.runtime.driver.SunSpecDriver`);
2. get the forecasts and the last measured PV and load for this interval from the inputs;
3. let the controller decide and the safety shield check it: the same objects ``dwars evaluate`` runs;
4. write the applied decision to the inverter, with a revert time of :attr:`ControlLoop.revert_intervals`
   intervals so the inverter falls back to its own self-consumption if dwars stops;
5. append one record to the decision log.

When the inverter does not take the command, the loop says so in the log and the record, and goes on: the
inverter's revert time returns it to self-consumption, and the next interval tries again. When the battery
cannot be read or the inputs are missing, there is nothing to decide on: the loop logs it, writes no record
for that interval, and goes on.

:class:`ReplayInputs` replays a scenario's prices, forecasts and measurements (the dry run, the simulated
inverter, ``make run``); live feeds provide the same :meth:`ReplayInputs.at`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from dwars.data.scenario import Scenario
from dwars.env.forecast import Forecaster
from dwars.env.modes import Decision, Mode
from dwars.errors import DwarsError
from dwars.policy.base import Controller, Forecasts, Home, State
from dwars.policy.decision_log import decision_record, inputs_digest
from dwars.runtime.clock import Tick
from dwars.runtime.driver import InverterError, SunSpecDriver

log = logging.getLogger(__name__)


class InputError(DwarsError):
    """No prices or forecasts for the interval to decide."""


@dataclass(frozen=True)
class Inputs:
    """What the loop knows at an interval start besides the battery: forecasts, last measured PV and load (kW)."""

    forecasts: Forecasts
    last_pv_kw: float
    last_load_kw: float


class ReplayInputs:
    """Inputs replayed from a scenario (forecasts with errors, seeded, as ``dwars evaluate`` makes them)."""

    def __init__(self, scenario: Scenario, home: Home, seed: int = 0) -> None:
        self.forecaster = Forecaster(scenario, home, seed=seed)
        self.index = pd.DatetimeIndex(scenario.index)
        self.pv_kw = scenario.pv_kw(home.installation).to_numpy()
        self.load_kw = scenario.frame["load_kw"].to_numpy()

    def at(self, when: pd.Timestamp) -> Inputs:
        """The inputs for the interval starting at ``when`` (:class:`InputError` outside the scenario)."""
        try:
            i = int(self.index.get_loc(pd.Timestamp(when)))
        except KeyError:
            raise InputError(f"no prices or forecasts for {pd.Timestamp(when).isoformat()}: the scenario covers "
                             f"{self.index[0].isoformat()} to {self.index[-1].isoformat()}") from None
        last_pv = float(self.pv_kw[i - 1]) if i else float("nan")
        last_load = float(self.load_kw[i - 1]) if i else float("nan")
        return Inputs(self.forecaster.at(i), last_pv, last_load)


class ControlLoop:
    """Decides and commands, interval by interval (see the module text).

    Parameters
    ----------
    home : the home.
    controller : any dwars controller (``make_controller``).
    driver : a connected inverter driver.
    inputs : an object with ``at(when) -> Inputs``.
    minutes : the interval length.
    shield : the safety shield (None: the controller's decisions go to the inverter as they are).
    decision_log : a :class:`~dwars.policy.decision_log.DecisionLog` (None: no log).
    revert_intervals : the inverter falls back to self-consumption after this many intervals without a command
        (default 4: an hour at 15 minutes; the driver refreshes an unchanged command every half of that, so a
        steady command costs a write every other interval, and a stopped dwars leaves the battery on its last
        command for at most an hour).
    """

    def __init__(self, home: Home, controller: Controller, driver: SunSpecDriver, inputs: Any, minutes: int,
                 shield: Any | None = None, decision_log: Any | None = None, revert_intervals: int = 4) -> None:
        self.home = home
        self.controller = controller
        self.driver = driver
        self.inputs = inputs
        self.minutes = int(minutes)
        self.shield = shield
        self.decision_log = decision_log
        self.revert_s = int(revert_intervals * self.minutes * 60)
        self.failures = 0

    async def decide(self, when: pd.Timestamp) -> Decision:
        """One interval: read, decide, check, command, log. Returns what was applied (self-consumption, with the
        reason, when the inverter did not take it)."""
        reading = await self.driver.read()
        capacity = self.home.battery.capacity_kwh
        inputs = self.inputs.at(when)
        state = State(pd.Timestamp(when), self.minutes, capacity * reading.soc_pct / 100.0, reading.soc_pct,
                      inputs.last_pv_kw, inputs.last_load_kw)
        proposed = self.controller.decide(state, inputs.forecasts)
        applied, notes = proposed, ()
        if self.shield is not None:
            result = self.shield.check(state, inputs.forecasts, proposed)
            applied, notes = result.applied, result.interventions
        try:
            await self.driver.apply(applied, self.revert_s, reading.max_charge_w)
        except InverterError as err:
            self.failures += 1
            log.error("%s; the inverter falls back to self-consumption within %d s", err, self.revert_s)
            applied = Decision(Mode.MSC, 0.0, f"inverter did not take {applied.describe()} ({err}); it runs "
                                              "self-consumption until the next command")
        if self.decision_log is not None:
            self.decision_log.write(decision_record(state.time, self.home.timezone, self.controller.name,
                                                    state.soc_pct, proposed, applied, list(notes),
                                                    inputs_digest(state, inputs.forecasts)))
        return applied

    async def run(self, ticks: AsyncIterator[Tick],
                  after_each: Callable[[pd.Timestamp, Decision], Awaitable[None] | None] | None = None) -> int:
        """Decide at every tick; ``after_each(start, applied)`` runs after each decision (the simulated inverter
        plays the interval there). Returns the number of intervals decided."""
        n = 0
        async for tick in ticks:
            try:
                applied = await self.decide(tick.start)
            except (InverterError, InputError) as err:  # no state or no inputs: nothing to decide on
                self.failures += 1
                log.error("%s: no decision for %s; the inverter runs self-consumption", err,
                          pd.Timestamp(tick.start).isoformat())
                applied = Decision(Mode.MSC, 0.0, f"no decision: {err}")
            n += 1
            if after_each is not None:
                done = after_each(tick.start, applied)
                if done is not None:
                    await done
        return n
