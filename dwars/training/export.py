"""Export a trained (Maskable)PPO policy to ONNX for the runtime, and check the export against torch.

The runtime (:class:`dwars.policy.rl.OnnxPolicyController`) runs the file with onnxruntime only: no torch,
no stable-baselines3. Everything the policy needs besides the observation of :mod:`dwars.env.observation`
is therefore INSIDE the graph, including the observation normalisation of training (VecNormalize):

    obs (B, N_OBS) float32, input "obs"
      -> clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)   (float32; left out without statistics)
      -> float64: features extractor -> mlp_extractor.forward_actor -> action_net
      -> logits (B, N_ACTIONS) float32, output "logits"; the batch axis is dynamic.

The network runs in float64 (the trained float32 weights, exactly): float32 matrix products in torch and
onnxruntime accumulate in different orders and differ by about 1e-5 on logits of a few tens, the size of the
parity bound itself; in float64 the two agree to about 1e-12 and the only difference left is the final
rounding to float32 (half a unit in the last place).

The logits are the RAW ``action_net`` outputs (not log-probabilities); their argmax is the action that
sb3's ``predict(..., deterministic=True)`` takes without a mask. The file's metadata carries
``obs_version``, ``action_space_version`` and ``n_obs`` (checked by the runtime) and whatever the caller
adds (training data, seeds, steps, wall time).

This module imports torch and stable-baselines3; neither dwars.policy nor dwars.runtime imports it.
"""

from __future__ import annotations

import copy
import io
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy

from dwars.env.modes import ACTION_SPACE_VERSION, N_ACTIONS
from dwars.env.observation import N_OBS, OBS_VERSION

OPSET = 17
#: IR version written to the file: 8 is the one of opset 17, readable by every onnxruntime >= 1.14.
IR_VERSION = 8
#: Metadata keys export_policy writes itself; a caller's metadata may not override them.
RESERVED_KEYS = ("obs_version", "action_space_version", "n_obs", "n_actions", "obs_normalization", "clip_obs",
                 "epsilon")


def _policy_of(model: Any) -> BasePolicy:
    """The actor-critic policy of an sb3 algorithm (PPO, MaskablePPO, ...), or the policy itself."""
    policy = getattr(model, "policy", model)
    if not isinstance(policy, BasePolicy) or not all(
            hasattr(policy, name) for name in ("pi_features_extractor", "mlp_extractor", "action_net")):
        raise TypeError(f"cannot export {type(model).__name__}: expected an sb3 (Maskable)PPO model or its "
                        "actor-critic policy")
    n = getattr(policy.action_space, "n", None)
    if n is None or int(n) != N_ACTIONS:
        raise ValueError(f"the policy's action space is {policy.action_space}, dwars needs Discrete({N_ACTIONS})")
    shape = policy.observation_space.shape
    if shape != (N_OBS,):
        raise ValueError(f"the policy's observation shape is {shape}, dwars needs ({N_OBS},)")
    return policy


