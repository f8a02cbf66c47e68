"""Live inputs of the control loop: published prices, the PV forecast and the home's own load history, shaped
into the same :class:`~dwars.policy.base.Forecasts` the simulator's :class:`~dwars.env.forecast.Forecaster` gives.

:meth:`LiveInputs.at` is the live twin of :meth:`dwars.runtime.loop.ReplayInputs.at`. For the interval starting
at ``when`` it returns a forecast of the same horizon (36 h by default), with

- prices known only as far as they are published (:func:`~dwars.env.forecast.price_known_until`: today's until
  13:00 local, then tomorrow's too), from the chosen :class:`~dwars.runtime.prices.PriceSource`, hourly prices
  held over the quarter hours at 15 minutes (quarter-hour prices averaged at 60); import and export prices from
  the home's :class:`~dwars.env.tariff.Tariff`;
- PV from the weather feed through the home's PV model, gaps filled by the clear-sky fallback
  (:class:`~dwars.runtime.weather_feed.PvForecaster`);
- load from the measured history (:class:`~dwars.runtime.history.LoadHistory`), the standard profile where
  weeks are missing;
- the goal deadlines of :func:`dwars.env.goals.deadlines` within the horizon.

Faults never crash the loop. A forecast with holes (feed down, null values) is filled by the fallback and the
cause logged once, until it clears. Tomorrow's prices missing after 13:00 shorten the known prices (logged once).
No price for the interval itself (feed down and no cached copy, or only older days: stale prices) raises
:class:`~dwars.runtime.loop.InputError` with a plain message; the loop then logs it and leaves the inverter on
self-consumption.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from dwars.config import Installation
from dwars.data.resample import resample
from dwars.env.forecast import MAX_HORIZON_H, PUBLISH_HOUR_LOCAL, price_known_until
from dwars.env.goals import deadlines
from dwars.env.load import profile_load_kw
from dwars.errors import DwarsError
from dwars.policy.base import Forecasts, Home
from dwars.runtime.history import LoadHistory
from dwars.runtime.loop import CauseLog, InputError, Inputs
from dwars.runtime.weather_feed import PvForecaster
from dwars.timegrid import RESOLUTIONS_MIN, infer_resolution

log = logging.getLogger(__name__)


def _frozen(values: np.ndarray) -> np.ndarray:
    arr = np.array(values, dtype=float)
    arr.flags.writeable = False  # as the Forecaster's views: a controller cannot change the inputs
    return arr


class LiveInputs:
    """Inputs for the control loop from live feeds (see the module text).

    Parameters
    ----------
    home : the home (a :class:`~dwars.policy.base.Home` or an :class:`~dwars.config.Installation`).
    minutes : interval length of the loop, 15 or 60.
    price_source : an object with ``day(local date) -> (EUR/MWh series, source)``, e.g.
        :class:`~dwars.runtime.prices.PriceSource`.
    weather_source : a :class:`~dwars.runtime.weather_feed.PvForecaster` (None: the clear-sky fallback only).
    history : the measured load and PV.
    clock : an object with ``now()`` (UTC) that times the downloads; None: the interval start being decided.
    horizon_h : forecast horizon, hours (as the Forecaster's).
    publish_hour_local : local hour from which tomorrow's prices are known.
    history_weeks : weeks averaged by the load forecast.
    pv_history_days : days of measured PV the clear-sky index looks at.
    price_retry_min : minutes before a day whose prices could not be had is asked for again.
    """

    def __init__(self, home: Home | Installation, minutes: int, price_source: Any, weather_source: PvForecaster | None,
                 history: LoadHistory, clock: Any | None = None, *, horizon_h: float = 36.0,
                 publish_hour_local: int = PUBLISH_HOUR_LOCAL, history_weeks: int = 4, pv_history_days: float = 7.0,
                 price_retry_min: float = 15.0) -> None:
        if minutes not in RESOLUTIONS_MIN:
            raise ValueError(f"minutes = {minutes}: must be one of {', '.join(map(str, RESOLUTIONS_MIN))}")
        if not 0 < horizon_h <= MAX_HORIZON_H:
            raise ValueError(f"horizon_h = {horizon_h}: must be > 0 and <= {MAX_HORIZON_H:g}")
        self.home = home if isinstance(home, Home) else Home.from_installation(home)
        self.inst = self.home.installation
        self.tz = self.inst.site.timezone
        self.minutes = int(minutes)
        self.step = pd.Timedelta(minutes=minutes)
        self.horizon = max(1, round(horizon_h * 60 / minutes))  # the Forecaster's H
        self.price_source = price_source
        self.pv = weather_source if weather_source is not None else PvForecaster(self.inst, minutes)
        if self.pv.minutes != self.minutes:
            raise ValueError(f"weather_source forecasts {self.pv.minutes}-minute intervals, the loop runs {minutes}")
        self.history = history
        self.clock = clock
        self.publish_hour_local = publish_hour_local
        self.history_weeks = history_weeks
        self.pv_history = pd.Timedelta(days=pv_history_days)
        self.price_retry = pd.Timedelta(minutes=price_retry_min)
        self.causes = CauseLog(log)
        self._days: dict[date, pd.Series] = {}
        self._failed: dict[date, tuple[pd.Timestamp, str]] = {}

    # ------------------------------------------------------------------ the loop's entry point

    def at(self, when: pd.Timestamp) -> Inputs:
        """The inputs for the interval starting at ``when`` (tz-aware; on the interval grid).

        Raises
        ------
        InputError
            when ``when`` is not an interval start, or there is no price for the interval itself.
        """
        start = self._check_when(when)
        now = pd.Timestamp(self.clock.now()) if self.clock is not None else start
        causes: dict[str, str] = {}
        times = pd.date_range(start, periods=self.horizon, freq=self.step, name="time").as_unit("ns")
        epex = self._known_prices(start, times, now, causes)
        known = times[:len(epex)]

        measured = self.history.series(start - self.pv_history, start, self.minutes)
        pv = self.pv.forecast(times, measured["pv_kw"], now)
        causes.update(dict(pv.causes))
        pv_kw = np.asarray(pv.pv_kw, dtype=float)  # finite: the fallback fills the feed's gaps (and the control
        # loop's repair_forecasts would count any left as no sun)

        load_kw = self.history.load_forecast_kw(times, self.minutes, self.inst.load.annual_kwh, self.history_weeks)
        if not np.isfinite(load_kw).all():
            bad = ~np.isfinite(load_kw)
            causes["load_nan"] = (f"the load forecast had {int(bad.sum())} non-finite values; the standard profile "
                                  "replaces them")
            profile = profile_load_kw(times, self.inst.load.annual_kwh, tz=self.tz, minutes=self.minutes).to_numpy()
            load_kw = np.where(bad, profile, load_kw)
        self.causes.update(causes)

        forecasts = Forecasts(
            times=times,
            pv_kw=_frozen(pv_kw),
            load_kw=_frozen(load_kw),
            epex_eur_per_mwh=_frozen(epex),
            import_price_eur_per_kwh=_frozen(self.home.tariff.import_price(epex, known)),
            export_price_eur_per_kwh=_frozen(self.home.tariff.export_price(epex, known)),
            deadlines=tuple(deadlines(self.inst, start, start + self.horizon * self.step, self.minutes)),
        )
        last_load, last_pv = self.history.last(start - self.step, self.minutes)
        return Inputs(forecasts, last_pv, last_load)

    # ------------------------------------------------------------------ prices

    def _check_when(self, when: pd.Timestamp) -> pd.Timestamp:
        ts = pd.Timestamp(when)
        if ts.tzinfo is None:
            raise InputError(f"interval start {ts}: must be timezone-aware (dwars computes in UTC)")
        ts = ts.tz_convert("UTC").as_unit("ns")
        if ts.value % self.step.value:
            raise InputError(f"{ts.isoformat()} is not the start of a {self.minutes}-minute interval")
        return ts

    def _known_prices(self, start: pd.Timestamp, times: pd.DatetimeIndex, now: pd.Timestamp,
                      causes: dict[str, str]) -> np.ndarray:
        """EPEX (EUR/MWh) of the intervals from ``start`` whose prices are published, at most the horizon."""
        until = min(price_known_until(start, self.tz, self.publish_hour_local), times[-1] + self.step)
        first_day = start.tz_convert(self.tz).date()
        last_day = (until - pd.Timedelta(1, "ns")).tz_convert(self.tz).date()
        parts = []
        for day in pd.date_range(first_day, last_day, freq="D").date:
            series = self._day(day, now)
            if isinstance(series, str):  # why the day is missing
                if day == first_day:
                    raise InputError(self._no_price_message(start, series))
                causes["prices_next_day"] = (f"day-ahead prices for {day.isoformat()} are not available yet "
                                             f"({series}); the controllers see prices until "
                                             f"{pd.Timestamp(day).strftime('%Y-%m-%d')} 00:00 local")
                break
            parts.append(series)
        prices = pd.concat(parts)
        source_minutes = infer_resolution(prices.index) if len(prices) > 1 else 60
        if source_minutes != self.minutes:
            # Hourly market at 15 minutes: each hour's price holds for its quarters; quarter hours at 60: the mean.
            prices = resample(prices, "price", self.minutes, source_minutes)
        window = prices[(prices.index >= start) & (prices.index < until)]
        expected = times[times < until][:len(window)]
        if not window.index.equals(expected):  # pragma: no cover - each day is checked whole by the parsers
            raise InputError(f"prices from {start.isoformat()} are not a regular {self.minutes}-minute series")
        return window.to_numpy(dtype=float)

    def _day(self, day: date, now: pd.Timestamp) -> pd.Series | str:
        """A local day's prices (memoised: published prices do not change), or why they are missing."""
        if day in self._days:
            return self._days[day]
        failed = self._failed.get(day)
        if failed is not None and now - failed[0] < self.price_retry:
            return failed[1]
        try:
            series, source = self.price_source.day(day)
        except DwarsError as err:
            self._failed[day] = (now, str(err))
            return str(err)
        log.info("day-ahead prices for %s from %s: %d intervals", day.isoformat(), source, len(series))
        self._failed.pop(day, None)
        self._days[day] = series
        for old in [d for d in self._days if d < day - pd.Timedelta(days=2)]:
            del self._days[old]  # keep today, tomorrow and a little margin
        return series

    def _no_price_message(self, start: pd.Timestamp, reason: str) -> str:
        local = start.tz_convert(self.tz)
        older = [d for d in self._days if d < local.date()]
        stale = ""
        if older:
            newest = self._days[max(older)].index[-1].tz_convert(self.tz)
            stale = f"; the newest price dwars has is for {newest:%Y-%m-%d %H:%M}, which is stale"
        return (f"no day-ahead price for the interval {local:%Y-%m-%d %H:%M} ({self.tz}): {reason}{stale}")
