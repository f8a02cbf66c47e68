"""Advantage labels: what each action would have cost against the plan's, in hindsight, for regression.

Behaviour cloning with hindsight CLASS labels (``[bc] labels = "hindsight"``) learns the action that was best
most often, not the one that is cheapest on average: when the plan is a cent better on 60 % of similar
evenings and charging from the grid saves a euro on the other 40 %, the label says "plan" and the policy
learns "plan". Regressing the cost difference learns its conditional expectation instead, which is what a
decision should minimise.

For a state (interval ``i``, battery energy ``e``) the hindsight cost of action ``a`` is

    Q(a) = cost of interval i under a (actual PV, load, prices)  +  V_{i+1}(energy a leaves)

where ``V_{i+1}(e)`` is the perfect-foresight LP's cost over the next :data:`HINDSIGHT_HOURS` hours from
energy ``e`` (energy left at the end valued as the MPC values it), solved on a grid of energies and
interpolated (:mod:`dwars.policy.lookahead`, which does the same on the forecasts). The label of the
state is the advantage ``A(a) = Q(a) - Q(plan's action)`` (EUR), plus ``margin_eur`` for every action but the
plan's (a departure must pay at least that much), clipped to +-:data:`ADVANTAGE_CLIP_EUR`; actions the shield
refuses get the clip.

The policy's logits are fitted to ``-A / ADVANTAGE_UNIT_EUR`` (one logit = one euro-cent), so the exported
model's argmax is the action with the lowest expected cost given what it observes, the plan unless something
else is expected to pay more than the margin. Such a model is decoded by plain argmax (ONNX metadata
``decoding = "argmax"``, see :mod:`dwars.policy.rl`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dwars.env.home_env import EpisodeData
from dwars.env.modes import N_ACTIONS, decision_to_action
from dwars.env.observation import with_plan, with_soc
from dwars.policy.lookahead import action_values, continuation_values, energy_grid, interval_outcomes
from dwars.policy.mpc import default_terminal_value

#: Hours of perfect foresight after the interval that judge an action (as the hindsight labels).
HINDSIGHT_HOURS = 36
#: One logit is this many EUR of expected advantage.
ADVANTAGE_UNIT_EUR = 0.01
#: Advantages are clipped to +- this (EUR): beyond it, how much worse an action is does not matter.
ADVANTAGE_CLIP_EUR = 0.2


def continuation_costs(data: EpisodeData, start: int, energies_kwh: np.ndarray | list[float]) -> np.ndarray:
    """V (EUR) per start energy: the perfect-foresight LP from interval ``start`` over :data:`HINDSIGHT_HOURS`
    hours (:func:`dwars.policy.lookahead.continuation_values` on the actuals; the energy left at the end valued
    as the MPC values it); zeros at the end of the scenario."""
    lo, hi = start, min(start + round(HINDSIGHT_HOURS / data.dt_h), len(data.pv_kw))
    if hi - lo < 2:
        return np.zeros(len(energies_kwh))
    goals = [(k - lo, float(data.goal_kwh[k])) for k in range(lo, hi) if np.isfinite(data.goal_kwh[k])]
    prices = data.import_price[lo:hi]
    return continuation_values(energies_kwh, data.pv_kw[lo:hi], data.load_kw[lo:hi], prices,
                               data.export_price[lo:hi], data.dt_h, data.home.battery, data.home.grid_limit_kw,
                               goals, default_terminal_value(prices, data.home))


def action_costs(data: EpisodeData, i: int, energy_kwh: float, plan: Any) -> np.ndarray:
    """Hindsight cost Q (EUR) of each of the 42 actions at interval ``i`` from ``energy_kwh`` (see the module
    text and :mod:`dwars.policy.lookahead`)."""
    b = data.home.battery
    now, after = interval_outcomes(energy_kwh, data.pv_kw[i], data.load_kw[i], data.import_price[i],
                                   data.export_price[i], data.dt_h, b, data.home.grid_limit_kw, plan)
    grid = energy_grid(after, b)
    return action_values(now, after, grid, continuation_costs(data, i + 1, grid))


def advantage_demonstrations(data: EpisodeData, start_kwh: np.ndarray, share: float = 1.0, seed: int = 0,
                             random_soc_share: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(observations, advantages A (n, 42) in EUR, the plan's action (n,)) for a random ``share`` of the intervals
    of one episode table; ``A`` is ``+inf`` for the actions the shield refuses.

    ``start_kwh``: the battery energy at the start of each interval (the oracle's trajectory); a random
    ``random_soc_share`` of the rows start from a uniformly drawn energy instead, so the states a policy that
    follows the plan visits are covered too. :func:`logit_targets` turns them into the network's targets.
    """
    rng = np.random.default_rng(seed)
    b = data.home.battery
    n = len(data.obs)
    rows = np.sort(rng.choice(n, size=max(int(share * n), 1), replace=False)) if share < 1.0 else np.arange(n)
    obs = data.obs[rows].copy()
    advantages = np.empty((len(rows), N_ACTIONS), dtype=np.float32)
    planned = np.empty(len(rows), dtype=np.int64)
    random_soc = rng.random(len(rows)) < random_soc_share
    drawn = rng.uniform(0.0, b.capacity_kwh, len(rows))
    for j, i in enumerate(rows):
        i = int(i)
        e = float(drawn[j] if random_soc[j] else start_kwh[i])
        with_soc(obs[j], e / b.capacity_kwh)
        plan, columns = data.advise(i, e)
        with_plan(obs[j], columns)
        q = action_costs(data, i, e, plan)
        planned[j] = decision_to_action(plan, b.max_charge_kw, b.max_discharge_kw)
        advantage = q - q[planned[j]]
        advantage[~data.shield.mask(data.state(i, e), data.forecaster.at(i))] = np.inf
        advantages[j] = advantage
    return obs, advantages, planned


