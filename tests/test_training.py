"""Training: a short run on a tiny real scenario learns something measurable (seconds, on the CPU)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from sb3_contrib import MaskablePPO

from dwars.config import Installation
from dwars.data.scenario import Scenario
from dwars.env.home_env import HomeEnergyEnv
from dwars.training.train import ObsStats, default_hyperparameters, train


def small_hyper() -> dict:
    hyper = default_hyperparameters()
    hyper["env"].update(n_envs=4, episode_days=2)
    hyper["ppo"].update(n_steps=64, batch_size=128, net_arch=[64, 64], critic_warmup_steps=0)
    hyper["bc"].update(epochs=30, batch_size=64)
    return hyper


def episode_return(model: MaskablePPO, stats: ObsStats, env: HomeEnergyEnv, day: str) -> float:
    obs, _ = env.reset(seed=0, options={"start_day": day})
    total, done = 0.0, False
    while not done:
        action, _ = model.predict(stats.normalise(obs), action_masks=env.action_masks(), deterministic=True)
        obs, reward, _, done, _ = env.step(int(action))
        total += reward
    return total


def test_short_training_beats_the_untrained_policy(tmp_path: Path, june_15: Scenario, home_inst: Installation) -> None:
    scn = june_15.to_resolution(60)
    result = train([scn], [home_inst], tmp_path / "run", small_hyper(), total_timesteps=256)
    assert (tmp_path / "run" / "model.zip").exists() and (tmp_path / "run" / "obs_stats.npz").exists()
    bc = result.figures["bc"]["loss_per_epoch"]
    assert bc[-1] < 0.7 * bc[0]  # the oracle's actions were learned, not just memorised noise
    untrained = MaskablePPO("MlpPolicy", result.model.get_env(), seed=0, device="cpu",
                            policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [64, 64]}})
    env = HomeEnergyEnv(scn, home_inst, episode_days=2)
    trained_return = episode_return(result.model, result.stats, env, "2024-06-09")
    untrained_return = episode_return(untrained, result.stats, env, "2024-06-09")
    assert trained_return > untrained_return + 0.1, (trained_return, untrained_return)


def test_resume_continues_the_run(tmp_path: Path, june_15: Scenario, home_inst: Installation) -> None:
    scn = june_15.to_resolution(60)
    hyper = small_hyper()
    hyper["bc"]["enabled"] = False
    first = train([scn], [home_inst], tmp_path / "run", hyper, total_timesteps=256)
    again = train([scn], [home_inst], tmp_path / "run", hyper, total_timesteps=256, resume=True)
    assert again.model.num_timesteps >= first.model.num_timesteps + 256
    np.testing.assert_array_equal(again.stats.mean, first.stats.mean)


def test_dagger_labels_the_policys_own_states(tmp_path: Path, june_15: Scenario, home_inst: Installation) -> None:
    scn = june_15.to_resolution(60)
    hyper = small_hyper()
    hyper["bc"]["epochs"] = 2
    hyper["dagger"].update(iterations=1, states=120, epochs=1)
    result = train([scn], [home_inst], tmp_path / "run", hyper, total_timesteps=0)
    rounds = result.figures["dagger"]["rounds"]
    assert len(rounds) == 1 and rounds[0]["states"] == 120
    assert (tmp_path / "run" / "model_dagger.zip").exists()


def test_expert_charges_when_the_endpoint_demands_it(june_15: Scenario, home_inst: Installation) -> None:
    from dwars.env.home_env import EpisodeData
    from dwars.env.modes import ACTIONS, Mode
    from dwars.training.dagger import Expert

    scn = june_15.to_resolution(60)
    expert = Expert(EpisodeData(scn, home_inst, 0, {}))
    i = int(np.flatnonzero(scn.index.tz_convert("Europe/Amsterdam").hour == 15)[0])  # 15:00, endpoint 17:00 at 90 %
    mode, _ = ACTIONS[expert.action(i, home_inst.battery.reserve_kwh)]
    assert mode == Mode.IMPORT  # from the reserve, only charging now keeps the 90 % endpoint reachable


def test_critic_warmup_moves_the_value_function_not_the_policy(tmp_path: Path, june_15: Scenario,
                                                                home_inst: Installation) -> None:
    import torch

    scn = june_15.to_resolution(60)
    hyper = small_hyper()
    hyper["bc"]["epochs"] = 2
    hyper["ppo"]["critic_warmup_steps"] = 256
    result = train([scn], [home_inst], tmp_path / "run", hyper, total_timesteps=0)
    cloned = MaskablePPO.load(tmp_path / "run" / "model_bc.zip", device="cpu").policy
    warmed = result.model.policy
    for name in ("action_net", "mlp_extractor.policy_net"):  # the cloned policy is untouched ...
        for a, b in zip(cloned.get_submodule(name).parameters(), warmed.get_submodule(name).parameters(), strict=True):
            assert torch.equal(a, b), name
    moved = [not torch.equal(a, b) for a, b in zip(cloned.value_net.parameters(), warmed.value_net.parameters(),
                                                    strict=True)]
    assert any(moved)  # ... while the critic learned
    assert result.figures["critic_warmup"]["timesteps"] == 256


def test_plan_labels_teach_the_policy_to_follow_the_plan(tmp_path: Path, june_15: Scenario,
                                                         home_inst: Installation) -> None:
    """Behaviour cloning on the plan's steps (on the oracle's SoC path): on its own SoC path, which it never saw,
    the policy mostly chooses the plan's step."""
    import pytest

    from dwars.env.home_env import EpisodeData
    from dwars.training.train import oracle_demonstrations

    scn = june_15.to_resolution(60)
    data = EpisodeData(scn, home_inst, 0, {})
    with pytest.raises(ValueError, match="bc.labels = 'best'"):
        oracle_demonstrations(data, scn, labels="best")
    hyper = small_hyper()
    hyper["bc"].update(labels="plan", sample_share=1.0, epochs=60)
    result = train([scn], [home_inst], tmp_path / "run", hyper, total_timesteps=0)
    untrained = MaskablePPO("MlpPolicy", result.model.get_env(), seed=0, device="cpu",
                            policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [64, 64]}})
    env = HomeEnergyEnv(scn, home_inst, episode_days=2)
    trained_share = plan_share(result.model, result.stats, env, home_inst)
    untrained_share = plan_share(untrained, result.stats, env, home_inst)
    assert trained_share >= 0.5 and trained_share > untrained_share + 0.3, (trained_share, untrained_share)


