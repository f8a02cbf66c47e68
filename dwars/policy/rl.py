"""The reinforcement-learning policy as a controller: an ONNX model run with onnxruntime (no torch).

The model maps the observation of :mod:`dwars.env.observation` (float32, shape (1, N_OBS), input name
``obs``) to action logits over the 42 discrete actions of :mod:`dwars.env.modes` (output ``logits``).
The model's metadata must carry ``obs_version`` and ``action_space_version`` equal to this code's: a mismatch
is a clear error, never a silent misuse.

Decoding (:func:`decode_action`): the MODE with the most probability and, within it, the most likely power
level. Plain argmax over 42 actions is biased towards MSC and Hold: Import and Export spread their probability
over 20 power levels each (run v7 on the 2024 validation year of examples/home.toml: 95.19 EUR with plain
argmax, 84.73 by mode).

Decoding ``"argmax"`` (ONNX metadata ``decoding``): a model whose logits are negative expected advantages over
the plan in euro-cents (``[bc] labels = "advantage"``, :mod:`dwars.training.advantage`) is decoded by plain
argmax, the action with the lowest expected cost. Files without the key are decoded by mode (``"mode"``).

The shield: by default the controller does NOT mask the logits; like every other controller its decision goes
through the safety shield, which corrects what it refuses (and logs it). Masking picks the policy's second choice
instead, and a policy cloned from the plan never learnt second choices: one cloned on 66 training pairs cost
87.58 EUR masked and 55.21 corrected by the shield (2024, examples/home.toml). ``mask=True`` restores masking,
as MaskablePPO samples in training.

The plan (observation version 4): the controller asks :class:`~dwars.policy.advisor.PlanAdvisor` for the
shield-aware MPC's decision on the same forecasts, gives it to the policy as observation columns, and carries
out the plan's exact power when the policy chooses the plan's step (:func:`~dwars.env.modes.action_power_kw`), as
in training. The reason says whether the policy followed the plan or departed from it, and what the plan was.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from dwars.env.modes import (
    ACTION_MODES,
    ACTION_SPACE_VERSION,
    ACTIONS,
    N_ACTIONS,
    Decision,
    Mode,
    action_power_kw,
    plain_words,
)
from dwars.env.observation import N_OBS, OBS_VERSION, build_observation
from dwars.errors import DwarsError
from dwars.policy.base import Controller, Forecasts, Home, State

DEFAULT_POLICY = Path(__file__).parent / "models" / "default.onnx"


#: How a model's logits become an action: by mode, then power level (a cloned policy's probabilities), or plain
#: argmax (logits that are negative expected advantages).
DECODINGS = ("mode", "argmax")


def decode_action(logits: np.ndarray, allowed: np.ndarray | None = None, decoding: str = "mode") -> int:
    """The action to take: the most probable mode among the allowed actions, then its most likely power level
    (``decoding="mode"``), or the allowed action with the highest logit (``"argmax"``).

    Parameters
    ----------
    logits : (N_ACTIONS,) raw logits of the policy.
    allowed : (N_ACTIONS,) bool mask (the shield's); None allows everything. An all-False mask is ignored.
    decoding : one of :data:`DECODINGS`.
    """
    z = np.asarray(logits, dtype=np.float64).reshape(N_ACTIONS)
    if allowed is not None and np.any(allowed):
        z = np.where(allowed, z, -np.inf)
    if decoding == "argmax":
        return int(np.argmax(z))
    p = np.exp(z - z.max())
    mass = np.bincount(ACTION_MODES, weights=p, minlength=4)
    members = np.flatnonzero(int(np.argmax(mass)) == ACTION_MODES)
    return int(members[np.argmax(p[members])])


class PolicyError(DwarsError):
    """The ONNX policy file is missing, corrupt or made for another observation layout."""


class OnnxPolicyController(Controller):
    """Decides with an ONNX policy.

    Parameters
    ----------
    home : the home.
    seed : unused (the policy acts deterministically).
    policy_path : the ``.onnx`` file; default ``dwars/policy/models/default.onnx``.
    mask : choose among the actions the shield allows (default False: the shield corrects the choice afterwards).
    """

    name = "rl"

    def __init__(self, home: Home, seed: int | None = None, policy_path: str | Path | None = None,
                 mask: bool = False) -> None:
        super().__init__(home, seed)
        from dwars.policy.advisor import PlanAdvisor
        from dwars.policy.shield import Shield  # the mask the policy was trained with

        self.shield = Shield(home)
        self.mask = mask
        self.advisor = PlanAdvisor(home)
        path = Path(policy_path) if policy_path else DEFAULT_POLICY
        if not path.exists():
            raise PolicyError(f"policy file {path} not found; the shipped policy comes with `dwars train` "
                              "(issue #5) — pass --policy FILE to use another one")
        import onnxruntime as ort  # deferred: only the rl controller needs it

        try:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for corrupt files
            raise PolicyError(f"policy file {path} cannot be loaded: {err}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        for key, want in (("obs_version", OBS_VERSION), ("action_space_version", ACTION_SPACE_VERSION)):
            have = meta.get(key)
            if have is None or int(have) != want:
                raise PolicyError(f"policy file {path}: {key} = {have}, this dwars needs {want}; "
                                  "retrain or export the policy for this version")
        shape = self.session.get_inputs()[0].shape
        if shape[-1] != N_OBS:
            raise PolicyError(f"policy file {path}: expects {shape[-1]} observation values, this dwars gives {N_OBS}")
        self.input_name = self.session.get_inputs()[0].name
        self.decoding = meta.get("decoding", "mode")
        if self.decoding not in DECODINGS:
            raise PolicyError(f"policy file {path}: decoding = {self.decoding!r}, this dwars knows "
                              f"{', '.join(DECODINGS)}")

    def logits(self, obs: np.ndarray) -> np.ndarray:
        """Action logits for a batch of observations (B, N_OBS)."""
        out = self.session.run(None, {self.input_name: obs.astype(np.float32).reshape(-1, N_OBS)})[0]
        return np.asarray(out).reshape(-1, N_ACTIONS)

    def decide(self, state: State, forecasts: Forecasts) -> Decision:
        plan, columns = self.advisor.advise(state, forecasts)
        obs = build_observation(state, forecasts, self.home, columns)
        action = decode_action(self.logits(obs)[0], self.shield.mask(state, forecasts) if self.mask else None,
                               self.decoding)
        mode = ACTIONS[action][0]
        b = self.home.battery
        power = action_power_kw(action, b.max_charge_kw, b.max_discharge_kw, plan)
        decision = Decision(mode, power, self._reason(mode, power, plan))
        # The policy was trained in an environment that curtails PV export at negative export prices
        # (HomeEnergyEnv auto_curtail): ask for the same here, so its decisions play out as in training.
        if forecasts.n_price_known and forecasts.export_price_eur_per_kwh[0] < 0:
            decision = replace(decision, curtail_pv=True, reason=f"{decision.reason}; no PV export at a negative price")
        return decision

    def _reason(self, mode: Mode, power_kw: float, plan: Decision) -> str:
        """What the policy does and how that relates to the plan, in the home owner's words."""
        what = plain_words(mode, power_kw)
        plan_text = plan.reason.removeprefix("mpc: ")
        if mode == plan.mode and (mode not in (Mode.IMPORT, Mode.EXPORT) or power_kw == plan.power_kw):
            return f"policy: {what}, as planned ({plan_text})"
        return f"policy: {what} instead of the plan ({plan_text})"
