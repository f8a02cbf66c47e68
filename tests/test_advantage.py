"""Advantage labels: hindsight costs of every action from real LP solves, and a policy fitted to them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dwars.config import Installation
from dwars.data.scenario import Scenario
from dwars.env.dispatch import simulate_interval
from dwars.env.home_env import EpisodeData
from dwars.env.modes import ACTION_MODES, ACTIONS, N_ACTIONS, Mode, action_power_kw, decision_to_action
from dwars.policy.lookahead import GRID_POINTS
from dwars.training.advantage import (
    ADVANTAGE_CLIP_EUR,
    ADVANTAGE_UNIT_EUR,
    action_costs,
    advantage_demonstrations,
    continuation_costs,
    logit_targets,
)


@pytest.fixture(scope="module")
def data(june_15: Scenario, home_inst: Installation) -> EpisodeData:
    return EpisodeData(june_15.to_resolution(60), home_inst, 0, {})


def evening(data: EpisodeData, day: int = 3) -> int:
    """Index of 18:00 local on the ``day``-th day of the scenario (the evening peak lies ahead)."""
    local = data.scenario.index.tz_convert("Europe/Amsterdam")
    return int(np.flatnonzero(local.hour == 18)[day])


def test_the_continuation_cost_is_convex_and_values_energy(data: EpisodeData) -> None:
    b = data.home.battery
    # From the reserve up (below it the LP's floor is the start energy itself, a different LP per start).
    grid = np.linspace(b.reserve_kwh, b.capacity_kwh, GRID_POINTS)
    cost = continuation_costs(data, evening(data), grid)
    assert np.all(np.isfinite(cost))
    assert np.all(np.diff(cost, 2) >= -1e-6)  # an LP's optimal value is convex in its right-hand side
    assert cost[0] > cost[-1] + 0.1  # a full battery before the evening peak saves money


def test_interpolated_action_costs_stay_close_to_exact_solves(data: EpisodeData) -> None:
    i, e = evening(data), 5.0
    plan, _ = data.advise(i, e)
    q = action_costs(data, i, e, plan)
    b = data.home.battery
    for action in (0, 1, ACTIONS.index((Mode.IMPORT, 0.35)), ACTIONS.index((Mode.EXPORT, 0.8))):
        r = simulate_interval(e, int(ACTION_MODES[action]), action_power_kw(action, b.max_charge_kw,
                              b.max_discharge_kw, plan), data.pv_kw[i], data.load_kw[i], data.import_price[i],
                              data.export_price[i], data.dt_h, b, data.home.grid_limit_kw, False)
        exact = float(r.energy_cost_eur + r.wear_eur) + continuation_costs(data, i + 1, [float(r.energy_kwh)])[0]
        # A chord of a convex function lies above it: interpolation never flatters an action, and the grid is
        # fine enough that it overstates by less than a euro-cent.
        assert exact - 1e-9 <= q[action] <= exact + 0.01, (action, q[action], exact)


def test_targets_put_the_plan_at_zero_and_refuse_what_the_shield_refuses(data: EpisodeData) -> None:
    b = data.home.battery
    start = np.full(len(data.obs), 5.0)
    margin = 0.004
    obs, advantages, planned_actions = advantage_demonstrations(data, start, share=0.1, seed=3)
    targets = logit_targets(advantages, planned_actions, margin)
    assert targets.shape == (len(obs), N_ACTIONS) and np.all(np.isfinite(targets))
    assert np.all(targets <= ADVANTAGE_CLIP_EUR / ADVANTAGE_UNIT_EUR + 1e-6)
    rng = np.random.default_rng(3)
    rows = np.sort(rng.choice(len(data.obs), size=len(obs), replace=False))
    for j, i in enumerate(rows[:12]):
        plan, _ = data.advise(int(i), 5.0)
        planned = decision_to_action(plan, b.max_charge_kw, b.max_discharge_kw)
        assert planned_actions[j] == planned
        allowed = data.shield.mask(data.state(int(i), 5.0), data.forecaster.at(int(i)))
        assert targets[j, planned] == 0.0 or not allowed[planned]
        refused = -ADVANTAGE_CLIP_EUR / ADVANTAGE_UNIT_EUR
        np.testing.assert_allclose(targets[j, ~allowed], refused)
        # The other allowed actions had to pay the margin: none beats the plan unless it saved more than that.
        q = action_costs(data, int(i), 5.0, plan)
        beaten = allowed & (q < q[planned] - margin)
        assert np.all(targets[j, beaten] > 0) and np.all(targets[j, allowed & ~beaten] <= 1e-6)


def test_a_policy_fitted_to_advantages_prefers_the_cheaper_actions(tmp_path: Path, june_15: Scenario,
                                                                   home_inst: Installation) -> None:
    import torch
    from sb3_contrib import MaskablePPO

    from dwars.training.advantage import _raw_logits
    from dwars.training.train import default_hyperparameters, train

    scn = june_15.to_resolution(60)
    hyper = default_hyperparameters()
    hyper["env"].update(n_envs=4, episode_days=2)
    hyper["ppo"].update(n_steps=64, batch_size=128, net_arch=[64, 64], critic_warmup_steps=0)
    hyper["bc"].update(labels="advantage", sample_share=0.5, epochs=40, batch_size=64, workers=1,
                       advantage_margin_eur=0.002, random_soc_share=0.5)
    result = train([scn], [home_inst], tmp_path / "run", hyper, total_timesteps=0)
    assert result.figures["decoding"] == "argmax"
    losses = result.figures["bc"]["loss_per_epoch"]
    assert losses["holdout"][-1] < 0.8 * losses["holdout"][0]  # learned beyond the rows it saw
    # On fresh states (another seed), the fitted policy's choice costs less in hindsight than an untrained one's.
    data = EpisodeData(scn, home_inst, 0, {})
    obs, advantages, planned = advantage_demonstrations(data, np.full(len(data.obs), 6.0), share=0.3, seed=99)
    targets = logit_targets(advantages, planned, 0.002)
    x = torch.as_tensor(result.stats.normalise(obs))
    untrained = MaskablePPO("MlpPolicy", result.model.get_env(), seed=0, device="cpu",
                            policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [64, 64]}})
    with torch.no_grad():
        fitted = _raw_logits(result.model.policy, x).numpy().argmax(axis=1)
        random = _raw_logits(untrained.policy, x).numpy().argmax(axis=1)
    rows = np.arange(len(obs))
    regret_fitted = float((targets.max(axis=1) - targets[rows, fitted]).mean())
    regret_random = float((targets.max(axis=1) - targets[rows, random]).mean())
    assert regret_fitted < 0.5 * regret_random, (regret_fitted, regret_random)
    # `dwars export` writes that the model is decoded by argmax, and the controller reads it.
    from dwars.cli import main
    from dwars.policy.base import Home
    from dwars.policy.rl import OnnxPolicyController

    assert main(["export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "p.onnx")]) == 0
    assert OnnxPolicyController(Home.from_installation(home_inst), policy_path=tmp_path / "p.onnx").decoding == "argmax"
