"""Exporting a trained MaskablePPO policy to ONNX: parity with torch, the runtime controller, the metadata
contract, and a runtime that never imports the training stack.

The torch tests need the train extra, which `make test` installs: a missing package fails, never skips.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from dwars.config import Installation
from dwars.data.scenario import Scenario
from dwars.env.forecast import Forecaster
from dwars.env.modes import ACTION_SPACE_VERSION, N_ACTIONS, action_to_decision
from dwars.env.observation import N_OBS, OBS_VERSION, build_observation
from dwars.policy.base import Home, State
from dwars.policy.rl import OnnxPolicyController, PolicyError

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-5
TRAINING_PACKAGES = ("torch", "stable_baselines3", "sb3_contrib", "gymnasium", "ray")  # ray: dwars[scale], offline only
RUNTIME_IMPORTS = ("dwars.policy.rl, dwars.policy.shield, dwars.policy.rule, dwars.policy.mpc, dwars.env.forecast, "
                   "dwars.env.dispatch, dwars.policy.lookahead, dwars.runtime.clock, dwars.runtime.driver, "
                   "dwars.runtime.sim_inverter, dwars.runtime.loop, dwars.runtime.simulate, dwars.runtime.prices, "
                   "dwars.runtime.app, dwars.runtime.live, dwars.runtime.live_inputs, dwars.runtime.weather_feed, "
                   "dwars.runtime.history, dwars.runtime.meter, dwars.runtime.homeassistant, dwars.runtime.regmap, "
                   "dwars.runtime.sim_process, dwars.runtime.ledger, dwars.runtime.status, dwars.cli, "
                   "dwars.runtime.charger, dwars.runtime.chargermap, dwars.runtime.sim_charger, dwars.runtime.switch, "
                   "dwars.runtime.meter_log, dwars.runtime.bill, dwars.runtime.flex, dwars.env.flex, dwars.env.ev, "
                   "dwars.env.boiler, dwars.env.connection")


@pytest.fixture(scope="module")
def home(home_inst: Installation) -> Home:
    return Home.from_installation(home_inst)


@pytest.fixture(scope="module")
def trained(week_60: Scenario, home_inst: Installation) -> tuple[Any, Any]:
    """(env, model): a small real MaskablePPO, trained for 256 steps so the weights are not at their init."""
    import sb3_contrib  # the train extra; make test installs it, so a missing package fails loudly

    from dwars.env.home_env import HomeEnergyEnv

    env = HomeEnergyEnv(week_60, home_inst, episode_days=2)
    model = sb3_contrib.MaskablePPO("MlpPolicy", env, seed=0, n_steps=128, batch_size=64, n_epochs=2,
                                    policy_kwargs={"net_arch": [64, 64]}, device="cpu")
    model.learn(total_timesteps=256)
    return env, model


@pytest.fixture(scope="module")
def real_obs(trained: tuple[Any, Any]) -> np.ndarray:
    """500 real observations from stepping the env with random allowed actions."""
    env, _ = trained
    rng = np.random.default_rng(1)
    obs, _ = env.reset(seed=1)
    rows = [obs]
    while len(rows) < 500:
        obs, _, terminated, truncated, _ = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        rows.append(obs)
        if terminated or truncated:
            rows.append(env.reset()[0])
    return np.asarray(rows[:500], dtype=np.float32)


@pytest.fixture(scope="module")
def stats(real_obs: np.ndarray) -> dict[str, Any]:
    """Synthetic VecNormalize statistics: random mean near the data, random positive variance over five decades
    (so that clipping at ±clip_obs is exercised too)."""
    rng = np.random.default_rng(2)
    return {"obs_mean": real_obs.mean(axis=0) + rng.normal(0.0, 0.2, N_OBS),
            "obs_var": 10.0 ** rng.uniform(-4.0, 1.0, N_OBS), "clip_obs": 10.0}


@pytest.fixture(scope="module")
def samples(real_obs: np.ndarray) -> np.ndarray:
    """10 000 observations: real ones plus noise (relative and absolute)."""
    rng = np.random.default_rng(3)
    picked = real_obs[rng.integers(0, len(real_obs), 10_000)]
    noise = rng.normal(0.0, 1.0, picked.shape) * (0.05 * np.abs(picked) + 0.02)
    return (picked + noise).astype(np.float32)


@pytest.fixture(scope="module")
def exported(trained: tuple[Any, Any], stats: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dwars.training.export import export_policy

    path = tmp_path_factory.mktemp("export") / "policy.onnx"
    return export_policy(trained[1], path, **stats, metadata={"training_steps": 256, "seed": "0"})


def test_onnx_matches_torch_over_10000_observations(trained: tuple[Any, Any], exported: Path, samples: np.ndarray,
                                                     stats: dict[str, Any]) -> None:
    from dwars.training.export import parity

    result = parity(trained[1], exported, samples, **stats)
    assert result["n"] == 10_000
    assert result["max_abs_logit_diff"] < TOLERANCE, result
    assert result["max_abs_logprob_diff"] < TOLERANCE, result
    assert result["action_agreement"] == 1.0 and result["n_action_mismatch"] == 0, result
    assert 0.0 < result["share_clipped"] < 0.5, result  # the in-graph clip is exercised, not everything clipped


def test_export_without_statistics_is_the_raw_policy(trained: tuple[Any, Any], samples: np.ndarray,
                                                     tmp_path: Path) -> None:
    from dwars.training.export import export_policy, parity

    path = export_policy(trained[1], tmp_path / "raw.onnx")
    ops = {node.op_type for node in onnx.load(path).graph.node}
    assert not ops & {"Sub", "Div", "Clip"}, ops  # no normalisation in the graph
    result = parity(trained[1], path, samples[:2000])
    assert result["max_abs_logit_diff"] < TOLERANCE and result["action_agreement"] == 1.0, result


def test_file_carries_the_contract(exported: Path) -> None:
    model = onnx.load(exported)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["obs_version"] == str(OBS_VERSION)
    assert meta["action_space_version"] == str(ACTION_SPACE_VERSION)
    assert meta["n_obs"] == str(N_OBS) and meta["n_actions"] == str(N_ACTIONS)
    assert meta["obs_normalization"] == "vecnormalize" and float(meta["clip_obs"]) == 10.0
    assert meta["training_steps"] == "256" and meta["seed"] == "0"
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "obs" and out.name == "logits"
    in_dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    assert isinstance(in_dims[0], str) and in_dims[1] == N_OBS  # dynamic batch
    assert isinstance(out_dims[0], str) and out_dims[1] == N_ACTIONS


def test_controller_decides_as_torch_predicts(trained: tuple[Any, Any], exported: Path, stats: dict[str, Any],
                                              week_60: Scenario, home: Home) -> None:
    import torch

    from dwars.env.modes import action_power_kw
    from dwars.policy.advisor import PlanAdvisor
    from dwars.policy.rl import decode_action
    from dwars.training.export import normalize_obs, parity

    model = trained[1]
    controller = OnnxPolicyController(home, policy_path=exported)
    forecaster = Forecaster(week_60, home)
    b = home.battery
    observations, seen = [], set()
    for i in range(0, len(week_60.index) - 40, 5):
        for share in (0.1, 0.5, 0.95):
            energy = b.reserve_kwh + share * (b.capacity_kwh - b.reserve_kwh)
            state = State(week_60.index[i], week_60.minutes, energy, 100.0 * energy / b.capacity_kwh)
            forecasts = forecaster.at(i)
            decision = controller.decide(state, forecasts)
            plan, columns = PlanAdvisor(home).advise(state, forecasts)
            obs = build_observation(state, forecasts, home, columns)
            with torch.no_grad():  # torch's log-probabilities, decoded as the controller decodes
                tensor = model.policy.obs_to_tensor(normalize_obs(obs, **stats))[0]
                logprobs = model.policy.get_distribution(tensor).distribution.logits.numpy()[0]
            action = decode_action(logprobs)
            want = action_to_decision(action, b.max_charge_kw, b.max_discharge_kw)
            power = action_power_kw(action, b.max_charge_kw, b.max_discharge_kw, plan)  # the plan's kW on its step
            assert (decision.mode, decision.power_kw) == (want.mode, power), (i, share, action)
            observations.append(obs)
            seen.add(action)
    result = parity(model, exported, np.asarray(observations), **stats)
    assert result["max_abs_logit_diff"] < TOLERANCE and result["action_agreement"] == 1.0, result
    assert len(seen) > 1  # the comparison is not trivially one action everywhere


def test_other_observation_version_is_refused(exported: Path, home: Home, tmp_path: Path) -> None:
    model = onnx.load(exported)
    for prop in model.metadata_props:
        if prop.key == "obs_version":
            prop.value = str(OBS_VERSION + 1)
    onnx.save(model, tmp_path / "future.onnx")
    with pytest.raises(PolicyError, match=f"obs_version = {OBS_VERSION + 1}, this dwars needs {OBS_VERSION}"):
        OnnxPolicyController(home, policy_path=tmp_path / "future.onnx")


def test_bad_arguments_are_refused(trained: tuple[Any, Any], tmp_path: Path) -> None:
    from dwars.training.export import export_policy

    model = trained[1]
    with pytest.raises(ValueError, match="written by export_policy itself"):
        export_policy(model, tmp_path / "p.onnx", metadata={"obs_version": "0"})
    with pytest.raises(ValueError, match="both obs_mean and obs_var"):
        export_policy(model, tmp_path / "p.onnx", obs_mean=np.zeros(N_OBS))
    with pytest.raises(ValueError, match=f"{N_OBS} values"):
        export_policy(model, tmp_path / "p.onnx", obs_mean=np.zeros(3), obs_var=np.ones(3))
    with pytest.raises(ValueError, match=">= 0"):
        export_policy(model, tmp_path / "p.onnx", obs_mean=np.zeros(N_OBS), obs_var=-np.ones(N_OBS))
    assert not (tmp_path / "p.onnx").exists()


def runtime_training_imports() -> list[str]:
    """Training packages loaded by importing the runtime modules in a fresh interpreter."""
    code = (f"import sys; import {RUNTIME_IMPORTS}; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {TRAINING_PACKAGES!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=True)
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


def test_runtime_does_not_import_training_dependencies() -> None:
    # The Pi installs dwars[runtime] only: no torch, stable-baselines3, sb3-contrib, gymnasium or ray.
    assert runtime_training_imports() == []
