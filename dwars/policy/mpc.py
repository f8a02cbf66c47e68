"""MPC: the dispatch LP re-solved on the forecasts every interval (EMHASS-style receding horizon).

At each :meth:`MpcController.decide` the LP of :mod:`dwars.policy.lp` (the same builder as the oracle) is
solved over the intervals whose prices are known (``K = forecasts.n_price_known``; day-ahead prices reach
11-35 hours ahead), on the forecast PV and load, from the battery's energy now. Deadlines (endpoint, night end)
that fall within those K intervals are soft-but-heavy (the LP's slack at 10 EUR/kWh), so a goal that can no
longer be met is approached as closely as possible instead of making the LP infeasible. Only the first
interval of the plan is carried out; the next interval plans again (``replan_every`` reuses a plan for more
intervals, to save time).

Terminal value: energy left in the battery at the horizon end is worth ``v`` EUR/kWh, otherwise every plan
would empty the battery by its last interval (energy beyond the horizon worthless) and hoarding for tomorrow
would never pay. Default ``v = round_trip_efficiency * q10(known import prices)``: what it costs to buy the kWh
back in the cheap hours, less the round-trip loss. Chosen by measurement: rolling MPC with perfect PV/load
forecasts and the real price publication (before 13:00 local prices known until midnight, then until the next
midnight), examples/home.toml, objective in EUR (lower is better), all goals met by every candidate:

==================  ======================  ==========================
v                   2024, 60 min (oracle    Apr-Jun 2024, 15 min
                    35.82)                  (oracle -54.97)
==================  ======================  ==========================
rte * q10           **36.93**               **-54.70**
rte * q25           36.98                   -54.64
rte * q40           37.28
rte * median        37.45                   -54.56
rte * mean          37.46                   -54.55
eta * q25           37.32
q25                 37.99
min                 37.57
0                   37.45
eta * mean          38.02
==================  ======================  ==========================

(Jan-Feb 2024 at 60 min: oracle 66.91, rte * q25 67.03, rte * median 67.19, mean 67.54, 0 67.89.)

The decision: IMPORT at the planned charge / EXPORT at the planned discharge / HOLD; when the planned battery
power equals what maximise-self-consumption would do with the forecast PV and load (within ``msc_tol_kw``),
the decision is MSC instead, so that the real inverter follows the house's actual PV and load during the
interval rather than a forecast of them. Not in an interval that ends at a deadline: there the planned power is
commanded, because MSC on an actual PV slightly below the forecast would miss the goal by a few Wh. PV is
curtailed where the plan curtails it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from dwars.env.modes import Decision, Mode
from dwars.policy.base import Controller, Forecasts, Home, State
from dwars.policy.lp import LpError, Schedule, solve_dispatch
from dwars.policy.oracle import plan_decision

#: Quantile of the known import prices in the default terminal value (times the round-trip efficiency).
DEFAULT_TERMINAL_QUANTILE = 0.10
#: Default: plans shorter than this many intervals (the end of a scenario) are not solved; MSC instead.
MIN_PLAN_INTERVALS = 2
#: Powers (kW) above this count as a charge/discharge in the reason text.
_REASON_KW = 0.05

TerminalRule = float | Callable[[np.ndarray, Home], float] | None


def default_terminal_value(import_price: np.ndarray, home: Home,
                           quantile: float = DEFAULT_TERMINAL_QUANTILE) -> float:
    """``round_trip_efficiency * quantile(known import prices)``, at least 0 (EUR/kWh)."""
    rte = home.battery.efficiency_one_way ** 2
    return max(float(rte * np.quantile(import_price, quantile)), 0.0)


class MpcController(Controller):
    """Receding-horizon LP on the forecasts (see the module text).

    Parameters
    ----------
    home : the home.
    seed : unused (deterministic).
    replan_every : solve a new plan every this many intervals (1 = every interval); in between the stored plan's
        next step is carried out (its power; MSC where it matches self-consumption).
    terminal_value : EUR/kWh of energy left at the horizon end: a number, a function
        ``(known import prices, home) -> EUR/kWh``, or None for :func:`default_terminal_value`.
    max_horizon : plan over at most this many intervals (default: all with known prices).
    msc_tol_kw : planned battery power within this of the self-consumption power counts as MSC. The LP's
        "follow the house" steps sit exactly on ``pv - load`` (a vertex where import = export = 0), so a tiny
        tolerance catches them; a wider one (10 W) swaps near-MSC plans for MSC, which cost 6e-5 EUR over three
        days with perfect forecasts.
    time_limit_s : HiGHS time limit per solve; on failure the decision is MSC.
    min_plan_intervals : with fewer known prices than this (the last interval of a scenario) decide MSC.
    record_timing : keep the milliseconds of every decide for :meth:`timing` (off for millions of calls, e.g.
        the plan columns of training).
    """

    name = "mpc"

    def __init__(self, home: Home, seed: int | None = None, *, replan_every: int = 1,
                 terminal_value: TerminalRule = None, max_horizon: int | None = None, msc_tol_kw: float = 1e-4,
                 time_limit_s: float | None = 5.0, min_plan_intervals: int = MIN_PLAN_INTERVALS,
                 record_timing: bool = True) -> None:
        super().__init__(home, seed)
        if replan_every < 1:
            raise ValueError(f"replan_every = {replan_every}: must be >= 1")
        self.replan_every = int(replan_every)
        self.terminal_value = terminal_value
        self.max_horizon = max_horizon
        self.msc_tol_kw = float(msc_tol_kw)
        self.time_limit_s = time_limit_s
        self.min_plan_intervals = max(int(min_plan_intervals), 1)
        self.record_timing = record_timing
        self.decide_ms: list[float] = []
        self.solves = 0
        self._plan: Schedule | None = None
        self._plan_start: pd.Timestamp | None = None
        self._plan_forecasts: Forecasts | None = None

    def reset(self) -> None:
        self.decide_ms = []
        self.solves = 0
        self._plan = None
        self._plan_start = None
        self._plan_forecasts = None

    # ---- planning
    def terminal_value_for(self, import_price: np.ndarray) -> float:
        rule = self.terminal_value
        if rule is None:
            return default_terminal_value(import_price, self.home)
        if callable(rule):
            return float(rule(import_price, self.home))
        return float(rule)

    def plan(self, state: State, forecasts: Forecasts) -> Schedule:
        """Solve the LP for the forecasts from ``state`` (raises LpError / ValueError on failure)."""
        pv, load, pi, pe, goals = self.lp_inputs(forecasts, state.minutes)
        self.solves += 1
        return solve_dispatch(state.energy_kwh, pv, load, pi, pe, state.dt_h, self.home.battery,
                              self.home.grid_limit_kw, goals, self.terminal_value_for(pi),
                              time_limit_s=self.time_limit_s)

    def lp_inputs(self, forecasts: Forecasts, minutes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                                      list[tuple[int, float]]]:
        """(PV kW, load kW, import and export EUR/kWh, goals ``(k, min kWh)``) over the intervals with known
        prices: what the LP plans on (missing forecasts count as 0 kW)."""
        k_n = self._known(forecasts)
        b = self.home.battery
        pv = np.nan_to_num(np.asarray(forecasts.pv_kw[:k_n], dtype=float), nan=0.0)
        load = np.nan_to_num(np.asarray(forecasts.load_kw[:k_n], dtype=float), nan=0.0)
        pi = np.asarray(forecasts.import_price_eur_per_kwh[:k_n], dtype=float)
        pe = np.asarray(forecasts.export_price_eur_per_kwh[:k_n], dtype=float)
        goals = [(k, b.capacity_kwh * d.soc_pct / 100.0) for k, d in forecasts.deadline_steps(minutes) if k < k_n]
        return pv, load, pi, pe, goals

    def _known(self, forecasts: Forecasts) -> int:
        k_n = min(forecasts.n_price_known, forecasts.horizon, len(forecasts.pv_kw), len(forecasts.load_kw),
                  len(forecasts.export_price_eur_per_kwh))
        return min(k_n, self.max_horizon) if self.max_horizon is not None else k_n

    def _reusable_step(self, state: State) -> int | None:
        if self._plan is None or self._plan_start is None or self.replan_every == 1:
            return None
        j = (pd.Timestamp(state.time) - self._plan_start) / pd.Timedelta(minutes=state.minutes)
        if j != int(j) or not 0 < j < min(self.replan_every, len(self._plan)):
            return None
        return int(j)

    # ---- deciding
    @property
    def last_plan(self) -> Schedule | None:
        """The schedule behind the last decision (None when the LP could not plan)."""
        return self._plan

    def decide(self, state: State, forecasts: Forecasts) -> Decision:
        if not self.record_timing:
            return self._decide(state, forecasts)
        t0 = time.perf_counter()
        try:
            return self._decide(state, forecasts)
        finally:
            self.decide_ms.append(1e3 * (time.perf_counter() - t0))

    def _decide(self, state: State, forecasts: Forecasts) -> Decision:
        j = self._reusable_step(state)
        if j is None:
            k_n = self._known(forecasts)
            if k_n < self.min_plan_intervals:
                self._plan = None
                return Decision(Mode.MSC, 0.0, f"mpc: prices known for {k_n} interval(s) only; self-consumption")
            try:
                self._plan = self.plan(state, forecasts)
            except (LpError, ValueError) as err:
                self._plan = None
                return Decision(Mode.MSC, 0.0, f"mpc: no plan ({err}); self-consumption")
            self._plan_start = pd.Timestamp(state.time)
            self._plan_forecasts = forecasts
            j = 0
        plan = self._plan
        fc = self._plan_forecasts
        assert plan is not None and fc is not None
        mode, power, curtail = plan_decision(plan, j)
        b = self.home.battery
        power = min(power, b.max_charge_kw if mode == Mode.IMPORT else b.max_discharge_kw)
        if j not in plan.deadline_steps and self._matches_msc(state, plan, j, fc):
            mode, power = Mode.MSC, 0.0
        return Decision(mode, power, self._reason(mode, power, curtail, plan, j, fc), curtail_pv=curtail)

    def _matches_msc(self, state: State, plan: Schedule, j: int, fc: Forecasts) -> bool:
        """The planned battery power equals what MSC would deliver with the forecast PV and load."""
        pv = float(np.nan_to_num(fc.pv_kw[j]))
        load = float(np.nan_to_num(fc.load_kw[j]))
        grid = self.home.grid_limit_kw
        follow = min(max(pv - load, -(grid + load)), max(grid + pv - load, 0.0))
        msc = self.home.battery.step(state.energy_kwh, follow, state.dt_h).power_kw
        return abs(float(plan.battery_kw[j]) - float(msc)) <= self.msc_tol_kw

    def _reason(self, mode: Mode, power: float, curtail: bool, plan: Schedule, j: int, fc: Forecasts) -> str:
        now = {Mode.IMPORT: f"charge {power:.2f} kW now", Mode.EXPORT: f"discharge {power:.2f} kW now",
               Mode.HOLD: "hold now", Mode.MSC: "self-consumption now"}[mode]
        if curtail:
            now += ", PV curtailed"
        tz = self.home.timezone
        times = pd.DatetimeIndex(fc.times[:len(plan)])
        step = times[1] - times[0] if len(times) > 1 else pd.Timedelta(0)
        parts = []
        grid_charge = (plan.charge_kw > _REASON_KW) & (plan.import_kw > _REASON_KW)
        for label, mask in (("grid charge", grid_charge), ("discharge", plan.discharge_kw > _REASON_KW)):
            run = _first_run(mask, j + 1)
            if run is not None:
                a, z = run
                parts.append(f"{label} {times[a].tz_convert(tz):%H:%M}-{(times[z] + step).tz_convert(tz):%H:%M}")
        short = plan.short_deadlines
        if short:
            parts.append(f"goal short by {sum(s for _, _, s in short):.1f} kWh")
        return f"mpc: {now}" + (f"; plan: {', '.join(parts)}" if parts else "")

    # ---- figures
    def timing(self) -> dict[str, Any]:
        """Milliseconds per decide (p50, p99, max) and the number of LP solves."""
        ms = np.asarray(self.decide_ms)
        if not len(ms):
            return {"decides": 0, "solves": self.solves}
        return {"decides": len(ms), "solves": self.solves, "ms_p50": float(np.percentile(ms, 50)),
                "ms_p99": float(np.percentile(ms, 99)), "ms_max": float(ms.max())}


def _first_run(mask: np.ndarray, start: int) -> tuple[int, int] | None:
    """First run of True in ``mask[start:]`` as (first index, last index)."""
    idx = np.flatnonzero(mask[start:])
    if not len(idx):
        return None
    a = start + int(idx[0])
    gaps = np.flatnonzero(~mask[a:])
    z = a + int(gaps[0]) - 1 if len(gaps) else len(mask) - 1
    return a, z
