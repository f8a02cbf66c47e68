"""stable-baselines3's VecEnv interface over the batched home environment, with the shield's action masks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from dwars.env.home_env import HomeEnergyEnv
from dwars.env.vec_env import HomeEnergyVecEnv


class Sb3HomeVecEnv(VecEnv):
    """Adapter: SB3 (and sb3-contrib's MaskablePPO) drive a :class:`~dwars.env.vec_env.HomeEnergyVecEnv`.

    ``env_method("action_masks")`` returns the safety shield's mask per slot, which MaskablePPO uses.
    """

    def __init__(self, vec: HomeEnergyVecEnv) -> None:
        self.vec = vec
        self._actions: np.ndarray | None = None
        super().__init__(vec.num_envs, vec.observation_space, vec.action_space)

    def _slots(self, indices: VecEnvIndices) -> Iterable[HomeEnergyEnv]:
        if indices is None:
            return self.vec.envs
        if isinstance(indices, int):
            return [self.vec.envs[indices]]
        return [self.vec.envs[i] for i in indices]

    def reset(self) -> np.ndarray:
        return self.vec.reset()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        assert self._actions is not None, "step_async first"
        return self.vec.step(self._actions)

    def close(self) -> None:
        """Nothing to release: every slot lives in this process."""

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(env, attr_name) for env in self._slots(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for env in self._slots(indices):
            setattr(env, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: VecEnvIndices = None, **kwargs: Any) -> list[Any]:
        return [getattr(env, method_name)(*args, **kwargs) for env in self._slots(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._slots(indices)]

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        if seed is not None:
            self.vec.seed = seed
        return [None if seed is None else seed + k for k in range(self.num_envs)]

    def action_masks(self) -> np.ndarray:
        return self.vec.action_masks()
