"""Offline training of the policy: behaviour cloning from the oracle, then MaskablePPO with the shield's masks.

``dwars train`` runs :func:`train` with the hyper-parameters of ``dwars/training/ppo.toml``. Everything a
run produces goes into one folder: ``model.zip`` (sb3), ``obs_stats.npz`` (the fixed observation
normalisation), ``checkpoints/``, ``train.json`` (stages, figures, wall time, steps/s) and, when the
``tensorboard`` package is installed, TensorBoard logs.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback

from dwars.config import Installation
from dwars.data.scenario import Scenario
from dwars.env.home_env import EpisodeData
from dwars.env.modes import Decision, decision_to_action
from dwars.env.observation import (
    I_PLAN,
    I_SOC,
    N_PLAN,
    OBSERVATION_NAMES,
    PLAN_SOC_HOURS,
    with_plan,
    with_soc,
)
from dwars.env.vec_env import HomeEnergyVecEnv
from dwars.training.advantage import (
    advantage_demonstrations,
    continuation_costs,
    fit_advantages,
    logit_targets,
    regret_summary,
)
from dwars.training.export import normalize_obs
from dwars.training.sb3_env import Sb3HomeVecEnv


def default_hyperparameters() -> dict[str, Any]:
    """The recipe in ``dwars/training/ppo.toml``."""
    return tomllib.loads((resources.files("dwars.training") / "ppo.toml").read_text(encoding="utf-8"))


#: ``[env] observation``: which column groups of the observation the policy sees (see
#: :mod:`dwars.env.observation`). A variant hides groups without changing the observation's layout, so the
#: ONNX contract with the runtime stays the same: a hidden column is normalised with variance
#: :data:`HIDDEN_VAR`, which maps every value it can take to (almost exactly) 0 in the exported graph too.
_PLAN_COLUMNS = ("plan_",)  # the MPC's plan (observation v3/v4's columns 34-45)
_RANK_COLUMNS = ("import_rank_24h", "cheaper_h_", "import_above_min_24h", "import_below_max_24h", "export_rank_24h",
                 "export_over_buy_back_24h", "pv_surplus_24h")  # the price structure (v2's columns 26-33)
OBSERVATION_VARIANTS: dict[str, tuple[str, ...]] = {  # name -> prefixes of the hidden columns
    "full": (),
    "no_plan": _PLAN_COLUMNS,
    "no_ranks": _RANK_COLUMNS,
    "no_plan_no_ranks": _PLAN_COLUMNS + _RANK_COLUMNS,
}
HIDDEN_VAR = 1e30  # (x - 0) / sqrt(1e30) = x * 1e-15: an observation value of 1e4 becomes 1e-11


def hidden_columns(variant: str) -> np.ndarray:
    """Indices of the observation columns that ``[env] observation = variant`` hides from the policy."""
    if variant not in OBSERVATION_VARIANTS:
        raise ValueError(f"env.observation = {variant!r}: must be one of {', '.join(OBSERVATION_VARIANTS)}")
    prefixes = OBSERVATION_VARIANTS[variant]
    return np.array([i for i, name in enumerate(OBSERVATION_NAMES) if name.startswith(prefixes)], dtype=int) \
        if prefixes else np.zeros(0, dtype=int)


@dataclass
class ObsStats:
    """Fixed observation normalisation, estimated once from the training data and exported with the model."""

    mean: np.ndarray
    var: np.ndarray
    clip: float = 10.0

    def hide(self, columns: np.ndarray) -> ObsStats:
        """These statistics with ``columns`` hidden from the policy (see :data:`OBSERVATION_VARIANTS`)."""
        mean, var = self.mean.copy(), self.var.copy()
        mean[columns], var[columns] = 0.0, HIDDEN_VAR
        return ObsStats(mean, var, self.clip)

    def normalise(self, obs: np.ndarray) -> np.ndarray:
        """The network's input, computed exactly as inside the exported ONNX graph (float32)."""
        return normalize_obs(obs, self.mean, self.var, self.clip, 1e-8)

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, var=self.var, clip=self.clip)

    @classmethod
    def load(cls, path: Path) -> ObsStats:
        data = np.load(path)
        return cls(data["mean"], data["var"], float(data["clip"]))

    @classmethod
    def from_rows(cls, rows: np.ndarray) -> ObsStats:
        # The SoC and plan columns are filled per step (the rows hold zeros there): give the SoC-like columns the
        # spread of a uniform SoC and the plan's one-hots, powers and flags mean 0 and variance 1 (already O(1)).
        mean, var = rows.mean(axis=0), rows.var(axis=0)
        mean[I_SOC], var[I_SOC] = 0.5, 1.0 / 12.0
        plan = slice(I_PLAN, I_PLAN + N_PLAN)
        mean[plan], var[plan] = 0.0, 1.0
        soc_columns = slice(I_PLAN + N_PLAN - len(PLAN_SOC_HOURS), I_PLAN + N_PLAN)
        mean[soc_columns], var[soc_columns] = 0.5, 1.0 / 12.0
        return cls(mean.astype(np.float32), np.maximum(var, 1e-6).astype(np.float32))


