"""The live PV forecast: Open-Meteo's irradiance forecast through the home's own PV model, with a clear-sky fallback.

Open-Meteo (https://open-meteo.com/en/docs, no key):
``GET https://api.open-meteo.com/v1/forecast?latitude=52.1&longitude=5.18&minutely_15=shortwave_radiation,
direct_normal_irradiance,diffuse_radiation,temperature_2m&timezone=GMT&forecast_days=3`` (``hourly=`` for hourly
intervals) answers ``{"utc_offset_seconds": 0, "minutely_15_units": {...}, "minutely_15": {"time":
["2024-06-10T00:00", ...], "shortwave_radiation": [W/m2 or null, ...], ...}}``. Radiation values are means over
the PRECEDING 15 minutes (hour), so the value stamped 10:15 belongs to the interval starting 10:00; temperature is
the value at the stamp. Values the model does not reach are ``null``. Errors come as ``{"error": true, "reason":
...}`` with HTTP 400.

:func:`parse_open_meteo` turns an answer into a frame indexed by UTC interval START (``ghi_w_per_m2``,
``dni_w_per_m2``, ``dhi_w_per_m2``, ``temp_air_c``; NaN where the feed gave null). :class:`PvForecaster` turns
that into PV power with :func:`dwars.env.pv.pv_ac_kw`, the same model chain as the simulator (it decomposes GHI
itself; the feed's DNI and DHI are kept in the frame for inspection), and fills every interval the feed cannot
give (feed down, null, not far enough ahead) with the simulator's fallback: clear-sky PV times the recent
clear-sky index of the measured PV (:func:`dwars.env.forecast.clearsky_index_state`).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dwars.config import Installation
from dwars.env.forecast import (
    PRIOR_CLEARSKY_INDEX,
    clean_clearsky_ghi_w_per_m2,
    clearsky_index_forecast_kw,
    clearsky_index_state,
    clearsky_pv_kw,
    persistence_decay,
)
from dwars.env.pv import DEFAULT_TEMP_AIR_C, pv_ac_kw
from dwars.errors import DataError

OPEN_METEO_URL = "https://api.open-meteo.com/v1/forecast"
#: Open-Meteo variable -> dwars column, with the unit Open-Meteo must report for it.
OPEN_METEO_VARIABLES: dict[str, tuple[str, str]] = {
    "shortwave_radiation": ("ghi_w_per_m2", "W/m²"),
    "direct_normal_irradiance": ("dni_w_per_m2", "W/m²"),
    "diffuse_radiation": ("dhi_w_per_m2", "W/m²"),
    "temperature_2m": ("temp_air_c", "°C"),
}
_RADIATION = ("ghi_w_per_m2", "dni_w_per_m2", "dhi_w_per_m2")


class WeatherFeedError(DataError):
    """The weather feed is down or answered something unusable."""


def _block(minutes: int) -> str:
    if minutes not in (15, 60):
        raise ValueError(f"minutes = {minutes}: must be 15 or 60")
    return "minutely_15" if minutes == 15 else "hourly"


def open_meteo_url(latitude: float, longitude: float, minutes: int = 15, base_url: str = OPEN_METEO_URL,
                   forecast_days: int = 3) -> str:
    """The request for the irradiance and temperature forecast at 15 (``minutely_15``) or 60 (``hourly``) minutes.

    Times are asked for in GMT (``timezone=GMT``), ``forecast_days`` from today 00:00 GMT (3 covers the 36 h
    horizon from any moment of today).
    """
    query = {"latitude": f"{latitude:.4f}", "longitude": f"{longitude:.4f}",
             _block(minutes): ",".join(OPEN_METEO_VARIABLES), "timezone": "GMT", "forecast_days": forecast_days}
    return f"{base_url}?{urllib.parse.urlencode(query)}"


def parse_open_meteo(payload: bytes | str, minutes: int = 15) -> pd.DataFrame:
    """The forecast in an Open-Meteo answer, per interval (UTC start), see the module text.

    Raises
    ------
    WeatherFeedError
        for an error answer, JSON without the expected block, a variable missing or in another unit, or times
        that are not a regular grid of ``minutes``.
    """
    where = "Open-Meteo forecast"
    block = _block(minutes)
    try:
        data = json.loads(payload)
    except ValueError as err:
        raise WeatherFeedError(f"{where}: unusable answer (not JSON: {err})") from None
    if not isinstance(data, dict):
        raise WeatherFeedError(f"{where}: unusable answer (a JSON {type(data).__name__}, expected an object)")
    if data.get("error"):
        raise WeatherFeedError(f"{where}: refused: {data.get('reason', 'no reason given')}")
    if not isinstance(data.get(block), dict):
        raise WeatherFeedError(f"{where}: the answer has no {block!r} block")
    values, units = data[block], data.get(f"{block}_units", {})
    try:
        stamps = pd.DatetimeIndex(pd.to_datetime(values["time"]))
        offset = pd.Timedelta(seconds=int(data.get("utc_offset_seconds", 0)))
    except (KeyError, ValueError, TypeError) as err:
        raise WeatherFeedError(f"{where}: unusable times ({type(err).__name__}: {err})") from None
    stamps = ((stamps.tz_localize("UTC") if stamps.tz is None else stamps.tz_convert("UTC")) - offset).as_unit("ns")
    step = pd.Timedelta(minutes=minutes)
    if len(stamps) < 2 or not (np.diff(stamps.asi8) == step.value).all():
        raise WeatherFeedError(f"{where}: times are not a regular {minutes}-minute grid "
                               f"({len(stamps)} stamps from {stamps[0] if len(stamps) else 'none'})")
    columns: dict[str, np.ndarray] = {}
    for name, (column, unit) in OPEN_METEO_VARIABLES.items():
        if name not in values:
            raise WeatherFeedError(f"{where}: {block}.{name} missing from the answer")
        if name in units and units[name] != unit:
            raise WeatherFeedError(f"{where}: {block}.{name} in {units[name]!r}, expected {unit!r}")
        try:
            raw = np.array([np.nan if v is None else float(v) for v in values[name]], dtype=float)
        except (TypeError, ValueError) as err:
            raise WeatherFeedError(f"{where}: {block}.{name}: not a number ({err})") from None
        if len(raw) != len(stamps):
            raise WeatherFeedError(f"{where}: {block}.{name} has {len(raw)} values for {len(stamps)} times")
        columns[column] = raw
    starts = (stamps - step).as_unit("ns")  # radiation: the mean over the interval that ENDS at the stamp
    frame = pd.DataFrame({c: columns[c] for c in _RADIATION}, index=pd.DatetimeIndex(starts, name="time"))
    # Temperature is instantaneous: the interval gets the mean of its two ends (the start alone at the edge).
    temp = pd.Series(columns["temp_air_c"], index=stamps.as_unit("ns"))
    at_start = temp.reindex(starts).to_numpy()
    frame["temp_air_c"] = np.where(np.isfinite(at_start), (at_start + temp.to_numpy()) / 2.0, temp.to_numpy())
    return frame


class OpenMeteoFeed:
    """Downloads the irradiance forecast for one site (see :func:`open_meteo_url`).

    Parameters
    ----------
    latitude, longitude : the site, degrees.
    minutes : interval length, 15 (``minutely_15``) or 60 (``hourly``).
    base_url : the endpoint (tests point it at a local server).
    timeout_s : network timeout, seconds.
    forecast_days : days asked for.
    """

    def __init__(self, latitude: float, longitude: float, minutes: int = 15, base_url: str = OPEN_METEO_URL,
                 timeout_s: float = 10.0, forecast_days: int = 3) -> None:
        self.url = open_meteo_url(latitude, longitude, minutes, base_url, forecast_days)
        self.minutes = minutes
        self.timeout_s = float(timeout_s)

    def fetch(self) -> pd.DataFrame:
        """The forecast frame (:class:`WeatherFeedError` when the feed is down or answers garbage)."""
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as err:
            body = err.read() or b""
            try:
                reason = json.loads(body).get("reason", "no reason given")
            except (ValueError, AttributeError):
                reason = "no reason given"
            raise WeatherFeedError(f"Open-Meteo forecast: refused (HTTP {err.code}: {reason})") from None
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            raise WeatherFeedError(f"Open-Meteo forecast: feed unreachable ({getattr(err, 'reason', err)})") from None
        return parse_open_meteo(payload, self.minutes)


@dataclass(frozen=True)
class PvForecast:
    """A PV forecast for the intervals asked for.

    Attributes
    ----------
    pv_kw : mean AC power per interval, kW, finite and >= 0.
    from_weather : per interval, True where the weather forecast gave the value, False where the fallback did.
    causes : ``(key, message)`` for each reason the fallback was needed (stable keys, for logging once).
    """

    pv_kw: np.ndarray
    from_weather: np.ndarray
    causes: tuple[tuple[str, str], ...] = ()


class PvForecaster:
    """PV forecasts from a weather feed through the home's PV model, the clear-sky fallback filling the gaps.

    Parameters
    ----------
    inst : the installation (its ``[pv]`` arrays and site; without ``[pv]`` only the fallback can forecast).
    minutes : interval length, 15 or 60; the feed must deliver the same.
    feed : an object with ``fetch() -> frame`` like :class:`OpenMeteoFeed` (None: the fallback only).
    refresh_min : minutes between downloads (weather models update hourly).
    max_age_h : a forecast older than this is no longer used when the feed cannot be reached.

    The fallback is :mod:`dwars.env.forecast`'s ``clearsky_index`` mode applied to the measured PV: the clear-sky
    index of the last hour and of the last day (:func:`~dwars.env.forecast.clearsky_index_state`), blended over
    the lead time with e-folding time :data:`~dwars.env.forecast.PERSISTENCE_H`, times the clear-sky PV.
    """

    def __init__(self, inst: Installation, minutes: int, feed: Any | None = None, refresh_min: float = 60.0,
                 max_age_h: float = 6.0) -> None:
        if feed is not None and getattr(feed, "minutes", minutes) != minutes:
            raise ValueError(f"feed delivers {feed.minutes}-minute intervals, the forecast needs {minutes}")
        _block(minutes)  # 15 or 60
        self.inst = inst
        self.minutes = minutes
        self.feed = feed
        self.refresh = pd.Timedelta(minutes=refresh_min)
        self.max_age = pd.Timedelta(hours=max_age_h)
        self._frame: pd.DataFrame | None = None
        self._fetched_at: pd.Timestamp | None = None
        self._tried_at: pd.Timestamp | None = None
        self._last_error: str | None = None

    # ------------------------------------------------------------------ weather

    def weather(self, now: pd.Timestamp) -> tuple[pd.DataFrame | None, tuple[tuple[str, str], ...]]:
        """The current weather forecast frame (downloaded when due) and why it is missing, if it is."""
        if self.feed is None:
            return None, ()
        due = self._tried_at is None or now - self._tried_at >= self.refresh
        if due:
            self._tried_at = now
            try:
                self._frame, self._fetched_at, self._last_error = self.feed.fetch(), now, None
            except WeatherFeedError as err:
                self._last_error = str(err)
        if self._frame is not None and self._fetched_at is not None and now - self._fetched_at > self.max_age:
            self._frame = None  # too old to trust
        if self._last_error is None:
            return self._frame, ()
        kept = (f"; still using the forecast of {self._fetched_at:%Y-%m-%d %H:%M}Z"
                if self._frame is not None else "; using the clear-sky fallback")
        return self._frame, (("weather_feed", self._last_error + kept),)

    # ------------------------------------------------------------------ forecast

    def forecast(self, times: pd.DatetimeIndex, measured_pv_kw: pd.Series, now: pd.Timestamp) -> PvForecast:
        """PV forecast (kW) for ``times`` (UTC interval starts, regular), made at ``now``.

        Parameters
        ----------
        times : the forecast intervals, the first being the one to decide.
        measured_pv_kw : measured PV per interval (kW, UTC-indexed at ``minutes``) strictly before ``times[0]``;
            gaps and NaN are allowed (they carry no information).
        now : the current time (when the weather feed is due again).
        """
        times = pd.DatetimeIndex(times).tz_convert("UTC").as_unit("ns")
        frame, causes = self.weather(pd.Timestamp(now))
        pv = np.full(len(times), np.nan)
        if frame is not None and self.inst.pv is not None:
            ahead = frame.reindex(times)
            ok = np.isfinite(ahead["ghi_w_per_m2"].to_numpy())
            if ok.any():
                temp = ahead["temp_air_c"].to_numpy()[ok]
                temp = np.where(np.isfinite(temp), temp, DEFAULT_TEMP_AIR_C)
                pv[ok] = pv_ac_kw(times[ok], ahead["ghi_w_per_m2"].to_numpy()[ok], temp, self.inst.site,
                                  self.inst.pv, self.minutes).to_numpy()
            if not ok.all():
                first = times[~ok][0]
                causes += (("weather_nan", f"the weather forecast has no irradiance for {int((~ok).sum())} of "
                                           f"{len(times)} intervals (first {first:%Y-%m-%d %H:%M}Z); the clear-sky "
                                           "fallback fills them"),)
        elif self.inst.pv is None:
            causes += (("no_pv_model", f"{self.inst.name}: no [pv] section, so the PV forecast is the measured "
                                       "PV's clear-sky index times clear sky"),)
        from_weather = np.isfinite(pv)
        if not from_weather.all():
            pv[~from_weather] = self.clearsky_fallback_kw(times, measured_pv_kw)[~from_weather]
        return PvForecast(pv, from_weather, causes)

    def clearsky_fallback_kw(self, times: pd.DatetimeIndex, measured_pv_kw: pd.Series) -> np.ndarray:
        """The fallback forecast (kW) for ``times`` from the measured PV before ``times[0]`` (see the class text)."""
        times = pd.DatetimeIndex(times).tz_convert("UTC").as_unit("ns")
        step = pd.Timedelta(minutes=self.minutes)
        measured = measured_pv_kw.dropna()
        if len(measured):
            measured = measured[pd.DatetimeIndex(measured.index).tz_convert("UTC") < times[0]]
        first = measured.index[0] if len(measured) else times[0]
        # One grid from the first measurement through the horizon: sums before times[0] use measurements only;
        # unmeasured intervals count neither measured nor clear-sky energy (no information).
        grid = pd.date_range(first, times[-1], freq=step).as_unit("ns")
        ref = self._reference_kw(grid)
        pv = measured.reindex(grid).to_numpy(dtype=float)
        known = np.isfinite(pv) & (grid < times[0])
        prior = PRIOR_CLEARSKY_INDEX if self.inst.pv is not None else 0.0
        k_recent, k_day = clearsky_index_state(np.where(known, pv, 0.0), np.where(known | (grid >= times[0]), ref, 0.0),
                                               self.minutes, prior)
        i = int(np.searchsorted(grid.asi8, times[0].value))
        target = ref[i + ((times - times[0]) // step).to_numpy(dtype=np.int64)]
        return clearsky_index_forecast_kw(k_recent[i], k_day[i], persistence_decay(len(times), self.minutes / 60.0),
                                          target, self.inst.pv is not None)

    def _reference_kw(self, times: pd.DatetimeIndex) -> np.ndarray:
        if self.inst.pv is not None:
            return clearsky_pv_kw(times, self.inst, self.minutes)
        return clean_clearsky_ghi_w_per_m2(times, self.inst.site, self.minutes) / 1000.0