def plan_share(model: MaskablePPO, stats: ObsStats, env: HomeEnergyEnv, inst: Installation) -> float:
    """Share of the steps of a 2-day episode on which ``model`` carries out the plan (its mode and exact kW)."""
    from dwars.env.modes import ACTIONS, action_power_kw
    from dwars.env.observation import I_PLAN, N_PLAN

    obs, _ = env.reset(seed=0, options={"start_day": "2024-06-10"})
    b = inst.battery
    agree, done, steps = 0, False, 0
    while not done:
        plan = env._advice
        assert plan is not None and obs[I_PLAN:I_PLAN + N_PLAN].any()
        action, _ = model.predict(stats.normalise(obs), deterministic=True)
        mode = ACTIONS[int(action)][0]
        agree += mode == plan.mode and action_power_kw(int(action), b.max_charge_kw, b.max_discharge_kw,
                                                       plan) == plan.power_kw
        obs, _, _, done, _ = env.step(int(action))
        steps += 1
    return agree / steps


def test_hindsight_labels_keep_the_oracle_only_where_it_clearly_paid(june_15: Scenario,
                                                                     home_inst: Installation) -> None:
    from dwars.env.home_env import EpisodeData
    from dwars.env.modes import decision_to_action
    from dwars.training.train import HINDSIGHT_MARGIN_EUR, _hindsight_cost, oracle_demonstrations

    scn = june_15.to_resolution(60)
    data = EpisodeData(scn, home_inst, 0, {})
    _, oracle = oracle_demonstrations(data, scn, False, labels="oracle")
    _, plan = oracle_demonstrations(data, scn, False, labels="plan")
    _, hindsight = oracle_demonstrations(data, scn, False, labels="hindsight")
    assert np.all((hindsight == plan) | (hindsight == oracle))
    assert np.any(oracle != plan)  # the oracle departs from the plan in these sunny days with negative prices
    from dwars.policy.oracle import OracleController

    start = np.concatenate([[home_inst.battery.initial_energy_kwh],
                            OracleController(data.home, scn, pv_kw=data.pv_kw).schedule.energy_kwh[:-1]])
    b = home_inst.battery
    kept = 0
    for i in np.flatnonzero(oracle != plan):
        advice = data.advise(int(i), float(start[i]))[0]
        assert decision_to_action(advice, b.max_charge_kw, b.max_discharge_kw) == plan[i]
        regret = (_hindsight_cost(data, int(i), float(start[i]), int(plan[i]), advice)
                  - _hindsight_cost(data, int(i), float(start[i]), int(oracle[i]), advice))
        assert (hindsight[i] == oracle[i]) == (regret > HINDSIGHT_MARGIN_EUR), (i, regret)
        kept += hindsight[i] == oracle[i]
    assert 0 < kept < np.sum(oracle != plan)  # some departures clearly paid in hindsight, most did not


