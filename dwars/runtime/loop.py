"""The control loop: each interval, read the battery, decide, pass the shield, command the inverter, log it.

One :meth:`ControlLoop.decide` per interval start (from :func:`dwars.runtime.clock.ticks`):

1. read the state of charge from the inverter (:class:`~dwars.runtime.driver.SunSpecDriver`);
2. get the forecasts and the last measured PV and load for this interval from the inputs;
3. let the controller decide and the safety shield check it: the same objects ``dwars evaluate`` runs;
4. write the applied decision to the inverter, with a revert time of :attr:`ControlLoop.revert_intervals`
   intervals so the inverter falls back to its own self-consumption if dwars stops;
5. append one record to the decision log.

When the inverter does not take the command, the loop says so in the log and the record, and goes on: the
inverter's revert time returns it to self-consumption, and the next interval tries again. After
:attr:`ControlLoop.max_failures` failed intervals in a row the loop enters **safe mode**: it hands control back
to the inverter's own self-consumption (the driver's ``fail_safe``) and commands nothing but
self-consumption until a command has been taken again. When the battery cannot be read or the inputs are
missing, there is nothing to decide on: the loop logs it, writes a record saying so (self-consumption, the
reason) and goes on. The log has one record per interval, whatever happened.

Measurements are taken as they come, with two precautions: the state of charge is read conservatively (half
the inverter's SoC step lower, so a goal met "on the display" is met in the battery), and a forecast with
gaps (NaN) is repaired before a controller sees it (:func:`repair_forecasts`): a missing PV value counts as
no sun, a missing load as the mean of the known ones (or the last measured load), a missing price ends the
known prices there. Each such cause is logged when it appears and when it clears (:class:`CauseLog`).

:class:`ReplayInputs` replays a scenario's prices, forecasts and measurements (the dry run, the simulated
inverter, ``make run``); live feeds provide the same :meth:`ReplayInputs.at`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
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


class CauseLog:
    """Logs each cause of a degraded input once when it appears and once when it clears (keys are stable names)."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self.logger = logger
        self.active: dict[str, str] = {}

    def update(self, causes: dict[str, str]) -> None:
        """``causes``: key -> message of everything degraded now."""
        for key, message in causes.items():
            if key not in self.active:
                self.logger.warning("%s", message)
        for key in set(self.active) - set(causes):
            self.logger.info("resolved: %s", self.active[key])
        self.active = dict(causes)