class NormalisedVecEnv(Sb3HomeVecEnv):
    """The SB3 adapter with the fixed observation normalisation applied."""

    def __init__(self, vec: HomeEnergyVecEnv, stats: ObsStats) -> None:
        self.stats = stats
        super().__init__(vec)

    def reset(self) -> np.ndarray:
        return self.stats.normalise(super().reset())

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, rewards, dones, infos = super().step_wait()
        for info in infos:
            if "terminal_observation" in info:
                info["terminal_observation"] = self.stats.normalise(info["terminal_observation"])
        return self.stats.normalise(obs), rewards, dones, infos


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    model: MaskablePPO
    stats: ObsStats
    folder: Path
    figures: dict[str, Any] = field(default_factory=dict)


CLASS_LABELS = ("oracle", "plan", "perfect_plan", "hindsight", "shield_aware")
#: Every ``[bc] labels``: the class labels of :func:`oracle_demonstrations` and "advantage" (regression targets,
#: :mod:`dwars.training.advantage`).
DEMONSTRATION_LABELS = (*CLASS_LABELS, "advantage")
#: "hindsight" labels: the oracle's action where it beats the plan's by more than this (EUR), else the plan's
#: (judged over :data:`dwars.training.advantage.HINDSIGHT_HOURS` hours of perfect foresight after the interval).
HINDSIGHT_MARGIN_EUR = 0.01


def oracle_start_kwh(data: EpisodeData, scenario: Scenario) -> tuple[np.ndarray, Any]:
    """Battery energy (kWh) at the start of each interval along the perfect-foresight oracle's trajectory, and
    the oracle's schedule."""
    from dwars.policy.oracle import OracleController

    schedule = OracleController(data.home, scenario, pv_kw=data.pv_kw).schedule
    start = np.concatenate([[data.home.installation.battery.initial_energy_kwh], schedule.energy_kwh[:-1]])
    return start, schedule