def test_an_unknown_shield_setting_is_a_clear_error(tmp_path: Path, june_15: Scenario,
                                                    home_inst: Installation) -> None:
    import pytest

    hyper = small_hyper()
    hyper["env"]["shield"] = "both"
    with pytest.raises(ValueError, match="env.shield = 'both'"):
        train([june_15.to_resolution(60)], [home_inst], tmp_path / "run", hyper, total_timesteps=0)


def _onnx_logits(path: Path, obs: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: obs.astype(np.float32)})[0]


def test_an_observation_variant_hides_its_columns_from_the_exported_policy(tmp_path: Path, june_15: Scenario,
                                                                           home_inst: Installation) -> None:
    """``[env] observation = "no_plan"``: the exported policy (same 226 inputs) gives the same logits whatever the
    plan columns hold; the full observation's policy does not."""
    from dwars.env.observation import OBSERVATION_NAMES
    from dwars.training.export import export_run
    from dwars.training.train import hidden_columns

    scn = june_15.to_resolution(60)
    plan = hidden_columns("no_plan")
    assert [OBSERVATION_NAMES[i] for i in plan] == [n for n in OBSERVATION_NAMES if n.startswith("plan_")]
    env = HomeEnergyEnv([scn], [home_inst], episode_days=2)
    obs, _ = env.reset(seed=0, options={"start_day": "2024-06-09"})
    rng = np.random.default_rng(1)
    changed = np.repeat(obs[None], 16, axis=0)
    changed[:, plan] = rng.uniform(0, 1, size=(16, len(plan)))
    logits = {}
    for variant in ("no_plan", "full"):
        hyper = small_hyper()
        hyper["env"]["observation"] = variant
        hyper["bc"]["epochs"] = 3
        result = train([scn], [home_inst], tmp_path / variant, hyper, total_timesteps=0)
        assert result.figures["observation"] == variant
        export_run(tmp_path / variant, tmp_path / f"{variant}.onnx", "model.zip")
        logits[variant] = _onnx_logits(tmp_path / f"{variant}.onnx", np.vstack([obs[None], changed]))
    hidden = logits["no_plan"]
    assert np.abs(hidden[1:] - hidden[0]).max() < 1e-5
    assert np.abs(logits["full"][1:] - logits["full"][0]).max() > 1e-3


def test_validation_reports_come_after_cloning_and_every_chunk_and_can_stop_training(
        tmp_path: Path, june_15: Scenario, home_inst: Installation) -> None:
    scn = june_15.to_resolution(60)
    hyper = small_hyper()
    hyper["bc"]["epochs"] = 2
    seen: list[int] = []

    def validate(model: MaskablePPO, stats: ObsStats, timesteps: int) -> bool:
        seen.append(timesteps)
        assert model.num_timesteps == timesteps and stats.mean.shape == (226,)
        return len(seen) < 3  # the third report stops training

    result = train([scn], [home_inst], tmp_path / "run", hyper, total_timesteps=2048, validate=validate,
                   validate_every=512)
    assert seen[0] == 0 and len(seen) == 3
    assert all(b - a >= 512 for a, b in itertools.pairwise(seen[1:])) and seen[1] >= 512
    assert result.figures["ppo"]["timesteps"] == seen[-1] < 2048
