"""The electric car: when it is home, what it needs, and when to charge it.

The simulator, ``dwars evaluate`` and the Pi runtime share this module: :func:`ev_sessions` says when the car is
plugged in, and :func:`plan_ev` decides how much to charge now, re-planned every interval from what is known then.

Smart charging (``strategy = "smart"``)
    The energy still needed before departure is bought where it is cheapest: forecast solar surplus (PV - house
    load, valued at the export price it would otherwise earn) first, then the cheapest known import prices.
    Every interval has a surplus part (up to the forecast surplus) and a grid part (up to the charger's maximum);
    the parts are filled cheapest first until the need is covered. A charger cannot charge below its minimum
    power (IEC 61851: 6 A), so an interval planned below it is rounded up (or dropped when the need is already
    met). Intervals beyond the known prices are used only when the known ones cannot cover the need. When even
    charging at full power from now on barely reaches the target, it charges at full power now.
``now``
    Full power from arrival until the target: what a charger without an energy manager does.

The EV and the home battery never fight: the battery does not discharge into the car (see
:func:`dwars.env.dispatch.simulate_interval`, ``flex_kw``), and the car takes the PV surplus before the battery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dwars.config import EvConfig

SURPLUS_FACTOR = 0.8  # plan with 80 % of the forecast surplus: a cloud should cost a little grid power, not the goal


@dataclass(frozen=True)
class EvSession:
    """One stay at home: plugged in at ``arrive``, leaving at ``depart`` (tz-aware UTC)."""

    arrive: pd.Timestamp
    depart: pd.Timestamp


def ev_sessions(cfg: EvConfig, start: pd.Timestamp, end: pd.Timestamp, timezone: str) -> list[EvSession]:
    """The car's stays at home that overlap [start, end): every local day it arrives at ``arrive_hour`` and leaves
    at the next ``depart_hour`` (local clock hours, so a DST day moves them with the clock)."""
    local_start = start.tz_convert(timezone).normalize() - pd.Timedelta(days=1)
    days = pd.date_range(local_start.tz_localize(None), end.tz_convert(timezone).tz_localize(None), freq="D")
    out = []
    for day in days:
        arrive = (day + pd.Timedelta(hours=cfg.arrive_hour)).tz_localize(timezone, nonexistent="shift_forward",
                                                                           ambiguous=False)
        depart_day = day if cfg.depart_hour > cfg.arrive_hour else day + pd.Timedelta(days=1)
        depart = (depart_day + pd.Timedelta(hours=cfg.depart_hour)).tz_localize(timezone, nonexistent="shift_forward",
                                                                                 ambiguous=False)
        if depart > start and arrive < end:
            out.append(EvSession(arrive.tz_convert("UTC"), depart.tz_convert("UTC")))
    return out


@dataclass(frozen=True)
class EvCalendar:
    """Per interval of a series: is the car home for the whole interval, and where its stay ends.

    Attributes
    ----------
    plugged : True where the car is home for the whole interval.
    arrives : True at the first interval of each stay (the day's driving is taken from the car's battery then).
    depart_index : index of the first interval after the stay (may equal the series length), -1 where unplugged.
    """

    plugged: np.ndarray
    arrives: np.ndarray
    depart_index: np.ndarray

    @classmethod
    def build(cls, cfg: EvConfig, times: pd.DatetimeIndex, minutes: int, timezone: str) -> EvCalendar:
        n = len(times)
        step = pd.Timedelta(minutes=minutes)
        plugged = np.zeros(n, dtype=bool)
        arrives = np.zeros(n, dtype=bool)
        depart_index = np.full(n, -1, dtype=np.int64)
        if n == 0:
            return cls(plugged, arrives, depart_index)
        ends = times + step
        for s in ev_sessions(cfg, times[0], ends[-1], timezone):
            inside = np.flatnonzero(np.asarray((times >= s.arrive) & (ends <= s.depart)))
            if len(inside) == 0:
                continue
            plugged[inside] = True
            if times[inside[0]] - s.arrive < step:  # the stay starts here, not before the series
                arrives[inside[0]] = True
            depart_index[inside] = inside[-1] + 1
        return cls(plugged, arrives, depart_index)


@dataclass(frozen=True)
class EvPlan:
    """The charging plan from now to departure: ``power_kw[0]`` is what to do now (AC kW), with the reason."""

    power_kw: np.ndarray
    reason: str

    @property
    def now_kw(self) -> float:
        return float(self.power_kw[0]) if len(self.power_kw) else 0.0


def target_kwh(cfg: EvConfig) -> float:
    """Energy in the car's battery at its departure target, kWh."""
    return cfg.capacity_kwh * cfg.target_pct / 100.0


