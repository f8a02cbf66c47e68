"""The plan the policy refines: the MPC's decision and planned SoC path as observation columns.

The RL policy does not replace the optimiser, it works on top of it (columns 34-45 of
:mod:`dwars.env.observation`): each interval the receding-horizon LP (:class:`~dwars.policy.mpc.MpcController`)
plans on the same forecasts the policy sees, and the policy chooses, knowing that plan, what to do. One
:class:`PlanAdvisor` serves the simulator (training), the evaluation and the Pi runtime, so the policy sees the
same plan everywhere.

The decision in the columns is the shield-aware MPC's (:class:`~dwars.policy.lookahead.ShieldAwareMpcController`,
observation version 4): where the safety shield would refuse the plan's step, the allowed action the plan values
most, so that following the plan never runs into the shield. On 2024 hourly data that repair alone is worth
2.7 EUR (examples/home.toml), 12.4 (east_west) and 8.6 (large_battery) a year against leaving it to the shield.
"""

from __future__ import annotations

import numpy as np

from dwars.env.modes import Decision
from dwars.env.observation import plan_features
from dwars.policy.base import Forecasts, Home, State
from dwars.policy.lookahead import ShieldAwareMpcController


class PlanAdvisor:
    """The MPC's decision for an interval and its observation columns.

    Parameters
    ----------
    home : the home.
    """

    def __init__(self, home: Home) -> None:
        self.home = home
        self.mpc = ShieldAwareMpcController(home, record_timing=False)  # millions of calls in training

    def advise(self, state: State, forecasts: Forecasts) -> tuple[Decision, np.ndarray]:
        """(the shield-aware MPC's decision, the plan columns (N_PLAN,) float32) for ``state`` and ``forecasts``."""
        decision = self.mpc.decide(state, forecasts)
        plan = self.mpc.last_plan
        battery_kw = float(plan.battery_kw[0]) if plan is not None else 0.0
        path = plan.energy_kwh if plan is not None else None
        columns = plan_features(int(decision.mode), decision.power_kw, decision.curtail_pv, battery_kw, path,
                                state.energy_kwh, self.home, state.minutes)
        return decision, columns
