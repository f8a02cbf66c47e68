"""The ONNX policy controller: a real onnxruntime session, and clear errors for wrong or broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from dwars.config import Installation
from dwars.data.scenario import Scenario
from dwars.env.forecast import Forecaster
from dwars.env.modes import ACTION_SPACE_VERSION, ACTIONS, N_ACTIONS, Mode
from dwars.env.observation import I_SOC, N_OBS, OBS_VERSION, build_observation
from dwars.policy.base import Home, State
from dwars.policy.rl import OnnxPolicyController, PolicyError


def linear_policy(path: Path, weights: np.ndarray, bias: np.ndarray, obs_version: int = OBS_VERSION,
                  n_obs: int = N_OBS, action_space_version: int = ACTION_SPACE_VERSION,
                  extra: dict[str, str] | None = None) -> Path:
    """A tiny real ONNX model: logits = obs @ W + b, with the metadata dwars checks."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["obs", "W"], ["z"]), helper.make_node("Add", ["z", "b"], ["logits"])],
        "linear_policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", n_obs])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", N_ACTIONS])],
        [numpy_helper.from_array(weights.astype(np.float32), "W"),
         numpy_helper.from_array(bias.astype(np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    meta = {"obs_version": str(obs_version), "action_space_version": str(action_space_version), **(extra or {})}
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def home(home_inst: Installation) -> Home:
    return Home.from_installation(home_inst)


def test_policy_acts_on_the_observation(tmp_path: Path, home: Home, week_60: Scenario) -> None:
    # Logit of IMPORT 100 % grows as the battery empties, logit of EXPORT 100 % as it fills: a readable policy.
    weights = np.zeros((N_OBS, N_ACTIONS))
    import_full, export_full = ACTIONS.index((Mode.IMPORT, 1.0)), ACTIONS.index((Mode.EXPORT, 1.0))
    weights[I_SOC, import_full], weights[I_SOC, export_full] = -10.0, 10.0
    bias = np.zeros(N_ACTIONS)
    bias[import_full], bias[export_full], bias[0] = 5.0, -5.0, 0.5
    controller_path = linear_policy(tmp_path / "p.onnx", weights, bias)
    controller = OnnxPolicyController(home, policy_path=controller_path)
    forecasts = Forecaster(week_60, home).at(10)
    from dwars.env.modes import action_power_kw, decision_to_action
    from dwars.policy.advisor import PlanAdvisor
    from dwars.policy.rl import decode_action

    low_state, high_state = State(week_60.index[10], 60, 2.5, 25.0), State(week_60.index[10], 60, 9.5, 95.0)
    low = controller.decide(low_state, forecasts)
    low_plan = PlanAdvisor(home).advise(low_state, forecasts)[0]  # the plan's kW when the policy is near its step
    b = home.battery
    assert (low.mode, low.power_kw) == (Mode.IMPORT, action_power_kw(import_full, b.max_charge_kw,
                                                                     b.max_discharge_kw, low_plan))
    high_logits = controller.logits(build_observation(high_state, forecasts, home))[0]
    assert ACTIONS[decode_action(high_logits)] == (Mode.EXPORT, 1.0)  # what the policy wants at 95 % ...
    high = controller.decide(high_state, forecasts)  # ... is what it proposes; the shield judges it afterwards
    assert (high.mode == Mode.EXPORT and "instead of the plan" in high.reason) or "as planned" in high.reason
    masked = OnnxPolicyController(home, policy_path=controller_path, mask=True)
    allowed = masked.shield.mask(high_state, forecasts)
    high_masked = masked.decide(high_state, forecasts)  # with mask=True: the best action the shield allows
    assert ACTIONS[decision_to_action(high_masked, b.max_charge_kw, b.max_discharge_kw)][0] == \
        ACTIONS[decode_action(high_logits, allowed)][0]
    assert low.reason and high.reason
    # The session's logits are the linear map of the very observation dwars builds.
    obs = build_observation(State(week_60.index[10], 60, 2.5, 25.0), forecasts, home)
    np.testing.assert_allclose(controller.logits(obs)[0], obs @ weights + bias, rtol=1e-5, atol=1e-5)


def test_missing_file_is_a_clear_error(tmp_path: Path, home: Home) -> None:
    with pytest.raises(PolicyError, match="not found"):
        OnnxPolicyController(home, policy_path=tmp_path / "nope.onnx")


def test_corrupt_file_is_a_clear_error(tmp_path: Path, home: Home) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not an onnx model")
    with pytest.raises(PolicyError, match="cannot be loaded"):
        OnnxPolicyController(home, policy_path=bad)


def test_other_observation_version_is_refused(tmp_path: Path, home: Home) -> None:
    path = linear_policy(tmp_path / "old.onnx", np.zeros((N_OBS, N_ACTIONS)), np.zeros(N_ACTIONS), obs_version=0)
    with pytest.raises(PolicyError, match=f"obs_version = 0, this dwars needs {OBS_VERSION}"):
        OnnxPolicyController(home, policy_path=path)


def test_other_action_space_version_is_refused(tmp_path: Path, home: Home) -> None:
    # A version-1 policy (10 actions) read as version 2 would map its logits to the wrong modes and powers.
    path = linear_policy(tmp_path / "v1.onnx", np.zeros((N_OBS, N_ACTIONS)), np.zeros(N_ACTIONS),
                         action_space_version=1)
    with pytest.raises(PolicyError, match=f"action_space_version = 1, this dwars needs {ACTION_SPACE_VERSION}"):
        OnnxPolicyController(home, policy_path=path)


def test_other_observation_size_is_refused(tmp_path: Path, home: Home) -> None:
    path = linear_policy(tmp_path / "wide.onnx", np.zeros((N_OBS + 4, N_ACTIONS)), np.zeros(N_ACTIONS),
                         n_obs=N_OBS + 4)
    with pytest.raises(PolicyError, match=f"expects {N_OBS + 4} observation values"):
        OnnxPolicyController(home, policy_path=path)


def test_the_shipped_policy_loads_and_decides(home: Home, week_60: Scenario) -> None:
    from dwars.policy.rl import DEFAULT_POLICY

    assert DEFAULT_POLICY.exists() and DEFAULT_POLICY.with_suffix(".md").exists()  # the model and its card
    controller = OnnxPolicyController(home)
    forecaster = Forecaster(week_60, home)
    decisions = {controller.decide(State(week_60.index[i], 60, e, 10 * e), forecaster.at(i)).mode
                 for i in range(0, 160, 7) for e in (2.5, 6.0, 9.5)}
    assert len(decisions) >= 2  # it reacts to the situation


def test_policy_curtails_pv_export_at_negative_prices_as_in_training(home: Home, june_15: Scenario) -> None:
    controller = OnnxPolicyController(home)
    forecaster = Forecaster(june_15, home)
    negative = np.flatnonzero(forecaster.export_price < 0)
    positive = np.flatnonzero(forecaster.export_price > 0)
    assert len(negative) and len(positive)  # June 2024 has both
    for i in (negative[0], positive[0]):
        d = controller.decide(State(june_15.index[i], 15, 6.0, 60.0), forecaster.at(int(i)))
        assert d.curtail_pv == bool(forecaster.export_price[i] < 0)


def test_decode_picks_the_most_probable_mode_then_its_power() -> None:
    from dwars.policy.rl import decode_action

    logits = np.full(N_ACTIONS, -10.0)
    logits[0] = 2.0  # MSC alone: the single most likely action
    imports = [a for a, (mode, _) in enumerate(ACTIONS) if mode == Mode.IMPORT]
    logits[imports] = 0.0  # Import at every power level, each less likely than MSC ...
    logits[imports[7]] = 1.0  # ... but together far more likely; 40 % is its most likely level
    assert int(np.argmax(logits)) == 0
    chosen = decode_action(logits)
    assert ACTIONS[chosen] == (Mode.IMPORT, 0.4)
    # Masked out, Import cannot be chosen however likely.
    allowed = np.ones(N_ACTIONS, dtype=bool)
    allowed[imports] = False
    assert decode_action(logits, allowed) == 0


@given(st.lists(st.floats(-20, 20), min_size=N_ACTIONS, max_size=N_ACTIONS),
       st.lists(st.booleans(), min_size=N_ACTIONS, max_size=N_ACTIONS))
def test_decode_never_picks_a_masked_action(logits: list[float], mask: list[bool]) -> None:
    from dwars.policy.rl import decode_action

    allowed = np.array(mask)
    chosen = decode_action(np.array(logits), allowed)
    assert 0 <= chosen < N_ACTIONS
    assert allowed[chosen] or not allowed.any()


def test_advantage_models_are_decoded_by_plain_argmax(tmp_path: Path, home: Home, week_60: Scenario) -> None:
    """Logits that are negative expected advantages (cents) are decoded by argmax, not by mode; the file says so."""
    from dwars.policy.rl import decode_action

    logits = np.full(N_ACTIONS, -10.0)
    logits[0] = 2.0
    imports = [a for a, (mode, _) in enumerate(ACTIONS) if mode == Mode.IMPORT]
    logits[imports] = 1.5  # twenty import levels, each expected to cost half a cent more than MSC
    assert ACTIONS[decode_action(logits)][0] == Mode.IMPORT  # by mode: the many import levels win ...
    assert decode_action(logits, decoding="argmax") == 0  # ... by argmax: the cheapest action
    weights = np.zeros((N_OBS, N_ACTIONS))
    path = linear_policy(tmp_path / "a.onnx", weights, logits, extra={"decoding": "argmax"})
    controller = OnnxPolicyController(home, policy_path=path)
    assert controller.decoding == "argmax"
    decision = controller.decide(State(week_60.index[10], 60, 6.0, 60.0), Forecaster(week_60, home).at(10))
    assert decision.mode == Mode.MSC
    bad = linear_policy(tmp_path / "b.onnx", weights, logits, extra={"decoding": "softmax"})
    with pytest.raises(PolicyError, match="decoding = 'softmax'"):
        OnnxPolicyController(home, policy_path=bad)