def _stats(obs_mean: np.ndarray | None, obs_var: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Validated (mean, var) as float64 (N_OBS,), or None for no normalisation."""
    if obs_mean is None and obs_var is None:
        return None
    if obs_mean is None or obs_var is None:
        raise ValueError("give both obs_mean and obs_var (VecNormalize's obs_rms.mean and .var), or neither")
    mean = np.asarray(obs_mean, dtype=np.float64).reshape(-1)
    var = np.asarray(obs_var, dtype=np.float64).reshape(-1)
    if mean.shape != (N_OBS,) or var.shape != (N_OBS,):
        raise ValueError(f"obs_mean and obs_var need {N_OBS} values each, got {mean.size} and {var.size}")
    if not (np.isfinite(mean).all() and np.isfinite(var).all()) or (var < 0).any():
        raise ValueError("obs_mean must be finite and obs_var finite and >= 0")
    return mean, var


def normalize_obs(obs: np.ndarray, obs_mean: np.ndarray | None = None, obs_var: np.ndarray | None = None,
                  clip_obs: float = 10.0, epsilon: float = 1e-8) -> np.ndarray:
    """What the policy is fed: ``clip((obs - mean) / sqrt(var + eps), ±clip_obs)`` (the obs unchanged without
    statistics), float32.

    Computed in float32 with exactly the operations and constants of the exported graph (:class:`OnnxActor`:
    float32 ``mean`` and ``std = sqrt(var + eps)``, one subtraction, one division, correctly rounded in numpy,
    torch and onnxruntime alike), so training and the runtime feed the network bit-identical inputs.
    """
    stats = _stats(obs_mean, obs_var)
    obs = np.asarray(obs, dtype=np.float32)
    if stats is not None:
        mean, var = stats
        std = np.sqrt(var + epsilon).astype(np.float32)
        obs = np.clip((obs - mean.astype(np.float32)) / std, np.float32(-clip_obs), np.float32(clip_obs))
    return obs.astype(np.float32)


def normalization_of(vec_normalize: Any) -> dict[str, Any]:
    """Keyword arguments ``obs_mean, obs_var, clip_obs, epsilon`` of a trained sb3 ``VecNormalize``
    (``{}`` when it does not normalise observations), for :func:`export_policy` and :func:`parity`."""
    if not getattr(vec_normalize, "norm_obs", False):
        return {}
    return {"obs_mean": np.asarray(vec_normalize.obs_rms.mean), "obs_var": np.asarray(vec_normalize.obs_rms.var),
            "clip_obs": float(vec_normalize.clip_obs), "epsilon": float(vec_normalize.epsilon)}


class OnnxActor(torch.nn.Module):
    """The deterministic actor of an sb3 (Maskable)PPO policy, with the observation normalisation in front.

    ``forward(obs)`` maps raw dwars observations (B, N_OBS) float32 to raw action logits (B, N_ACTIONS).
    The policy's modules are copied (to the CPU), so exporting never changes the model being trained.

    Parameters
    ----------
    model : the sb3 algorithm (PPO, MaskablePPO) or its ActorCriticPolicy.
    obs_mean, obs_var : VecNormalize's ``obs_rms.mean`` and ``.var`` (N_OBS,), or None for raw observations.
    clip_obs, epsilon : VecNormalize's ``clip_obs`` and ``epsilon``.
    """

    def __init__(self, model: Any, obs_mean: np.ndarray | None = None, obs_var: np.ndarray | None = None,
                 clip_obs: float = 10.0, epsilon: float = 1e-8) -> None:
        super().__init__()
        policy = _policy_of(model)
        if not isinstance(policy.observation_space, spaces.Box):
            raise ValueError(f"the policy's observation space is {policy.observation_space}, dwars needs a Box")
        self.features_extractor = copy.deepcopy(policy.pi_features_extractor).cpu().double()
        self.mlp_extractor = copy.deepcopy(policy.mlp_extractor).cpu().double()
        self.action_net = copy.deepcopy(policy.action_net).cpu().double()
        stats = _stats(obs_mean, obs_var)
        self.normalized = stats is not None
        self.clip_obs = float(clip_obs)
        mean, var = stats if stats is not None else (np.zeros(N_OBS), np.ones(N_OBS))
        self.register_buffer("obs_mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("obs_std", torch.as_tensor(np.sqrt(var + epsilon), dtype=torch.float32))
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.normalized:
            obs = torch.clamp((obs - self.obs_mean) / self.obs_std, -self.clip_obs, self.clip_obs)
        return self.logits64(obs.double()).float()

    def logits64(self, normalized: torch.Tensor) -> torch.Tensor:
        """Raw logits in float64 of NORMALISED observations (sb3's preprocessing of a Box is the identity)."""
        return self.action_net(self.mlp_extractor.forward_actor(self.features_extractor(normalized.double())))


def export_policy(model: Any, path: str | Path, obs_mean: np.ndarray | None = None, obs_var: np.ndarray | None = None,
                  clip_obs: float = 10.0, epsilon: float = 1e-8, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write the policy of ``model`` as an ONNX file the runtime loads (see the module docstring).

    Parameters
    ----------
    model : the trained sb3 (Maskable)PPO, or its policy.
    path : the ``.onnx`` file to write (replaced atomically; parent folders are created).
    obs_mean, obs_var, clip_obs, epsilon : the observation normalisation of training (VecNormalize),
        baked into the graph; none when ``obs_mean`` and ``obs_var`` are None (see :func:`normalization_of`).
    metadata : extra metadata_props (e.g. training data, seeds, steps, wall time); values are written as
        ``str(value)``. The keys in :data:`RESERVED_KEYS` are dwars's own and may not be given.

    Returns
    -------
    The path written. The model passed ``onnx.checker.check_model``.
    """
    extra = {str(k): str(v) for k, v in (metadata or {}).items()}
    clash = sorted(set(extra) & set(RESERVED_KEYS))
    if clash:
        raise ValueError(f"metadata keys {clash} are written by export_policy itself")
    actor = OnnxActor(model, obs_mean, obs_var, clip_obs, epsilon)
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # torch >= 2.9 warns that the TorchScript exporter is legacy; it is the one that needs no onnxscript.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message="The feature will be removed")
        torch.onnx.export(actor, (torch.zeros(1, N_OBS),), buffer, input_names=["obs"], output_names=["logits"],
                          dynamic_axes={"obs": {0: "batch"}, "logits": {0: "batch"}}, opset_version=OPSET,
                          do_constant_folding=True, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    proto.ir_version = min(proto.ir_version, IR_VERSION)
    props = {
        "obs_version": str(OBS_VERSION),
        "action_space_version": str(ACTION_SPACE_VERSION),
        "n_obs": str(N_OBS),
        "n_actions": str(N_ACTIONS),
        "obs_normalization": "vecnormalize" if actor.normalized else "none",
        "clip_obs": repr(float(clip_obs)) if actor.normalized else "",
        "epsilon": repr(float(epsilon)) if actor.normalized else "",
        **extra,
    }
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "dwars"
    onnx.checker.check_model(proto, full_check=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(proto.SerializeToString())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    top = x.max(axis=1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(axis=1, keepdims=True))


def parity(model: Any, path: str | Path, obs: np.ndarray, obs_mean: np.ndarray | None = None,
           obs_var: np.ndarray | None = None, clip_obs: float = 10.0, epsilon: float = 1e-8,
           batch: int = 4096) -> dict[str, float | int]:
    """Compare the ONNX file (onnxruntime) with the sb3 policy (torch) on raw observations ``obs`` (B, N_OBS).

    The torch side is sb3's own path, fed what VecNormalize would feed it (:func:`normalize_obs`):
    ``policy.get_distribution(obs)`` (MaskablePPO without a mask, or PPO). The ONNX side gets the RAW
    observations and normalises inside the graph. Returned figures:

    ``max_abs_logit_diff``
        max |ONNX logits - torch logits|, the torch side being the policy's own actor modules (its weights)
        evaluated in float64 on the normalised observations. This is the figure the export guarantees.
    ``max_abs_logit_diff_float32``
        the same against sb3's float32 ``action_net`` output (captured by a hook during ``get_distribution``):
        float32 rounding of the training-time network, for information.
    ``max_abs_logprob_diff``
        max |log_softmax(ONNX logits) - sb3's ``distribution.logits``| (sb3's Categorical stores normalised
        log-probabilities, not the raw logits).
    ``action_agreement``, ``n_action_mismatch``
        share and count of observations where argmax of the ONNX logits equals sb3's
        ``predict(obs, deterministic=True)``.
    ``min_top2_gap``
        the smallest gap between the best and second-best ONNX logit (how close to a tie the sample came).
    ``n``, ``share_clipped``
        number of observations; share of normalised entries at ±clip_obs.
    """
    import onnxruntime as ort

    policy = _policy_of(model)
    obs = np.asarray(obs, dtype=np.float32).reshape(-1, N_OBS)
    normalized = normalize_obs(obs, obs_mean, obs_var, clip_obs, epsilon)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    onnx_logits = np.concatenate([session.run(None, {input_name: obs[lo:lo + batch]})[0]
                                  for lo in range(0, len(obs), batch)])
    hooked: list[torch.Tensor] = []
    handle = policy.action_net.register_forward_hook(lambda _m, _i, out: hooked.append(out.detach().cpu()))
    was_training = policy.training
    policy.set_training_mode(False)
    raw, logprobs, actions = [], [], []
    try:
        with torch.no_grad():
            for lo in range(0, len(obs), batch):
                chunk = normalized[lo:lo + batch]
                hooked.clear()
                dist = policy.get_distribution(policy.obs_to_tensor(chunk)[0])
                raw.append(hooked[0].numpy())
                logprobs.append(dist.distribution.logits.cpu().numpy())
                actions.append(np.asarray(policy.predict(chunk, deterministic=True)[0]).reshape(-1))
    finally:
        handle.remove()
        policy.set_training_mode(was_training)
    torch_logits = np.concatenate(raw)
    torch_actions = np.concatenate(actions)
    reference = OnnxActor(policy)  # the same modules in float64, fed the same normalised observations
    with torch.no_grad():
        logits64 = np.concatenate([reference.logits64(torch.as_tensor(normalized[lo:lo + batch])).numpy()
                                   for lo in range(0, len(obs), batch)])
    onnx_actions = onnx_logits.argmax(axis=1)
    top2 = np.sort(onnx_logits, axis=1)[:, -2:]
    return {
        "n": len(obs),
        "max_abs_logit_diff": float(np.abs(onnx_logits.astype(np.float64) - logits64).max()),
        "max_abs_logit_diff_float32": float(np.abs(onnx_logits.astype(np.float64) - torch_logits).max()),
        "max_abs_logprob_diff": float(np.abs(_log_softmax(onnx_logits) - np.concatenate(logprobs)).max()),
        "action_agreement": float((onnx_actions == torch_actions).mean()),
        "n_action_mismatch": int((onnx_actions != torch_actions).sum()),
        "min_top2_gap": float((top2[:, 1] - top2[:, 0]).min()),
        "share_clipped": float((np.abs(normalized) >= clip_obs).mean()) if obs_mean is not None else 0.0,
    }


def export_run(run: str | Path, out: str | Path, model_name: str = "model.zip",
               extra_metadata: Mapping[str, Any] | None = None) -> dict[str, float | int]:
    """Export the model of a ``dwars train`` run folder (``model_name`` + ``obs_stats.npz`` + ``train.json``) to
    the ONNX file ``out`` and check it against torch (:func:`parity`, 10 000 observations drawn around the
    training statistics). Used by ``dwars export`` and by ``dwars sweep`` for its best trial.

    The contract: the same action everywhere and logits within 1e-5. The file is written beside ``out`` first, so
    one that fails the check never replaces a working policy.

    Raises
    ------
    DwarsError
        when the run has no model, or the export fails the parity check (``out`` is then left as it was).
    """
    import json

    from sb3_contrib import MaskablePPO

    from dwars.errors import DwarsError
    from dwars.training.train import ObsStats

    run = Path(run)
    model_path = run / model_name
    if not model_path.exists():
        raise DwarsError(f"{model_path}: no trained model (run dwars train --out {run} first)")
    model = MaskablePPO.load(model_path, device="cpu")
    stats = ObsStats.load(run / "obs_stats.npz")
    figures = json.loads((run / "train.json").read_text(encoding="utf-8")) if (run / "train.json").exists() else {}
    meta = {"model": model_name, "training": json.dumps(figures.get("ppo", {})), "seed": str(figures.get("seed", "")),
            "decoding": str(figures.get("decoding", "mode")),
            "observation_variant": str(figures.get("observation", "full")), **(extra_metadata or {})}
    final = Path(out)
    candidate = export_policy(model, final.with_name(f".{final.name}.candidate"), obs_mean=stats.mean,
                              obs_var=stats.var, clip_obs=stats.clip, metadata=meta)
    rng = np.random.default_rng(0)
    sample = stats.mean + np.sqrt(stats.var) * rng.standard_normal((10_000, len(stats.mean))).astype(np.float32)
    # Both sides get bit-identical normalised inputs (normalize_obs mirrors the graph) and run the network in
    # float64, so the contract holds exactly, not just on average.
    check = parity(model, candidate, sample.astype(np.float32), obs_mean=stats.mean, obs_var=stats.var,
                   clip_obs=stats.clip)
    if check["action_agreement"] < 1.0 or check["max_abs_logit_diff"] >= 1e-5:
        candidate.unlink(missing_ok=True)
        raise DwarsError(f"export parity failed: max |logit difference| {check['max_abs_logit_diff']:.1e}, same "
                         f"action {check['action_agreement']:.2%}; {final} was left as it was")
    candidate.replace(final)
    return check
