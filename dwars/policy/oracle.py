"""The oracle: one LP over the whole scenario's ACTUALS (perfect foresight) — the physical limit, not a controller.

It sees the actual PV, load and all prices of the scenario at once, solves :func:`dwars.policy.lp.solve_dispatch`
once, and then plays its plan back interval by interval. Every real controller is measured against it
("capture" = saving / oracle saving). Its objective is the contract's (energy cost + wear - final energy value
with v = mean import price of the scenario's last 24 h); the goals (endpoint, night end) are hard, modelled as
heavily penalised slack so that a deadline that cannot be reached is reported instead of making the LP
infeasible.

The plan commands battery POWER, not a target SoC: the simulator reproduces the planned energy exactly (up to
float rounding), and a drift of 1e-12 kWh must not turn into a correction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dwars.data.scenario import Scenario
from dwars.env.dispatch import terminal_value_eur_per_kwh
from dwars.env.goals import Deadline, deadlines
from dwars.env.modes import Decision, Mode
from dwars.policy.base import Controller, Forecasts, Home, State
from dwars.policy.lp import POWER_TOL_KW, Schedule, solve_dispatch


@dataclass(frozen=True)
class OracleProblem:
    """The inputs of the oracle's LP, from a home and a scenario."""

    times: pd.DatetimeIndex
    minutes: int
    energy0_kwh: float
    pv_kw: np.ndarray
    load_kw: np.ndarray
    import_price: np.ndarray
    export_price: np.ndarray
    goals: tuple[Deadline, ...]
    deadline_steps: list[tuple[int, float]]
    terminal_value_eur_per_kwh: float

    @property
    def dt_h(self) -> float:
        return self.minutes / 60.0


def oracle_problem(home: Home, scenario: Scenario, pv_kw: np.ndarray | pd.Series | None = None,
                   energy0_kwh: float | None = None) -> OracleProblem:
    """Actual PV/load/prices, the scenario's deadlines as ``(k, min energy kWh)`` and v, for ``home``."""
    inst = home.installation
    pv = np.asarray(scenario.pv_kw(inst) if pv_kw is None else pv_kw, dtype=float)
    epex = scenario.frame["price_eur_per_mwh"].to_numpy(dtype=float)
    pi = home.tariff.import_price(epex, scenario.index)
    pe = home.tariff.export_price(epex, scenario.index)
    goals = tuple(deadlines(inst, scenario.start, scenario.end, scenario.minutes))
    step = pd.Timedelta(minutes=scenario.minutes)
    cap = home.battery.capacity_kwh
    steps = []
    for d in goals:
        k = int((d.time - scenario.start) / step) - 1  # the interval that ends at the deadline
        if 0 <= k < len(scenario.frame):
            steps.append((k, cap * d.soc_pct / 100.0))
    e0 = inst.battery.initial_energy_kwh if energy0_kwh is None else float(energy0_kwh)
    return OracleProblem(scenario.index, scenario.minutes, e0, pv, scenario.frame["load_kw"].to_numpy(dtype=float),
                         pi, pe, goals, steps, terminal_value_eur_per_kwh(scenario.index, scenario.minutes, pi))


def solve_problem(home: Home, problem: OracleProblem, time_limit_s: float | None = None) -> Schedule:
    """Solve the oracle LP of ``problem``."""
    return solve_dispatch(problem.energy0_kwh, problem.pv_kw, problem.load_kw, problem.import_price,
                          problem.export_price, problem.dt_h, home.battery, home.grid_limit_kw,
                          problem.deadline_steps, problem.terminal_value_eur_per_kwh, time_limit_s=time_limit_s)


