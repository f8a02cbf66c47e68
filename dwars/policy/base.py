"""The controller interface: every way of deciding (rules, optimisers, the RL policy) sits behind it.

``controller.decide(state, forecasts) -> Decision``. A controller sees the present state and forecasts, never
future actuals (the oracle is the one exception, and says so). The same interface serves ``dwars evaluate``,
the shield and the Pi runtime.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from dwars.config import Installation
from dwars.env.battery import Battery
from dwars.env.goals import Deadline
from dwars.env.modes import Decision
from dwars.env.tariff import Tariff, exports_for_trading


@dataclass(frozen=True)
class Home:
    """The static side of a home, resolved once: installation, battery model and tariff."""

    installation: Installation
    battery: Battery
    tariff: Tariff

    @classmethod
    def from_installation(cls, inst: Installation) -> Home:
        return cls(inst, Battery.from_config(inst.battery), Tariff.from_config(inst.tariff, inst.site.timezone))

    @property
    def profile(self) -> str:
        return self.installation.strategy.profile

    @property
    def spread_eur_per_kwh(self) -> float:
        """The profile-scaled spread (EUR/kWh) a trade must beat."""
        return self.tariff.spread(self.profile)

    @property
    def solar_spread_eur_per_kwh(self) -> float:
        """The profile-scaled spread (EUR/kWh) of exporting now what own PV surplus refills later."""
        return self.tariff.solar_spread(self.profile)

    @property
    def exports_for_trading(self) -> bool:
        return exports_for_trading(self.profile)

    @property
    def grid_limit_kw(self) -> float:
        return self.installation.site.grid_limit_kw

    @property
    def timezone(self) -> str:
        return self.installation.site.timezone


@dataclass(frozen=True)
class State:
    """What is known now, at the start of the interval to decide.

    Attributes
    ----------
    time : UTC start of the interval being decided.
    minutes : interval length.
    energy_kwh : battery energy content now.
    soc_pct : the same as % of capacity.
    last_pv_kw, last_load_kw : measured mean powers of the previous interval (NaN at the very start).
    """

    time: pd.Timestamp
    minutes: int
    energy_kwh: float
    soc_pct: float
    last_pv_kw: float = float("nan")
    last_load_kw: float = float("nan")

    @property
    def dt_h(self) -> float:
        return self.minutes / 60.0


@dataclass(frozen=True)
class Forecasts:
    """Forecasts made at ``times[0]`` for the coming intervals.

    Attributes
    ----------
    times : UTC starts of the forecast intervals, from the interval being decided, length H.
    pv_kw, load_kw : forecast mean powers, length H.
    epex_eur_per_mwh, import_price_eur_per_kwh, export_price_eur_per_kwh : prices KNOWN now (day-ahead
        published), length K <= H; beyond K prices are not yet known.
    deadlines : goals that fall due within the horizon (instant = end of an interval).
    """

    times: pd.DatetimeIndex
    pv_kw: np.ndarray
    load_kw: np.ndarray
    epex_eur_per_mwh: np.ndarray
    import_price_eur_per_kwh: np.ndarray
    export_price_eur_per_kwh: np.ndarray
    deadlines: tuple[Deadline, ...] = field(default_factory=tuple)

    @property
    def n_price_known(self) -> int:
        return len(self.import_price_eur_per_kwh)

    @property
    def horizon(self) -> int:
        return len(self.times)

    def deadline_steps(self, minutes: int) -> list[tuple[int, Deadline]]:
        """(k, deadline) pairs: the goal applies to the energy at the END of forecast interval k."""
        if not self.deadlines:
            return []
        step = pd.Timedelta(minutes=minutes)
        start, horizon = self.times[0], len(self.times)  # hoisted: indexing a DatetimeIndex boxes a Timestamp
        out = []
        for d in self.deadlines:
            k = (d.time - start) // step - 1
            if 0 <= k < horizon:
                out.append((int(k), d))
        return out


class Controller(ABC):
    """Base class of all controllers.

    Parameters
    ----------
    home : the home being controlled.
    seed : for controllers that draw random numbers.
    """

    #: short name used on the command line and in reports (``rule``, ``mpc``, ...).
    name: ClassVar[str] = "controller"
    #: True only for the oracle: it sees actuals and is the physical limit, not a real controller.
    uses_actuals: ClassVar[bool] = False

    def __init__(self, home: Home, seed: int | None = None) -> None:
        self.home = home
        self.seed = seed

    def reset(self) -> None:  # noqa: B027 - optional hook, most controllers keep no state
        """Forget any state (called at the start of an evaluation or episode)."""

    @abstractmethod
    def decide(self, state: State, forecasts: Forecasts) -> Decision:
        """The decision for the interval starting at ``state.time``, with a reason."""
