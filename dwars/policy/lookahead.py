"""One step of lookahead on the LP's value: what each of the 42 actions costs now plus what the plan costs after.

For an interval with battery energy ``e`` the value of action ``a`` is

    Q(a) = cost of this interval under a  +  V(energy a leaves)

where ``V(e')`` is the LP's optimal cost (energy cost + wear + goal slack - value of the energy left at the
horizon end) over the following intervals from energy ``e'``. ``V`` is convex and piecewise linear in ``e'`` (an
LP's optimal value as a function of a right-hand side), so it is solved on a grid of energies and interpolated:
:data:`GRID_POINTS` LP solves over the range the actions can reach (and one at the reserve when inside: below it
the LP's floor is the start energy, so ``V`` is not convex across it) serve all 42 actions.

Two users: :class:`ShieldAwareMpcController` (on the forecasts: where the safety shield would refuse the plan's
step, the allowed action the plan itself values most, instead of the shield's generic repair) and the training
labels of :mod:`dwars.training.advantage` (on the actuals, in hindsight).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dwars.env.battery import Battery
from dwars.env.dispatch import simulate_interval
from dwars.env.modes import ACTION_MODES, N_ACTIONS, Decision, Mode, action_power_kw, plain_words
from dwars.policy.base import Forecasts, Home, State
from dwars.policy.lp import LpError, solve_dispatch
from dwars.policy.mpc import MpcController

#: Battery energies at which V is solved per decision: evenly spaced over the energies the 42 actions can leave
#: (a single interval moves the battery by at most its power times the interval), plus the reserve when inside.
GRID_POINTS = 5


def interval_outcomes(energy_kwh: float, pv_kw: float, load_kw: float, import_price: float, export_price: float,
                      dt_h: float, battery: Battery, grid_limit_kw: float,
                      plan: Decision | None) -> tuple[np.ndarray, np.ndarray]:
    """(cost now in EUR, energy left in kWh) of each of the 42 actions over one interval: simulated with the plan's
    exact power near its step and PV export curtailed at a negative export price, as the env does."""
    power = np.array([action_power_kw(a, battery.max_charge_kw, battery.max_discharge_kw, plan)
                      for a in range(N_ACTIONS)])
    r = simulate_interval(np.full(N_ACTIONS, energy_kwh), ACTION_MODES.astype(int), power, pv_kw, load_kw,
                          import_price, export_price, dt_h, battery, grid_limit_kw, bool(export_price < 0))
    now = np.asarray(r.energy_cost_eur, dtype=float) + np.asarray(r.wear_eur, dtype=float)
    return now, np.asarray(r.energy_kwh, dtype=float)


def energy_grid(energies_after_kwh: np.ndarray, battery: Battery, points: int = GRID_POINTS) -> np.ndarray:
    """Energies (kWh) at which :func:`continuation_values` are solved: ``points`` evenly spaced over the range
    the actions leave, plus the reserve when it lies inside (V bends there)."""
    lo, hi = float(np.min(energies_after_kwh)), float(np.max(energies_after_kwh))
    if hi - lo <= 1e-9:
        return np.array([lo])
    grid = np.linspace(lo, hi, points)
    if lo < battery.reserve_kwh < hi:
        grid = np.unique(np.append(grid, battery.reserve_kwh))
    return grid


def continuation_values(energies_kwh: Sequence[float] | np.ndarray, pv_kw: np.ndarray, load_kw: np.ndarray,
                        import_price: np.ndarray, export_price: np.ndarray, dt_h: float, battery: Battery,
                        grid_limit_kw: float, goals: list[tuple[int, float]], terminal_value_eur_per_kwh: float,
                        time_limit_s: float | None = 5.0) -> np.ndarray:
    """V (EUR) per start energy: the LP's cost over the given intervals, minus the value of the energy left at
    the end; NaN where the LP fails, zeros when fewer than two intervals remain."""
    energies = np.asarray(energies_kwh, dtype=float)
    if len(pv_kw) < 2:
        return np.zeros(len(energies))
    out = np.full(len(energies), np.nan)
    v = terminal_value_eur_per_kwh
    for j, e in enumerate(energies):
        try:
            s = solve_dispatch(float(e), pv_kw, load_kw, import_price, export_price, dt_h, battery, grid_limit_kw,
                               goals, v, time_limit_s=time_limit_s)
        except (LpError, ValueError):
            continue
        out[j] = s.energy_cost_eur + s.wear_eur + s.slack_penalty_eur - v * float(s.energy_kwh[-1])
    return out


def action_values(now_eur: np.ndarray, energies_after_kwh: np.ndarray, grid_kwh: np.ndarray,
                  values: np.ndarray) -> np.ndarray:
    """Q (EUR) per action: its cost now plus V (``values`` on ``grid_kwh``) interpolated at the energy it leaves.
    Failed grid points are left out; without any, Q is the cost now alone."""
    ok = np.isfinite(values)
    if not ok.any():
        return np.asarray(now_eur, dtype=float)
    return now_eur + np.interp(energies_after_kwh, grid_kwh[ok], values[ok])


class ShieldAwareMpcController(MpcController):
    """The MPC that knows the safety shield (name ``mpc_shield``).

    It proposes the plan's step where the shield lets it through. Where the shield would change it (a trade
    below the spread, an export that would endanger a goal, ...), it proposes the allowed action with the
    lowest :func:`action_values` on the same forecasts: this interval plus the plan's cost from where the
    action leaves the battery. The plain MPC leaves that repair to the shield, which knows only its rules, not
    the plan's economics (2024, examples/home.toml hourly: the MPC costs 55.04 EUR through the shield, this
    controller 52.39; see the README).

    Its decision is the plan in the policy's observation (:class:`~dwars.policy.advisor.PlanAdvisor`, observation
    version 4), and :meth:`repair` labels ``[bc] labels = "shield_aware"``.
    """

    name = "mpc_shield"

    def __init__(self, home: Home, seed: int | None = None, **options: object) -> None:
        from dwars.policy.shield import Shield

        super().__init__(home, seed, **options)  # type: ignore[arg-type]
        self.shield = Shield(home)
        self.repairs = 0

    def reset(self) -> None:
        super().reset()
        self.repairs = 0

    def decide(self, state: State, forecasts: Forecasts) -> Decision:
        return self.repair(state, forecasts, super().decide(state, forecasts))

    def repair(self, state: State, forecasts: Forecasts, plan: Decision) -> Decision:
        """``plan`` (the MPC's decision for this interval) where the shield lets it through, else the allowed
        action with the lowest value on ``forecasts`` (``plan`` again when the horizon is too short to judge or
        no allowed action has a finite value)."""
        if not self.shield.check(state, forecasts, plan).interventions:
            return plan
        home, b = self.home, self.home.battery
        pv, load, pi, pe, all_goals = self.lp_inputs(forecasts, state.minutes)
        if len(pi) < 3:
            return plan
        # Deadlines at the end of interval k >= 1 belong to the plan after this interval (index k - 1 there);
        # one due at the end of this interval is the shield's to keep.
        goals = [(k - 1, kwh) for k, kwh in all_goals if k >= 1]
        now, after = interval_outcomes(state.energy_kwh, pv[0], load[0], pi[0], pe[0], state.dt_h, b,
                                       home.grid_limit_kw, plan)
        grid = energy_grid(after, b)
        later = continuation_values(grid, pv[1:], load[1:], pi[1:], pe[1:], state.dt_h, b, home.grid_limit_kw,
                                    goals, self.terminal_value_for(pi), self.time_limit_s)
        q = action_values(now, after, grid, later)
        allowed = self.shield.mask(state, forecasts)
        # Steps next to the plan's carry out the plan's exact power (action_power_kw), which the shield refuses:
        # the mask judged the step's own power.
        snapped = np.array([action_power_kw(a, b.max_charge_kw, b.max_discharge_kw, plan)
                            != action_power_kw(a, b.max_charge_kw, b.max_discharge_kw) for a in range(N_ACTIONS)])
        q[~allowed | snapped] = np.inf
        a = int(np.argmin(q))
        if not np.isfinite(q[a]):
            return plan
        self.repairs += 1
        mode = Mode(int(ACTION_MODES[a]))
        power = action_power_kw(a, b.max_charge_kw, b.max_discharge_kw, plan)
        return Decision(mode, power, f"mpc: {plain_words(mode, power)}, the best the safety rules allow (the plan: "
                                     f"{plan.reason.removeprefix('mpc: ')})", curtail_pv=bool(pe[0] < 0))