def plan_decision(schedule: Schedule, k: int) -> tuple[Mode, float, bool]:
    """Mode, power and curtail flag that make the simulator carry out step ``k`` of ``schedule``.

    IMPORT at the planned charge, EXPORT at the planned discharge, HOLD when both are below
    :data:`~dwars.policy.lp.POWER_TOL_KW`; ``curtail_pv`` where the plan curtails PV (beyond what the simulator
    curtails by itself at the export limit, see :attr:`Schedule.curtail_pv`).
    """
    charge, discharge = float(schedule.charge_kw[k]), float(schedule.discharge_kw[k])
    curtail = bool(schedule.curtail_pv[k])
    if charge > POWER_TOL_KW and charge >= discharge:
        return Mode.IMPORT, charge, curtail
    if discharge > POWER_TOL_KW:
        return Mode.EXPORT, discharge, curtail
    return Mode.HOLD, 0.0, curtail


class OracleController(Controller):
    """Plays back the perfect-foresight LP schedule of the scenario (see the module text).

    Parameters
    ----------
    home : the home.
    scenario : the actuals it plans on.
    pv_kw : actual PV per interval (default: the scenario's, modelled for the installation when needed).
    seed : unused (the oracle is deterministic).
    """

    name = "oracle"
    uses_actuals = True

    def __init__(self, home: Home, scenario: Scenario, pv_kw: np.ndarray | pd.Series | None = None,
                 seed: int | None = None) -> None:
        super().__init__(home, seed)
        self.scenario = scenario
        self._pv = None if pv_kw is None else np.asarray(pv_kw, dtype=float)
        self._problem: OracleProblem | None = None
        self._schedule: Schedule | None = None
        self._start_ns = int(scenario.index.as_unit("ns").asi8[0]) if len(scenario.frame) else 0
        self._step_ns = scenario.minutes * 60 * 10**9

    @property
    def problem(self) -> OracleProblem:
        if self._problem is None:
            self._problem = oracle_problem(self.home, self.scenario, self._pv)
        return self._problem

    @property
    def schedule(self) -> Schedule:
        """The plan (solved on first use)."""
        if self._schedule is None:
            self._schedule = solve_problem(self.home, self.problem)
        return self._schedule

    def objective(self) -> dict[str, Any]:
        """The LP's own figures: objective parts, slack, solve time and size (see :func:`oracle_objective`)."""
        s, p = self.schedule, self.problem
        out = s.summary()
        out["terminal_value_eur_per_kwh"] = p.terminal_value_eur_per_kwh
        out["deadlines"] = len(p.deadline_steps)
        step = pd.Timedelta(minutes=p.minutes)
        out["short_deadlines"] = [
            {"time": (p.times[0] + (k + 1) * step).isoformat(), "target_kwh": p.deadline_steps[j][1],
             "slack_kwh": slack}
            for j, k, slack in s.short_deadlines
        ]
        return out

    def _index(self, time: pd.Timestamp) -> int | None:
        ns = int(pd.Timestamp(time).as_unit("ns").value)
        k, rem = divmod(ns - self._start_ns, self._step_ns)
        if rem or not 0 <= k < len(self.scenario.frame):
            return None
        return int(k)

    def decide(self, state: State, forecasts: Forecasts) -> Decision:
        k = self._index(state.time)
        if k is None:
            return Decision(Mode.MSC, 0.0, f"oracle: {state.time} is outside the planned scenario; self-consumption")
        mode, power, curtail = plan_decision(self.schedule, k)
        what = {Mode.IMPORT: f"planned charge {power:.2f} kW", Mode.EXPORT: f"planned discharge {power:.2f} kW"}.get(
            mode, "planned hold")
        extra = ", PV curtailed" if curtail else ""
        return Decision(mode, power, f"oracle: {what}{extra} (perfect foresight)", curtail_pv=curtail)


def oracle_objective(home: Home, scenario: Scenario, pv_kw: np.ndarray | pd.Series | None = None) -> dict[str, Any]:
    """The oracle LP's own objective parts for ``scenario`` (EUR), with slack, bound, solve time and LP size.

    ``objective_eur`` = ``energy_cost_eur + wear_eur - final_energy_value_eur`` of the (physically realisable)
    plan; ``lower_bound_eur`` is the plain LP relaxation (see :mod:`dwars.policy.lp`).
    """
    return OracleController(home, scenario, pv_kw).objective()