def oracle_demonstrations(data: EpisodeData, scenario: Scenario, shield_labels: bool = True, share: float = 1.0,
                          seed: int = 0, labels: str = "oracle") -> tuple[np.ndarray, np.ndarray]:
    """(observations, actions) along the perfect-foresight oracle's trajectory over a scenario, for behaviour cloning.

    The observations carry the forecasts a real controller would see, the oracle's own SoC trajectory and the
    MPC's plan from that SoC (one LP solve per row, hence ``share``: keep this random share of the intervals).
    ``labels``: "oracle" (what the oracle did), "plan" (the step of the MPC's plan: a policy that follows the
    plan) or "perfect_plan" (the step of the MPC's plan on PERFECT PV and load forecasts, with the prices known
    at that moment: what the plan would be without forecast errors, knowing no more prices than the policy) or
    "hindsight" (the plan's step, unless the oracle's action beats it in hindsight by more than
    :data:`HINDSIGHT_MARGIN_EUR`: this interval's cost plus the perfect-foresight LP's cost of the next
    hours from where each leaves the battery; two LP solves per row) or "shield_aware" (the plan's step where the
    safety shield lets it through, else the allowed action the plan values most:
    :class:`~dwars.policy.lookahead.ShieldAwareMpcController`). The sixth kind, "advantage", is not a class
    label: see :func:`advantage_demonstrations` (:mod:`dwars.training.advantage`).
    With ``shield_labels`` an oracle action the shield would refuse is replaced by the closest allowed one.
    """
    if labels not in CLASS_LABELS:
        raise ValueError(f"bc.labels = {labels!r}: must be one of {', '.join(CLASS_LABELS)} (\"advantage\" "
                         "targets come from dwars.training.advantage)")
    from dwars.policy.oracle import plan_decision

    start, schedule = oracle_start_kwh(data, scenario)
    b = data.home.battery
    obs = data.obs.copy()
    for i in range(len(obs)):
        with_soc(obs[i], start[i] / b.capacity_kwh)
    actions = np.array([decision_to_action(Decision(*plan_decision(schedule, k)[:2]), b.max_charge_kw,
                                           b.max_discharge_kw) for k in range(len(obs))])
    # Where the plan does what self-consumption would do anyway, label it MSC: the inverter then follows the
    # house within the interval, which a fixed setpoint cannot.
    follow = np.clip(data.pv_kw - data.load_kw, -b.max_discharge_kw, b.max_charge_kw)
    planned = schedule.charge_kw - schedule.discharge_kw
    actions[np.abs(planned - follow) <= 0.05 * max(b.max_charge_kw, b.max_discharge_kw)] = 0
    if shield_labels:
        actions = _shield_consistent(data, start, actions, planned)
    rows = np.arange(len(obs))
    if share < 1.0:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max(int(share * len(rows)), 1), replace=False))
    obs, actions = obs[rows], actions[rows]
    if labels == "perfect_plan":
        from dwars.env.forecast import Forecaster
        from dwars.policy.advisor import PlanAdvisor

        perfect = Forecaster(scenario, data.home, pv_mode="perfect", load_mode="perfect")
        advisor = PlanAdvisor(data.home)
    if labels == "shield_aware":
        from dwars.policy.lookahead import ShieldAwareMpcController

        expert = ShieldAwareMpcController(data.home, record_timing=False)
    for j, i in enumerate(rows):
        plan, columns = data.advise(int(i), float(start[i]))
        with_plan(obs[j], columns)
        if labels == "perfect_plan":
            plan = advisor.advise(data.state(int(i), float(start[i])), perfect.at(int(i)))[0]
        plan_action = decision_to_action(plan, b.max_charge_kw, b.max_discharge_kw)
        if labels == "shield_aware":  # the plan's step, unless the shield would refuse it: then the expert's repair
            repaired = expert.repair(data.state(int(i), float(start[i])), data.forecaster.at(int(i)), plan)
            if repaired is not plan:
                plan_action = decision_to_action(repaired, b.max_charge_kw, b.max_discharge_kw)
        if labels == "hindsight" and actions[j] != plan_action:  # equal actions: no regret, no LP to solve
            regret = (_hindsight_cost(data, int(i), float(start[i]), plan_action, plan)
                      - _hindsight_cost(data, int(i), float(start[i]), int(actions[j]), plan))
            if regret > HINDSIGHT_MARGIN_EUR:
                continue  # keep the oracle's action: it clearly paid
        if labels != "oracle":
            actions[j] = plan_action
    return obs, actions


def _hindsight_cost(data: EpisodeData, i: int, energy_kwh: float, action: int, plan: Decision) -> float:
    """EUR of ``action`` at interval ``i`` plus the perfect-foresight cost of the following hours (see
    :func:`oracle_demonstrations`, labels "hindsight", and :func:`dwars.training.advantage.continuation_costs`)."""
    from dwars.policy.lookahead import interval_outcomes

    now, after = interval_outcomes(energy_kwh, data.pv_kw[i], data.load_kw[i], data.import_price[i],
                                   data.export_price[i], data.dt_h, data.home.battery, data.home.grid_limit_kw, plan)
    later = continuation_costs(data, i + 1, np.array([after[action]]))[0]
    return float(now[action]) + (float(later) if np.isfinite(later) else 0.0)