def plan_ev(
    cfg: EvConfig,
    car_kwh: float,
    dt_h: float,
    times: pd.DatetimeIndex,
    import_price_eur_per_kwh: np.ndarray,
    export_price_eur_per_kwh: np.ndarray,
    surplus_kw: np.ndarray,
    timezone: str,
    max_kw: float | None = None,
) -> EvPlan:
    """Plan charging from now (``times[0]``) until departure (the end of ``times``).

    Parameters
    ----------
    cfg : the car and its charger.
    car_kwh : energy in the car's battery now, kWh.
    dt_h : interval length, h.
    times : UTC starts of the intervals left before departure (the first is now).
    import_price_eur_per_kwh, export_price_eur_per_kwh : KNOWN prices, length K <= len(times).
    surplus_kw : forecast PV surplus after the house (PV - load, may be negative), length len(times).
    timezone : for the times in the reason.
    max_kw : the most the charger may draw now (load balancing), default the charger's maximum.
    """
    n = len(times)
    need_ac_kwh = max(target_kwh(cfg) - car_kwh, 0.0) / cfg.efficiency
    room_ac_kwh = max(cfg.capacity_kwh - car_kwh, 0.0) / cfg.efficiency
    top_kw = cfg.charger_max_kw if max_kw is None else min(cfg.charger_max_kw, max_kw)
    power = np.zeros(n)
    if n == 0:
        return EvPlan(power, "EV: leaving now")
    if need_ac_kwh <= 1e-6:
        return EvPlan(power, f"EV: at its {cfg.target_pct:.0f} % target ({car_kwh:.1f} kWh)")
    depart = _clock(times[-1] + pd.Timedelta(hours=dt_h), timezone)
    if cfg.strategy == "now":
        power[0] = _clip_min(min(top_kw, need_ac_kwh / dt_h), cfg.charger_min_kw, top_kw)
        return EvPlan(power, f"EV: charging {power[0]:.1f} kW until {cfg.target_pct:.0f} % (plain charging)")
    # When even full power from the next interval on cannot cover the need, start now at full power.
    if need_ac_kwh > cfg.charger_max_kw * dt_h * (n - 1) - 1e-9:
        power[0] = _clip_min(min(top_kw, need_ac_kwh / dt_h), cfg.charger_min_kw, top_kw)
        return EvPlan(power, f"EV: charging {power[0]:.1f} kW, just enough time left to reach "
                             f"{cfg.target_pct:.0f} % by {depart}")
    k = len(import_price_eur_per_kwh)
    known_imp = np.asarray(import_price_eur_per_kwh, dtype=float)
    unknown_cost = (float(np.max(known_imp)) + 1.0) if k else 1.0  # after every known price
    imp = np.concatenate([known_imp, np.full(n - k, unknown_cost)])
    exp = np.concatenate([np.asarray(export_price_eur_per_kwh, dtype=float), np.full(n - k, unknown_cost)])
    surplus = np.clip(np.nan_to_num(np.asarray(surplus_kw, dtype=float)) * SURPLUS_FACTOR, 0.0, cfg.charger_max_kw)
    # Blocks: (cost, interval, kW); the surplus part of each interval, then its grid part.
    costs = np.concatenate([np.where(surplus > 0, exp, np.inf), imp])
    sizes = np.concatenate([surplus, cfg.charger_max_kw - surplus])
    where = np.concatenate([np.arange(n), np.arange(n)])
    order = np.lexsort((where, costs))  # cheapest first, earlier first among equals
    left = need_ac_kwh
    for b in order:
        if left <= 1e-9:
            break
        if sizes[b] <= 0 or not np.isfinite(costs[b]):
            continue
        take = min(sizes[b], left / dt_h)
        power[where[b]] += take
        left -= take * dt_h
    power = _respect_minimum(power, cfg.charger_min_kw, cfg.charger_max_kw, _Costs(surplus, imp, exp, dt_h),
                             need_ac_kwh, dt_h)
    power[power < 1e-9] = 0.0
    if top_kw < min(power[0], cfg.charger_min_kw) - 1e-9:
        power[0] = 0.0  # load balancing leaves less than the charger's minimum
    # A car that fills up within the interval stops drawing: the mean power is then below the charger's minimum.
    power[0] = min(power[0], top_kw, room_ac_kwh / dt_h)
    return EvPlan(power, _reason(power, surplus, imp, need_ac_kwh * cfg.efficiency, times, timezone, depart, dt_h))


def plan_ev_on(cfg: EvConfig, car_kwh: float, dt_h: float, forecasts: Any, intervals_left: int, timezone: str,
               max_kw: float | None = None) -> EvPlan:
    """:func:`plan_ev` on the forecasts a controller sees (:class:`dwars.policy.base.Forecasts`): the next
    ``intervals_left`` intervals before departure, cut to the forecast horizon, their known prices, and the forecast
    surplus PV - load."""
    left = min(int(intervals_left), forecasts.horizon)
    known = min(left, forecasts.n_price_known)
    surplus = np.asarray(forecasts.pv_kw[:left]) - np.asarray(forecasts.load_kw[:left])
    return plan_ev(cfg, car_kwh, dt_h, forecasts.times[:left], forecasts.import_price_eur_per_kwh[:known],
                   forecasts.export_price_eur_per_kwh[:known], surplus, timezone, max_kw)


