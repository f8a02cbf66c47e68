"""The plan the policy refines: observation columns from the MPC, and the plan's exact power on its step."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dwars.config import Installation
from dwars.data.scenario import Scenario
from dwars.env.dispatch import simulate_interval
from dwars.env.forecast import Forecaster
from dwars.env.home_env import HomeEnergyEnv
from dwars.env.modes import (
    ACTION_FRACTION,
    ACTION_FRACTIONS,
    ACTIONS,
    FIRST_EXPORT_ACTION,
    FIRST_IMPORT_ACTION,
    N_ACTIONS,
    PLAN_SNAP_STEPS,
    Decision,
    Mode,
    action_power_kw,
    decision_to_action,
)
from dwars.env.observation import I_PLAN, N_PLAN, OBSERVATION_NAMES, PLAN_SOC_HOURS, build_observation
from dwars.policy.advisor import PlanAdvisor
from dwars.policy.base import Home, State
from dwars.policy.lookahead import ShieldAwareMpcController


@settings(max_examples=200, deadline=None)
@given(st.integers(0, N_ACTIONS - 1), st.sampled_from([Mode.IMPORT, Mode.EXPORT, Mode.MSC, Mode.HOLD]),
       st.floats(0.0, 1.0), st.floats(1.0, 10.0), st.floats(1.0, 10.0))
def test_action_power_is_the_plans_near_its_step_and_the_grid_elsewhere(action: int, plan_mode: Mode, share: float,
                                                                      charge_kw: float, discharge_kw: float) -> None:
    limit = charge_kw if plan_mode == Mode.IMPORT else discharge_kw
    plan = Decision(plan_mode, share * limit if plan_mode in (Mode.IMPORT, Mode.EXPORT) else 0.0)
    mode, fraction = ACTIONS[action]
    power = action_power_kw(action, charge_kw, discharge_kw, plan)
    grid = fraction * (charge_kw if mode == Mode.IMPORT else discharge_kw)
    near_plan = plan.mode == mode and abs(action - decision_to_action(plan, charge_kw, discharge_kw)) <= PLAN_SNAP_STEPS
    if mode in (Mode.MSC, Mode.HOLD):
        assert power == 0.0
    elif near_plan:
        assert power == pytest.approx(plan.power_kw)
        # The plan's power lies within PLAN_SNAP_STEPS + 1/2 steps of the level (plans below 5 % round up to 5 %).
        step_kw = ACTION_FRACTIONS[0] * limit
        assert abs(power - grid) <= (PLAN_SNAP_STEPS + 0.5) * step_kw + 1e-9 or plan.power_kw < step_kw
    else:
        assert power == pytest.approx(grid)
    assert action_power_kw(action, charge_kw, discharge_kw) == pytest.approx(grid if mode in (2, 3) else 0.0)


def test_plan_columns_describe_the_mpc_decision(week_60: Scenario, home_inst: Installation) -> None:
    """The columns carry the shield-aware MPC's decision (the plain MPC's, repaired where the shield refuses it)
    and the LP's own plan."""
    home = Home.from_installation(home_inst)
    forecaster = Forecaster(week_60, home)
    advisor, mpc = PlanAdvisor(home), ShieldAwareMpcController(home)
    b = home.battery
    modes_seen = set()
    for i in range(0, 140, 3):
        for energy in (b.reserve_kwh + 0.5, 0.5 * b.capacity_kwh, b.capacity_kwh - 0.5):
            state = State(week_60.index[i], 60, energy, 100 * energy / b.capacity_kwh)
            decision, columns = advisor.advise(state, forecaster.at(i))
            direct = mpc.decide(state, forecaster.at(i))
            assert (decision.mode, decision.power_kw) == (direct.mode, direct.power_kw)  # the expert, unchanged
            assert columns.shape == (N_PLAN,) and np.all(np.isfinite(columns))
            assert columns[:4].sum() == 1.0 and columns[int(decision.mode)] == 1.0
            plan = mpc.last_plan
            assert plan is not None
            path = plan.energy_kwh
            for j, hours in enumerate(PLAN_SOC_HOURS):
                step = min(hours, len(path)) - 1
                assert columns[7 + j] == pytest.approx(path[step] / b.capacity_kwh, abs=1e-6)
            assert -1.0 - 1e-6 <= columns[4] <= 1.0 + 1e-6 and 0.0 <= columns[5] <= 1.0 + 1e-6
            modes_seen.add(decision.mode)
            obs = build_observation(state, forecaster.at(i), home, columns)
            np.testing.assert_array_equal(obs[I_PLAN:I_PLAN + N_PLAN], columns)
            assert OBSERVATION_NAMES[I_PLAN + int(decision.mode)].startswith("plan_")
    assert len(modes_seen) >= 3  # a real week: the plan charges, discharges and follows the house
    assert mpc.repairs > 0  # and the shield would have refused some of the plain MPC's steps


def test_an_agent_on_the_plans_step_is_the_mpc(week_60: Scenario, home_inst: Installation) -> None:
    """In the env, always choosing the plan's step carries out the (shield-aware) MPC exactly (no 5 % rounding)."""
    env = HomeEnergyEnv(week_60, home_inst, episode_days=2, auto_curtail=False, shield_mask=False)
    obs, _ = env.reset(seed=0)
    data = env.data
    assert data is not None
    b = data.home.battery
    mpc = ShieldAwareMpcController(data.home)
    energy = env._energy
    off_grid = 0
    for _ in range(40):
        i = env._i
        state = State(data.scenario.index[i], data.minutes, energy, 100 * energy / b.capacity_kwh)
        want = mpc.decide(state, data.forecaster.at(i))
        action = int(np.argmax(obs[I_PLAN:I_PLAN + 4]))  # the plan's mode from the observation ...
        if action >= 2:  # ... and, for a power, the step its power rounds to
            action = decision_to_action(want, b.max_charge_kw, b.max_discharge_kw)
            step = action - (FIRST_IMPORT_ACTION if want.mode == Mode.IMPORT else FIRST_EXPORT_ACTION)
            limit = b.max_charge_kw if want.mode == Mode.IMPORT else b.max_discharge_kw
            off_grid += abs(want.power_kw - ACTION_FRACTION[action] * limit) > 1e-6
            assert step >= 0
        obs, _, _, truncated, info = env.step(action)
        r = simulate_interval(energy, int(want.mode), want.power_kw, data.pv_kw[i], data.load_kw[i],
                              data.import_price[i], data.export_price[i], data.dt_h, b, data.home.grid_limit_kw,
                              False)
        energy = float(r.energy_kwh)
        assert env._energy == pytest.approx(energy, abs=1e-9)
        assert info["charge_kw"] == pytest.approx(float(r.charge_kw), abs=1e-9)
        if truncated:
            break
    assert off_grid > 0  # the MPC planned powers between the 5 % steps, and they were carried out exactly