def _shield_consistent(data: EpisodeData, energy: np.ndarray, actions: np.ndarray, planned: np.ndarray) -> np.ndarray:
    """Replace oracle actions the shield would refuse by the allowed action closest in battery power.

    The oracle knows the future and ignores the spread rule; the policy acts through the shield, so it should
    learn what the shield lets through rather than proposals that get overruled.
    """
    from dwars.env.modes import ACTION_FRACTION, ACTION_MODES, Mode

    b = data.home.battery
    power = np.where(ACTION_MODES == Mode.IMPORT, ACTION_FRACTION * b.max_charge_kw,
                     np.where(ACTION_MODES == Mode.EXPORT, -ACTION_FRACTION * b.max_discharge_kw, 0.0))
    out = actions.copy()
    for i, a in enumerate(actions):
        state = data.state(i, float(energy[i]))
        allowed = data.shield.mask(state, data.forecaster.at(i))
        if not allowed[a]:
            follow = data.pv_kw[i] - data.load_kw[i]
            candidates = np.where(ACTION_MODES == Mode.MSC, follow, power)
            cost = np.where(allowed, np.abs(candidates - planned[i]), np.inf)
            out[i] = int(np.argmin(cost))
    return out


def behaviour_cloning(model: MaskablePPO, obs: np.ndarray, actions: np.ndarray, epochs: int, batch_size: int,
                      learning_rate: float, seed: int) -> list[float]:
    """Fit the policy's action head to demonstrations by cross-entropy; returns the loss per epoch."""
    policy = model.policy
    optimiser = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(obs, dtype=torch.float32)
    y = torch.as_tensor(actions, dtype=torch.long)
    losses = []
    for _ in range(epochs):
        order = rng.permutation(len(x))
        total = 0.0
        for lo in range(0, len(x), batch_size):
            idx = order[lo:lo + batch_size]
            logits = policy.get_distribution(x[idx]).distribution.logits
            loss = torch.nn.functional.cross_entropy(logits, y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(idx)
        losses.append(total / len(x))
    return losses


def train(
    scenarios: list[Scenario],
    installations: list[Installation],
    folder: str | Path,
    hyper: dict[str, Any] | None = None,
    total_timesteps: int | None = None,
    resume: bool = False,
    progress_bar: bool = False,
    validate: Callable[[MaskablePPO, ObsStats, int], bool | None] | None = None,
    validate_every: int = 0,
) -> TrainResult:
    """Train a policy for ``installations`` on ``scenarios`` and save everything in ``folder``.

    Stages: (1) precompute episode tables for every (scenario, installation) pair, (2) estimate the fixed
    observation normalisation (hiding the columns of ``[env] observation``), (3) behaviour cloning from the oracle
    (``[bc] enabled``), (4) MaskablePPO with the shield's action masks for ``total_timesteps``. With ``resume``
    the model in ``folder`` is loaded and PPO continues.

    ``validate(model, stats, ppo_timesteps)`` is called after stage 3, every ``validate_every`` PPO time steps
    (0: never in between) and at the end; when it returns False training stops there (``dwars sweep`` reports
    the validation objective to Ray Tune this way).
    """
    hyper = hyper or default_hyperparameters()
    env_h, ppo_h, bc_h, train_h = hyper["env"], hyper["ppo"], hyper["bc"], hyper["train"]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    seed = int(train_h["seed"])
    steps = int(total_timesteps if total_timesteps is not None else train_h["total_timesteps"])
    figures: dict[str, Any] = {"pairs": len(scenarios) * len(installations), "seed": seed}
    t0 = time.perf_counter()
    shield = str(env_h.get("shield", "mask"))
    if shield not in ("mask", "correct"):
        raise ValueError(f"env.shield = {shield!r}: must be 'mask' (MaskablePPO's action masks) or 'correct' "
                         "(the shield corrects each action, as at run time)")
    vec = HomeEnergyVecEnv(scenarios, installations, n_envs=int(env_h["n_envs"]),
                           episode_days=int(env_h["episode_days"]), forecast_seed=int(env_h["forecast_seed"]),
                           cache_size=len(scenarios) * len(installations), seed=seed,
                           shield_mask=shield == "mask", shield_correct=shield == "correct")
    cache = vec.envs[0]._cache
    for s, scn in enumerate(scenarios):
        for inst in installations:
            key = (s, inst)
            if key not in cache:
                cache[key] = EpisodeData(scn, inst, int(env_h["forecast_seed"]), {})
    figures["precompute_s"] = time.perf_counter() - t0
    stats_path = folder / "obs_stats.npz"
    if resume and stats_path.exists():
        stats = ObsStats.load(stats_path)
    else:
        variant = str(env_h.get("observation", "full"))
        stats = ObsStats.from_rows(np.concatenate([d.obs for d in cache.values()])).hide(hidden_columns(variant))
        stats.save(stats_path)
        figures["observation"] = variant
    venv = NormalisedVecEnv(vec, stats)
    arch = list(ppo_h["net_arch"])
    model_path = folder / "model.zip"
    if resume and model_path.exists():
        model = MaskablePPO.load(model_path, env=venv, device="cpu")
    else:
        model = MaskablePPO(
            "MlpPolicy", venv, learning_rate=float(ppo_h["learning_rate"]), n_steps=int(ppo_h["n_steps"]),
            batch_size=int(ppo_h["batch_size"]), n_epochs=int(ppo_h["n_epochs"]), gamma=float(ppo_h["gamma"]),
            gae_lambda=float(ppo_h["gae_lambda"]), clip_range=float(ppo_h["clip_range"]),
            ent_coef=float(ppo_h["ent_coef"]), vf_coef=float(ppo_h["vf_coef"]), seed=seed, device="cpu",
            policy_kwargs={"net_arch": {"pi": arch, "vf": arch}}, tensorboard_log=_tensorboard_dir(folder),
            verbose=0,
        )
        if bc_h.get("enabled", True):
            t1 = time.perf_counter()
            labels = str(bc_h.get("labels", "oracle"))
            if labels not in DEMONSTRATION_LABELS:
                raise ValueError(f"bc.labels = {labels!r}: must be one of {', '.join(DEMONSTRATION_LABELS)}")
            pairs = list(cache.values())
            if labels == "advantage":
                obs, advantages, planned = _cached_demonstrations(folder, pairs, bc_h, seed, progress_bar)
                obs = stats.normalise(obs)
                targets = logit_targets(advantages, planned, float(bc_h.get("advantage_margin_eur", 0.0)))
                losses = fit_advantages(model, obs, targets, int(bc_h["epochs"]), int(bc_h["batch_size"]),
                                        float(bc_h["learning_rate"]), seed)
                figures["bc"] = {"labels": labels, "samples": len(targets), "loss_per_epoch": losses,
                                 "hindsight": regret_summary(targets), "wall_s": time.perf_counter() - t1}
                figures["decoding"] = "argmax"  # the logits are negative expected advantages (cents)
            else:
                demos = _parallel(_class_job, pairs, bc_h, seed, int(bc_h.get("workers", 1)), progress_bar)
                obs = stats.normalise(np.concatenate([o for o, _ in demos]))
                actions = np.concatenate([a for _, a in demos])
                losses = behaviour_cloning(model, obs, actions, int(bc_h["epochs"]), int(bc_h["batch_size"]),
                                           float(bc_h["learning_rate"]), seed)
                figures["bc"] = {"labels": labels, "samples": len(actions), "loss_per_epoch": losses,
                                 "wall_s": time.perf_counter() - t1}
            model.save(folder / "model_bc.zip")
            dagger_h = hyper.get("dagger", {})
            if int(dagger_h.get("iterations", 0)) > 0 and labels != "advantage":
                figures["dagger"] = _dagger(model, stats, scenarios, installations, cache, obs, actions, dagger_h,
                                            int(env_h["episode_days"]), bc_h, seed)
                model.save(folder / "model_dagger.zip")
    # Before the first PPO step only (also when resuming a run that did behaviour cloning alone).
    warmup = int(ppo_h.get("critic_warmup_steps", 0)) if model.num_timesteps == 0 else 0
    if warmup > 0:  # fit the value function to the cloned policy before PPO may move the policy
        t_w = time.perf_counter()
        actor = [*model.policy.mlp_extractor.policy_net.parameters(), *model.policy.action_net.parameters()]
        for p in actor:
            p.requires_grad_(False)
        model.learn(total_timesteps=warmup, progress_bar=progress_bar)
        for p in actor:
            p.requires_grad_(True)
        figures["critic_warmup"] = {"timesteps": warmup, "wall_s": time.perf_counter() - t_w}
    # The PPO steps so far: a resumed run's, else 0 (learn() below restarts the count the critic warm-up used).
    go_on = validate is None or validate(model, stats, model.num_timesteps if resume else 0) is not False
    if steps > 0 and go_on:
        t2 = time.perf_counter()
        every = max(int(train_h["checkpoint_every"]) // venv.num_envs, 1)
        callbacks: list[BaseCallback] = [CheckpointCallback(every, str(folder / "checkpoints"), name_prefix="ppo")]
        rounds = _ValidationCallback(validate, stats, validate_every) if validate is not None else None
        if rounds is not None:
            callbacks.append(rounds)
        start = model.num_timesteps
        model.learn(total_timesteps=steps, callback=CallbackList(callbacks), progress_bar=progress_bar,
                    reset_num_timesteps=not resume)
        wall = time.perf_counter() - t2
        done = model.num_timesteps - start if resume else model.num_timesteps
        figures["ppo"] = {"timesteps": done, "wall_s": wall, "steps_per_s": done / wall}
        if rounds is not None and rounds.last != model.num_timesteps and not rounds.stopped:
            validate(model, stats, model.num_timesteps)
    model.save(model_path)
    figures["wall_s"] = time.perf_counter() - t0
    (folder / "train.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return TrainResult(model, stats, folder, figures)


class _ValidationCallback(BaseCallback):
    """Calls ``validate(model, stats, timesteps)`` every ``every`` PPO time steps; False from it stops PPO."""

    def __init__(self, validate: Callable[[MaskablePPO, ObsStats, int], bool | None], stats: ObsStats,
                 every: int) -> None:
        super().__init__()
        self.validate, self.stats, self.every = validate, stats, every
        self.last, self.stopped = 0, False

    def _on_training_start(self) -> None:
        self.last = self.num_timesteps  # a resumed run counts on from its steps so far

    def _on_step(self) -> bool:
        if self.every <= 0 or self.num_timesteps - self.last < self.every:
            return True
        self.last = self.num_timesteps
        self.stopped = self.validate(self.model, self.stats, self.num_timesteps) is False
        return not self.stopped


def _dagger(model: MaskablePPO, stats: ObsStats, scenarios: list[Scenario], installations: list[Installation],
            cache: Any, obs: np.ndarray, actions: np.ndarray, dagger_h: dict[str, Any], episode_days: int,
            bc_h: dict[str, Any], seed: int) -> dict[str, Any]:
    """DAgger rounds after behaviour cloning (see :mod:`dwars.training.dagger`); returns what each added."""
    from dwars.env.home_env import HomeEnergyEnv
    from dwars.training.dagger import dagger_round

    env = HomeEnergyEnv(scenarios, installations, episode_days=episode_days, cache_size=len(cache))
    env._cache = cache
    rng = np.random.default_rng(seed + 1)
    experts: dict[int, Any] = {}
    rounds = []
    kind = str(dagger_h.get("expert", "perfect_mpc"))
    if not dagger_h.get("keep_demonstrations", True):  # learn from the expert's labels alone
        obs, actions = obs[:0], actions[:0]
    for _ in range(int(dagger_h["iterations"])):
        t0 = time.perf_counter()
        new_obs, new_actions = dagger_round(model, stats.normalise, env, experts, int(dagger_h["states"]), rng,
                                            kind)
        obs = np.concatenate([obs, stats.normalise(new_obs)])
        actions = np.concatenate([actions, new_actions])
        losses = behaviour_cloning(model, obs, actions, int(dagger_h["epochs"]), int(bc_h["batch_size"]),
                                   float(dagger_h["learning_rate"]), seed)
        rounds.append({"states": len(new_actions), "loss": losses[-1], "wall_s": time.perf_counter() - t0})
    return {"rounds": rounds}


def _cached_demonstrations(folder: Path, pairs: list[EpisodeData], bc_h: dict[str, Any], seed: int,
                           progress_bar: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Advantage demonstrations (raw observations, advantages, the plan's actions), kept in
    ``folder/demonstrations.npz``: the LP solves are most of a run's time, so a run in the same folder with the same
    data and labelling settings reuses them (to try other margins and fitting settings)."""
    keys = ("labels", "sample_share", "random_soc_share")
    key = json.dumps({"pairs": len(pairs), "seed": seed, **{k: bc_h.get(k) for k in keys}}, sort_keys=True)
    path = folder / "demonstrations.npz"
    if path.exists():
        cached = np.load(path)
        if str(cached["key"]) == key:
            return cached["obs"], cached["advantages"], cached["planned"]
    demos = _parallel(_advantage_job, pairs, bc_h, seed, int(bc_h.get("workers", 1)), progress_bar)
    obs, advantages, planned = (np.concatenate([d[k] for d in demos]) for k in range(3))
    np.savez(path, obs=obs, advantages=advantages, planned=planned, key=np.array(key))
    return obs, advantages, planned


_JOBS: list[EpisodeData] = []  # the episode tables a forked worker reads (inherited, never pickled)


def _share(d: EpisodeData, bc_h: dict[str, Any]) -> float:
    """``[bc] sample_share`` of an hourly table; a 15-minute table gets a quarter of it (the same hours sampled,
    at a quarter of the LP solves: its LPs are four times as long)."""
    return float(bc_h.get("sample_share", 1.0)) * min(d.minutes / 60.0, 1.0)


def _class_job(j: int, bc_h: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray]:
    d = _JOBS[j]
    return oracle_demonstrations(d, d.scenario, bool(bc_h.get("shield_labels", True)), _share(d, bc_h), seed + j,
                                 str(bc_h.get("labels", "oracle")))


def _advantage_job(j: int, bc_h: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = _JOBS[j]
    start, _ = oracle_start_kwh(d, d.scenario)
    return advantage_demonstrations(d, start, _share(d, bc_h), seed + j,
                                    float(bc_h.get("random_soc_share", 0.0)))


def _parallel(job: Any, pairs: list[EpisodeData], bc_h: dict[str, Any], seed: int, workers: int,
              progress_bar: bool) -> list[Any]:
    """``job(j, bc_h, seed)`` for every episode table, in ``workers`` forked processes (1: in this one)."""
    global _JOBS
    _JOBS = pairs
    try:
        if workers <= 1:
            return [job(j, bc_h, seed) for j in _progress(list(range(len(pairs))), "demonstrations", progress_bar)]
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            results = pool.imap(_star, [(job, j, bc_h, seed) for j in range(len(pairs))])
            return list(_progress(results, "demonstrations", progress_bar, total=len(pairs)))
    finally:
        _JOBS = []


def _star(args: tuple[Any, ...]) -> Any:
    job, *rest = args
    return job(*rest)


def _progress(items: Any, what: str, show: bool, total: int | None = None) -> Any:
    """``items``, with a tqdm progress bar when ``show``."""
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=what, unit="pair", total=total)


def _tensorboard_dir(folder: Path) -> str | None:
    try:
        import tensorboard  # noqa: F401 - only to know whether SB3 can log there
    except ImportError:
        return None
    return str(folder / "tensorboard")