def _clip_min(kw: float, min_kw: float, max_kw: float) -> float:
    """A charger power that exists: 0, or between the minimum and the maximum."""
    if kw <= 1e-9 or max_kw < min_kw:
        return 0.0
    return float(min(max(kw, min_kw), max_kw))


class _Costs:
    """What a plan costs: the surplus part of each interval at its export price, the rest at its import price."""

    def __init__(self, surplus_kw: np.ndarray, imp: np.ndarray, exp: np.ndarray, dt_h: float) -> None:
        self.surplus, self.imp, self.exp, self.dt_h = surplus_kw, imp, exp, dt_h

    def total(self, power: np.ndarray) -> float:
        own = np.minimum(power, self.surplus)
        return float(self.dt_h * np.sum(np.where(own > 0, self.exp * own, 0.0) + self.imp * (power - own)))

    def marginal(self, power: np.ndarray) -> np.ndarray:
        """EUR/kWh of the next (or last) bit of power in each interval."""
        return np.where(power < self.surplus - 1e-9, self.exp, self.imp)


def _respect_minimum(power: np.ndarray, min_kw: float, max_kw: float, costs: _Costs, need_ac_kwh: float,
                     dt_h: float) -> np.ndarray:
    """Make every interval 0 or at least the charger's minimum: each interval planned below it is either raised to
    the minimum (and the excess given back where it is dearest) or closed and its energy moved to open intervals
    with room, whichever costs less."""
    power = power.copy()
    for j in np.argsort(power, kind="stable"):
        if not 1e-9 < power[j] < min_kw - 1e-9:
            continue
        raised = power.copy()
        raised[j] = min_kw
        raised = _trim(raised, raised.sum() * dt_h - need_ac_kwh, min_kw, costs, keep=j)
        closed = power.copy()
        closed[j] = 0.0
        closed = _fill(closed, power[j] * dt_h, min_kw, max_kw, costs)
        power = raised if closed is None or costs.total(raised) <= costs.total(closed) else closed
    return np.clip(power, 0.0, max_kw)


def _trim(power: np.ndarray, excess_kwh: float, min_kw: float, costs: _Costs, keep: int) -> np.ndarray:
    """Take ``excess_kwh`` back from the dearest intervals, leaving each at 0 or at least ``min_kw``."""
    power = power.copy()
    for k in np.argsort(-costs.marginal(power), kind="stable"):
        if excess_kwh <= 1e-9:
            break
        if power[k] <= 0:
            continue
        floor = min_kw if k == keep or excess_kwh / costs.dt_h < power[k] - 1e-9 else 0.0
        cut = min(excess_kwh / costs.dt_h, power[k] - floor)
        if cut > 0:
            power[k] -= cut
            excess_kwh -= cut * costs.dt_h
    return power


def _fill(power: np.ndarray, kwh: float, min_kw: float, max_kw: float, costs: _Costs) -> np.ndarray | None:
    """Add ``kwh`` to the already open intervals (>= ``min_kw``) with room, cheapest first; None without room."""
    power = power.copy()
    for k in np.argsort(costs.marginal(power), kind="stable"):
        if kwh <= 1e-9:
            break
        if power[k] < min_kw - 1e-9:
            continue
        add = min(kwh / costs.dt_h, max_kw - power[k])
        power[k] += add
        kwh -= add * costs.dt_h
    return power if kwh <= 1e-9 else None


def _clock(t: pd.Timestamp, timezone: str) -> str:
    return t.tz_convert(timezone).strftime("%H:%M")


def _reason(power: np.ndarray, surplus: np.ndarray, imp: np.ndarray, need_kwh: float, times: pd.DatetimeIndex,
            timezone: str, depart: str, dt_h: float) -> str:
    planned = int(np.count_nonzero(power > 0))
    unit = "quarters" if dt_h < 1 else "hours"
    cheapest = f"the cheapest {unit[:-1]}" if planned == 1 else f"the cheapest {planned} {unit}"
    if power[0] <= 0:
        nxt = int(np.argmax(power > 0)) if planned else -1
        when = f"; next from {_clock(times[nxt], timezone)}" if nxt >= 0 else ""
        return f"EV: waiting for cheaper {unit} before {depart} (needs {need_kwh:.1f} kWh){when}"
    if surplus[0] >= power[0] - 1e-9:
        return f"EV: charging {power[0]:.1f} kW from solar surplus (needs {need_kwh:.1f} kWh by {depart})"
    return f"EV: charging {power[0]:.1f} kW in {cheapest} before {depart} (needs {need_kwh:.1f} kWh)"