def repair_forecasts(forecasts: Forecasts, last_load_kw: float) -> tuple[Forecasts, dict[str, str]]:
    """``forecasts`` with its gaps (NaN) filled, and a plain-words note per repaired series, keyed ``pv_gaps``,
    ``load_gaps``, ``price_gaps`` (empty: none).

    PV (kW): a gap counts as no sun (the cautious side: the battery is not left empty waiting for sun that may
    not come). Load (kW): the mean of the known values, else ``last_load_kw``, else 0. Prices: the known prices
    end at the first gap (the controllers treat what follows as not yet published).
    """
    notes: dict[str, str] = {}
    pv, load = np.asarray(forecasts.pv_kw, float), np.asarray(forecasts.load_kw, float)
    changes: dict[str, Any] = {}
    if not np.isfinite(pv).all():
        notes["pv_gaps"] = f"PV forecast has {int(np.sum(~np.isfinite(pv)))} gaps: counted as no sun"
        changes["pv_kw"] = np.where(np.isfinite(pv), pv, 0.0)
    if not np.isfinite(load).all():
        known = load[np.isfinite(load)]
        fill = float(known.mean()) if known.size else (last_load_kw if math.isfinite(last_load_kw) else 0.0)
        notes["load_gaps"] = f"load forecast has {int(np.sum(~np.isfinite(load)))} gaps: filled with {fill:.2f} kW"
        changes["load_kw"] = np.where(np.isfinite(load), load, fill)
    prices = [np.asarray(forecasts.epex_eur_per_mwh, float), np.asarray(forecasts.import_price_eur_per_kwh, float),
              np.asarray(forecasts.export_price_eur_per_kwh, float)]
    bad = ~np.isfinite(prices[0]) | ~np.isfinite(prices[1]) | ~np.isfinite(prices[2])
    if bad.any():
        k = int(np.argmax(bad))
        since = pd.Timestamp(forecasts.times[k]).isoformat()
        notes["price_gaps"] = f"prices missing from {since}: known prices end there"
        changes.update(epex_eur_per_mwh=prices[0][:k], import_price_eur_per_kwh=prices[1][:k],
                       export_price_eur_per_kwh=prices[2][:k])
    return (dataclasses.replace(forecasts, **changes) if changes else forecasts), notes


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
    max_failures : failed intervals in a row before safe mode (default 3).
    flex : the EV charger and the boiler switch (:class:`dwars.runtime.flex.FlexRuntime`): the peak limit adjusts
        the battery's decision, the EV is planned and commanded after it, and what the loads do goes into the record.
    voltage : high-voltage mode (:class:`dwars.runtime.voltage.VoltageWatch`): in the mode the controller's proposal
        becomes charging from the solar surplus before the shield checks it; the record gets a ``voltage`` entry.

    Attributes
    ----------
    failures : intervals without a decision or whose command the inverter did not take, in all.
    safe_mode : True while in safe mode (see the module text).
    last : the last (State, Decision applied) pair, None before the first decision.
    last_forecasts, last_interventions : what that decision saw, and the shield's interventions in it.
    """

    def __init__(self, home: Home, controller: Controller, driver: SunSpecDriver, inputs: Any, minutes: int,
                 shield: Any | None = None, decision_log: Any | None = None, revert_intervals: int = 4,
                 max_failures: int = 3, flex: Any | None = None, voltage: Any | None = None) -> None:
        self.home = home
        self.controller = controller
        self.driver = driver
        self.inputs = inputs
        self.minutes = int(minutes)
        self.shield = shield
        self.decision_log = decision_log
        self.revert_s = int(revert_intervals * self.minutes * 60)
        self.max_failures = int(max_failures)
        self.failures = 0
        self.failures_in_a_row = 0
        self.safe_mode = False
        self.last: tuple[State, Decision] | None = None
        self.last_forecasts: Forecasts | None = None
        self.last_interventions: list[Any] = []
        self.causes = CauseLog(log)  # forecast gaps repaired, curtailment the inverter cannot carry out
        self.flex = flex if flex is not None and flex.active else None
        self.voltage = voltage

    async def decide(self, when: pd.Timestamp, early: str | None = None) -> Decision:
        """One interval: read, decide, check, command, log. Returns what was applied (self-consumption, with the
        reason, when the inverter did not take it). ``early``: the interval is decided again, and why."""
        reading = await self.driver.read()
        capacity = self.home.battery.capacity_kwh
        inputs = self.inputs.at(when)
        forecasts, causes = repair_forecasts(inputs.forecasts, inputs.last_load_kw)
        # Conservative: an inverter that shows 31 % may hold 30.5 %; a goal must be met in the battery.
        soc_pct = max(reading.soc_pct - reading.soc_step_pct / 2.0, 0.0)
        state = State(pd.Timestamp(when), self.minutes, capacity * soc_pct / 100.0, soc_pct,
                      inputs.last_pv_kw, inputs.last_load_kw)
        proposed = self.controller.decide(state, forecasts)
        applied, notes = proposed, ()
        voltage_entry = None
        if self.voltage is not None:  # before the shield: the mode's charge must pass the same rules
            applied, voltage_entry = self.voltage.adjust(proposed, forecasts, self.last[1] if self.last else None,
                                                          state.soc_pct)
        if self.shield is not None:
            result = self.shield.check(state, forecasts, applied)
            applied, notes = result.applied, result.interventions
        peak_note = ""
        if self.flex is not None:
            applied, peak_note = self.flex.adjust(applied, forecasts)
        if self.safe_mode and applied.mode != Mode.MSC:
            applied = Decision(Mode.MSC, 0.0, f"safe mode: self-consumption instead of {applied.describe()} until "
                                              "the inverter takes commands again")
        try:
            await self.driver.apply(applied, self.revert_s, reading.max_charge_w)
        except InverterError as err:
            log.error("%s; the inverter falls back to self-consumption within %d s", err, self.revert_s)
            applied = Decision(Mode.MSC, 0.0, f"inverter did not take {applied.describe()} ({err}); it runs "
                                              "self-consumption until the next command")
            await self._failed(str(err))
        else:
            self._succeeded()
            if applied.curtail_pv:  # no register map has a point for it yet (see dwars/runtime/maps/README.md)
                causes["curtail"] = ("the plan curtails PV (a negative price) but the inverter's register map has "
                                     "no way to limit PV: the surplus is exported and costs money at negative prices")
        self.causes.update({key: f"{pd.Timestamp(when).isoformat()}: {note}" for key, note in causes.items()})
        if early:
            applied = dataclasses.replace(applied, reason=f"{applied.reason} (decided again: {early})")
        self.last, self.last_forecasts, self.last_interventions = (state, applied), forecasts, list(notes)
        loads: dict[str, Any] = {}
        if self.flex is not None:
            loads = await self.flex.interval(pd.Timestamp(when), forecasts)
            if peak_note:
                loads["peak"] = peak_note
        if voltage_entry is not None:
            loads["voltage"] = voltage_entry
        self._record(state.time, state.soc_pct, proposed, applied, list(notes), inputs_digest(state, forecasts),
                     loads)
        return applied

    def _record(self, when: pd.Timestamp, soc_pct: float, proposed: Decision, applied: Decision,
                notes: list[Any], digest: str, loads: dict[str, Any] | None = None) -> None:
        if self.decision_log is not None:
            self.decision_log.write(decision_record(when, self.home.timezone, self.controller.name, soc_pct,
                                                    proposed, applied, notes, digest, loads))

    async def _failed(self, why: str) -> None:
        self.failures += 1
        self.failures_in_a_row += 1
        if self.safe_mode or self.failures_in_a_row < self.max_failures:
            return
        self.safe_mode = True
        log.error("safe mode: %d intervals in a row without a working inverter command (last: %s). dwars hands "
                  "control back to the inverter's own self-consumption and commands nothing else until the "
                  "inverter takes commands again", self.failures_in_a_row, why)
        try:
            await self.driver.fail_safe()
        except (InverterError, OSError) as err:
            log.error("safe mode: could not hand control back to the inverter either (%s); its revert time "
                      "(%d s) does it", err, self.revert_s)

    def _succeeded(self) -> None:
        if self.safe_mode:
            log.warning("safe mode ended: the inverter takes commands again after %d failed intervals",
                        self.failures_in_a_row)
        self.safe_mode = False
        self.failures_in_a_row = 0

    async def step(self, when: pd.Timestamp, early: str | None = None) -> Decision:
        """:meth:`decide`, and when there is nothing to decide on (no battery reading, no inputs), the record and
        the safe-mode count of a failed interval. ``early``: why the interval is decided again (for the log)."""
        try:
            return await self.decide(when, early)
        except (InverterError, InputError) as err:  # no state or no inputs: nothing to decide on
            log.error("%s: no decision for %s; the inverter runs self-consumption", err, pd.Timestamp(when).isoformat())
            applied = Decision(Mode.MSC, 0.0, f"no decision: {err}")
            await self._failed(str(err))
            self._record(pd.Timestamp(when), math.nan, applied, applied, [], inputs_digest(str(err)))
            return applied

    async def run(self, ticks: AsyncIterator[Tick],
                  after_each: Callable[[pd.Timestamp, Decision], Awaitable[None] | None] | None = None) -> int:
        """Decide at every tick; ``after_each(start, applied)`` runs after each decision (the simulated inverter
        plays the interval there). Returns the number of intervals decided."""
        n = 0
        async for tick in ticks:
            applied = await self.step(tick.start)
            n += 1
            if after_each is not None:
                done = after_each(tick.start, applied)
                if done is not None:
                    await done
        return n
