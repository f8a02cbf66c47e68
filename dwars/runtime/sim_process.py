"""The simulated inverter as a device of its own: it runs on a clock, whether or not anyone commands it.

``dwars run --simulate`` plays each interval in lock-step with the loop (fast and exactly reproducible). A real
inverter does not wait for dwars: it carries out its last command, second after second, and falls back to its
own self-consumption when the revert time passes without a new one. :func:`serve_on_clock` does that with a
:class:`~dwars.runtime.sim_inverter.SimulatedInverter`: every ``step_real_s`` it plays the time that passed on
the clock, interval by interval with that interval's actual PV, load and prices from a scenario, under whatever
points are set at that moment. ``dwars sim-inverter`` runs it as a separate process, so that ``dwars run`` can
be stopped, killed and restarted against it (the fault tests; trying dwars out without hardware).

Every interval end goes to a trace (JSON Lines: time, energy, state of charge, the mode carried out, cost with
and without wear), the
inverter's own account of what happened, to check the goals against.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dwars.data.scenario import Scenario
from dwars.policy.base import Home
from dwars.runtime.clock import Clock, next_boundary
from dwars.runtime.loop import ReplayInputs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actuals:
    """What really happens in the house, per scenario interval: PV and load (kW), prices (EUR/kWh)."""

    index: pd.DatetimeIndex
    minutes: int
    pv_kw: np.ndarray
    load_kw: np.ndarray
    import_price_eur_per_kwh: np.ndarray
    export_price_eur_per_kwh: np.ndarray

    @classmethod
    def from_scenario(cls, scenario: Scenario, home: Home) -> Actuals:
        """A scenario's actuals, as the dry run replays them (PV modelled or measured, the home's tariff)."""
        replay = ReplayInputs(scenario, home)
        return cls(pd.DatetimeIndex(scenario.index), scenario.minutes, replay.pv_kw, replay.load_kw,
                   replay.forecaster.import_price, replay.forecaster.export_price)

    def at(self, when: pd.Timestamp) -> int:
        """Index of the interval that contains ``when`` (ValueError outside the scenario)."""
        i = int((when - self.index[0]) // pd.Timedelta(minutes=self.minutes))  # a scenario's index is regular (UTC)
        if not 0 <= i < len(self.index):
            raise ValueError(f"{when.isoformat()} is outside the scenario ({self.index[0].isoformat()} to "
                             f"{(self.index[-1] + pd.Timedelta(minutes=self.minutes)).isoformat()})")
        return i


async def serve_on_clock(inverter: Any, actuals: Actuals, clock: Clock, until: pd.Timestamp,
                         trace_path: str | os.PathLike[str] | None = None, step_real_s: float = 0.02) -> float:
    """Play ``inverter`` along ``clock`` from its ``now`` until ``until`` (UTC); returns the energy cost (EUR).

    Each step plays the clock time that passed since the last one, split at interval boundaries so that each
    piece uses its own interval's actuals, under the points set at that moment.
    """
    with contextlib.ExitStack() as stack:
        trace = stack.enter_context(Path(trace_path).open("a", encoding="utf-8")) if trace_path is not None else None
        return await _play(inverter, actuals, clock, until, trace, step_real_s)


async def _play(inverter: Any, actuals: Actuals, clock: Clock, until: pd.Timestamp, trace: Any,
                step_real_s: float) -> float:
    cost_eur, interval_cost, interval_energy_cost = 0.0, 0.0, 0.0
    while inverter.now < until:
        await asyncio.sleep(step_real_s)
        now = min(clock.now(), until)
        while inverter.now < now:
            boundary = next_boundary(inverter.now, actuals.minutes)
            piece_end = min(boundary, now)
            i = actuals.at(inverter.now)
            mode = inverter.commanded().mode
            r = inverter.advance((piece_end - inverter.now).total_seconds() / 60.0, actuals.pv_kw[i],
                                 actuals.load_kw[i], actuals.import_price_eur_per_kwh[i],
                                 actuals.export_price_eur_per_kwh[i])
            inverter.now = piece_end  # exact, whatever the rounding of the piece's length
            interval_cost += float(r.energy_cost_eur + r.wear_eur)
            interval_energy_cost += float(r.energy_cost_eur)
            if piece_end == boundary:
                cost_eur += interval_cost
                if trace is not None:
                    trace.write(json.dumps({"time": boundary.isoformat(), "energy_kwh": inverter.energy_kwh,
                                            "soc_pct": inverter.soc_pct, "mode": mode.name.lower(),
                                            "cost_eur": interval_cost, "energy_cost_eur": interval_energy_cost})
                                + "\n")
                    trace.flush()
                interval_cost, interval_energy_cost = 0.0, 0.0
    return cost_eur + interval_cost
