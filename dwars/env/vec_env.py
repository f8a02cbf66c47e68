"""A batch of home environments stepped together in numpy, for fast training.

Each of the ``n_envs`` slots runs its own episode (its own scenario, installation and start day, drawn as in
:class:`~dwars.env.home_env.HomeEnergyEnv`, which does the bookkeeping), but the physics of all slots are
one vectorised call of :func:`dwars.env.dispatch.simulate_interval` per step, and observations are rows of
the precomputed episode tables. The API follows stable-baselines3's ``VecEnv`` (``reset() -> obs``,
``step(actions) -> obs, rewards, dones, infos`` with automatic reset and ``terminal_observation``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dwars.config import Installation
from dwars.data.scenario import Scenario
from dwars.env.battery import Battery
from dwars.env.dispatch import simulate_interval
from dwars.env.home_env import HomeEnergyEnv, Randomizer
from dwars.env.modes import N_ACTIONS
from dwars.env.observation import N_OBS


class HomeEnergyVecEnv:
    """``n_envs`` home episodes in one numpy batch.

    Parameters
    ----------
    scenarios, installations, episode_days, randomize, forecast_options, forecast_seed, auto_curtail,
    cache_size, shield_mask, shield_correct : as for :class:`~dwars.env.home_env.HomeEnergyEnv` (one cache is
    shared by all slots).
    n_envs : batch size.
    seed : seeds the episode draws of slot k with ``seed + k``.
    """

    def __init__(
        self,
        scenarios: Scenario | Sequence[Scenario],
        installations: Installation | Sequence[Installation],
        n_envs: int = 16,
        episode_days: int = 7,
        randomize: Randomizer | None = None,
        forecast_options: dict[str, Any] | None = None,
        forecast_seed: int = 0,
        auto_curtail: bool = True,
        cache_size: int = 8,
        seed: int = 0,
        shield_mask: bool = True,
        shield_correct: bool = False,
    ) -> None:
        self.envs = [HomeEnergyEnv(scenarios, installations, episode_days, randomize, forecast_options,
                                   forecast_seed, auto_curtail, cache_size, shield_mask, shield_correct)
                     for _ in range(n_envs)]
        first = self.envs[0]
        for env in self.envs[1:]:
            env._cache = first._cache  # one precomputation per (scenario, installation) for all slots
        self.num_envs = n_envs
        self.observation_space = first.observation_space
        self.action_space = first.action_space
        self.auto_curtail = auto_curtail
        self.seed = seed
        self._episode_return = np.zeros(n_envs)
        self._episode_length = np.zeros(n_envs, dtype=int)

    def _reset_slot(self, k: int, seed: int | None = None) -> np.ndarray:
        obs, _ = self.envs[k].reset(seed=seed)
        self._episode_return[k] = 0.0
        self._episode_length[k] = 0
        return obs

    def reset(self) -> np.ndarray:
        """Start every slot's first episode; returns observations (n_envs, N_OBS)."""
        return np.stack([self._reset_slot(k, self.seed + k) for k in range(self.num_envs)])

    def action_masks(self) -> np.ndarray:
        """(n_envs, N_ACTIONS) allowed actions."""
        return np.stack([env.action_masks() for env in self.envs])

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Advance every slot one interval; finished slots restart and report ``terminal_observation``."""
        actions = np.asarray(actions, dtype=int).reshape(self.num_envs)
        if np.any((actions < 0) | (actions >= N_ACTIONS)):
            raise ValueError(f"actions must be 0..{N_ACTIONS - 1}, got {actions}")
        n = self.num_envs
        cols = {name: np.empty(n) for name in ("e", "pv", "load", "imp", "exp", "cap", "res", "cmax", "dmax",
                                                "eta", "wear", "grid", "dt", "mode", "power", "curtail")}
        for k, env in enumerate(self.envs):
            d, i = env.data, env._i
            assert d is not None
            b = d.home.battery
            mode_k, power_k, curtail_k = env.carried_out(int(actions[k]))
            for name, value in (("e", env._energy), ("pv", d.pv_kw[i]), ("load", d.load_kw[i]),
                                ("imp", d.import_price[i]), ("exp", d.export_price[i]), ("cap", b.capacity_kwh),
                                ("res", b.reserve_kwh), ("cmax", b.max_charge_kw), ("dmax", b.max_discharge_kw),
                                ("eta", b.efficiency_one_way), ("wear", b.wear_eur_per_kwh),
                                ("grid", d.home.grid_limit_kw), ("dt", d.dt_h), ("mode", mode_k),
                                ("power", power_k), ("curtail", curtail_k)):
                cols[name][k] = value
        batch = Battery(cols["cap"], cols["cmax"], cols["dmax"], cols["eta"], cols["res"], cols["wear"])
        mode = cols["mode"].astype(np.int8)
        curtail = cols["curtail"] > 0
        dt = cols["dt"]
        r = simulate_interval(cols["e"], mode, cols["power"], cols["pv"], cols["load"],
                              cols["imp"], cols["exp"], dt, batch, cols["grid"], curtail)
        rewards = -(np.asarray(r.energy_cost_eur) + np.asarray(r.wear_eur))
        obs = np.empty((n, N_OBS), dtype=np.float32)
        dones = np.zeros(n, dtype=bool)
        infos: list[dict[str, Any]] = []
        for k, env in enumerate(self.envs):
            d = env.data
            assert d is not None
            env._energy = float(r.energy_kwh[k])
            env._i += 1
            info: dict[str, Any] = {}
            if env._i >= env._end:
                rewards[k] += env._terminal_reward()
                dones[k] = True
                info["terminal_observation"] = env._observation()
                info["TimeLimit.truncated"] = True
                info["episode"] = {"r": self._episode_return[k] + rewards[k], "l": self._episode_length[k] + 1}
                obs[k] = self._reset_slot(k)
            else:
                obs[k] = env._observation()
                self._episode_return[k] += rewards[k]
                self._episode_length[k] += 1
            infos.append(info)
        return obs, rewards.astype(np.float32), dones, infos
