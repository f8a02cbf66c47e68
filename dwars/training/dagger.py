"""DAgger: label the states the policy itself visits with an expert, so it learns to recover from its own drift.

The expert is the rolling MPC, passed through the same safety shield as the policy, given either PERFECT
forecasts (``"perfect_mpc"``: what an excellent controller would have the battery do from exactly this state;
it still knows only the prices published at that moment) or the SAME forecasts as the policy (``"mpc"``:
labels that are a function of what the policy observes, so they can be learnt exactly). Behaviour cloning
from the oracle only shows the oracle's own trajectory.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sb3_contrib import MaskablePPO

from dwars.env.forecast import Forecaster
from dwars.env.home_env import EpisodeData, HomeEnergyEnv
from dwars.env.modes import Mode, decision_to_action
from dwars.policy.mpc import MpcController

EXPERTS = ("perfect_mpc", "mpc")


class Expert:
    """MPC through the shield for one (scenario, installation) pair; ``kind`` is one of :data:`EXPERTS`."""

    def __init__(self, data: EpisodeData, kind: str = "perfect_mpc") -> None:
        if kind not in EXPERTS:
            raise ValueError(f"dagger.expert = {kind!r}: must be one of {', '.join(EXPERTS)}")
        self.data = data
        self.perfect = (Forecaster(data.scenario, data.home, pv_mode="perfect", load_mode="perfect")
                        if kind == "perfect_mpc" else data.forecaster)
        self.mpc = MpcController(data.home)

    def action(self, i: int, energy_kwh: float) -> int:
        d, b = self.data, self.data.home.battery
        state = d.state(i, energy_kwh)
        proposal = self.mpc.decide(state, self.perfect.at(i))
        applied = d.shield.check(state, d.forecaster.at(i), proposal).applied
        if applied.mode == Mode.MSC:
            return 0
        return decision_to_action(applied, b.max_charge_kw, b.max_discharge_kw)


def dagger_round(model: MaskablePPO, normalise: Any, env: HomeEnergyEnv, experts: dict[int, Expert],
                 n_states: int, rng: np.random.Generator, kind: str = "perfect_mpc") -> tuple[np.ndarray, np.ndarray]:
    """Roll the policy out (through the shield's masks) for about ``n_states`` steps; expert-label each state."""
    obs_rows, labels = [], []
    while len(labels) < n_states:
        obs, _ = env.reset(seed=int(rng.integers(1 << 31)))
        data = env.data
        assert data is not None
        if id(data) not in experts:  # one expert (MPC + forecaster) per episode table, built once
            experts[id(data)] = Expert(data, kind)
        expert = experts[id(data)]
        done = False
        while not done and len(labels) < n_states:
            labels.append(expert.action(env._i, env._energy))
            obs_rows.append(obs)
            action, _ = model.predict(normalise(obs), action_masks=env.action_masks(), deterministic=True)
            obs, _, _, done, _ = env.step(int(action))
    return np.asarray(obs_rows, dtype=np.float32), np.asarray(labels)
