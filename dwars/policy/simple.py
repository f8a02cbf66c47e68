"""Reference controllers: no battery, plain self-consumption, and uniformly random actions.

They are the yardsticks every smarter controller is measured against, and the random one is the attacker
the shield is tested with. None of them looks at prices or goals.
"""

from __future__ import annotations

import numpy as np

from dwars.env.modes import N_ACTIONS, Decision, Mode, action_to_decision
from dwars.policy.base import Controller, Forecasts, Home, State

__all__ = ["MscController", "NoBatteryController", "RandomController"]


class NoBatteryController(Controller):
    """The home as if it had no battery: the reference every saving is counted from.

    Rules
    -----
    - Always HOLD (the battery neither charges nor discharges); the evaluation runs it with HOLD or a
      zero-capacity battery, which is the same thing.
    - PV serves the house and every surplus is exported: never curtails, not even at a negative export price,
      because a home without an EMS cannot curtail either.
    """

    name = "none"

    def decide(self, state: State, forecasts: Forecasts) -> Decision:
        return Decision(Mode.HOLD, 0.0, "no battery")


class MscController(Controller):
    """Plain self-consumption (MSC), what a battery does out of the box: the baseline to beat.

    Rules
    -----
    - Always MSC: PV surplus charges the battery, the battery covers the house deficit, within its limits.
    - Never trades and never curtails (a plain inverter knows no prices).
    """

    name = "msc"

    def decide(self, state: State, forecasts: Forecasts) -> Decision:
        return Decision(Mode.MSC, 0.0, "self-consumption")


class RandomController(Controller):
    """A uniformly random discrete action each interval: used to attack the shield and as a floor.

    Rules
    -----
    - Each interval draws one of the ``N_ACTIONS`` (42) actions of :data:`dwars.env.modes.ACTIONS` with equal
      probability and turns it into a Decision at the battery's nominal power limits (deliberately not the
      limits left at the current SoC: the shield, not this controller, must make the request safe).
    - Draws come from ``numpy.random.default_rng(seed)``; :meth:`reset` restarts the same sequence, so an
      evaluation with a given seed is reproducible.
    """

    name = "random"

    def __init__(self, home: Home, seed: int | None = None) -> None:
        super().__init__(home, seed)
        self._rng = np.random.default_rng(seed)

    def reset(self) -> None:
        """Restart the random sequence from ``seed``."""
        self._rng = np.random.default_rng(self.seed)

    def decide(self, state: State, forecasts: Forecasts) -> Decision:
        action = int(self._rng.integers(N_ACTIONS))
        battery = self.home.battery
        return action_to_decision(action, battery.max_charge_kw, battery.max_discharge_kw, f"random action {action}")
