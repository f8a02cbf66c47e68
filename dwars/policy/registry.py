"""Controllers by name, as ``dwars evaluate --controllers`` and the runtime ask for them."""

from __future__ import annotations

from typing import Any

import numpy as np

from dwars.data.scenario import Scenario
from dwars.errors import DwarsError
from dwars.policy.base import Controller, Home

CONTROLLER_NAMES: tuple[str, ...] = ("none", "msc", "rule", "mpc", "mpc_shield", "oracle", "random", "rl")


def make_controller(
    name: str,
    home: Home,
    scenario: Scenario | None = None,
    seed: int | None = None,
    pv_kw: np.ndarray | None = None,
    policy_path: str | None = None,
    **options: Any,
) -> Controller:
    """A fresh controller. ``oracle`` needs the scenario (it plans on actuals); ``rl`` an ONNX file.

    Raises
    ------
    DwarsError
        for an unknown name (listing the known ones) or a missing input.
    """
    if name == "none":
        from dwars.policy.simple import NoBatteryController

        return NoBatteryController(home, seed)
    if name == "msc":
        from dwars.policy.simple import MscController

        return MscController(home, seed)
    if name == "random":
        from dwars.policy.simple import RandomController

        return RandomController(home, seed)
    if name == "rule":
        from dwars.policy.rule import RuleController

        return RuleController(home, seed, **options)
    if name == "mpc":
        from dwars.policy.mpc import MpcController

        return MpcController(home, seed, **options)
    if name == "mpc_shield":
        from dwars.policy.lookahead import ShieldAwareMpcController

        return ShieldAwareMpcController(home, seed, **options)
    if name == "oracle":
        if scenario is None:
            raise DwarsError("controller oracle: needs the scenario (it plans with perfect foresight)")
        from dwars.policy.oracle import OracleController

        return OracleController(home, scenario, pv_kw=pv_kw, seed=seed)
    if name == "rl":
        from dwars.policy.rl import OnnxPolicyController

        return OnnxPolicyController(home, seed, policy_path=policy_path)
    raise DwarsError(f"controller {name!r}: unknown; choose from {', '.join(CONTROLLER_NAMES)}")