def logit_targets(advantages: np.ndarray, planned: np.ndarray, margin_eur: float = 0.0) -> np.ndarray:
    """The network's targets: ``-clip(A + margin) / ADVANTAGE_UNIT_EUR``, the margin added to every action but
    the plan's (refused actions end at the clip)."""
    a = np.asarray(advantages, dtype=np.float64) + margin_eur
    rows = np.arange(len(a))
    a[rows, planned] = np.where(np.isfinite(a[rows, planned]), 0.0, np.inf)
    return (-np.clip(a, -ADVANTAGE_CLIP_EUR, ADVANTAGE_CLIP_EUR) / ADVANTAGE_UNIT_EUR).astype(np.float32)


def fit_advantages(model: Any, obs: np.ndarray, targets: np.ndarray, epochs: int, batch_size: int,
                   learning_rate: float, seed: int, holdout_share: float = 0.1) -> dict[str, list[float]]:
    """Fit the policy's logits to the targets (Huber loss, logit units); returns the loss per epoch on the rows
    trained on, and on a held-out random share of them before the first epoch and after each (a rising held-out loss
    means over-fitting)."""
    policy = model.policy
    optimiser = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(obs))
    n_hold = int(holdout_share * len(obs))
    hold, fit = order[:n_hold], order[n_hold:]
    x = torch.as_tensor(obs, dtype=torch.float32)
    y = torch.as_tensor(targets, dtype=torch.float32)
    # Start from each action's mean target: Adam moves a weight about lr per step, far too slow to travel the
    # 20 logits between "refused" and "the plan" from sb3's near-zero initial logits.
    with torch.no_grad():
        policy.action_net.bias.copy_(y[torch.as_tensor(fit)].mean(dim=0))

    losses: dict[str, list[float]] = {"train": [], "holdout": []}

    def held_out() -> None:
        if n_hold:
            with torch.no_grad():
                losses["holdout"].append(float(torch.nn.functional.huber_loss(_raw_logits(policy, x[hold]),
                                                                              y[hold])))

    held_out()  # before any step: the per-action mean alone
    for _ in range(epochs):
        fit = fit[rng.permutation(len(fit))]
        total = 0.0
        for lo in range(0, len(fit), batch_size):
            idx = fit[lo:lo + batch_size]
            loss = torch.nn.functional.huber_loss(_raw_logits(policy, x[idx]), y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(idx)
        losses["train"].append(total / max(len(fit), 1))
        held_out()
    return losses


def _raw_logits(policy: Any, x: torch.Tensor) -> torch.Tensor:
    """The actor's raw logits (``action_net`` output), not sb3's normalised log-probabilities."""
    features = policy.extract_features(x, policy.pi_features_extractor)
    latent = policy.mlp_extractor.forward_actor(features)
    return policy.action_net(latent)


def regret_summary(targets: np.ndarray) -> dict[str, float]:
    """How often and by how much (EUR, in hindsight, margin included) some action beat the plan's."""
    best = -targets.max(axis=1) * ADVANTAGE_UNIT_EUR  # the lowest advantage; 0 when the plan was best
    return {"rows": len(targets), "share_plan_beaten": float((best < 0).mean()),
            "mean_best_advantage_eur": float(best.mean())}
