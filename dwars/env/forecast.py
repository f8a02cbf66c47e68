"""Forecasts of prices, PV and household load as a controller sees them at the start of an interval.

Shared by the simulator, the evaluation and (later) the Pi runtime. Controllers other than the oracle see
these forecasts, never actuals. Everything is precomputed per scenario by :class:`Forecaster`, so that a
forecast for one interval (:meth:`Forecaster.at`) is a handful of array slices.

Prices
    EPEX day-ahead prices for the next local day are published around 12:45-13:00 local time. Before
    ``publish_hour_local`` (13:00) prices are known until the next local midnight, from then on until the
    local midnight after that (:func:`price_known_until`). Known prices are exact (they are the published
    ones); beyond them a controller gets nothing (``Forecasts.n_price_known``). The longest known horizon is
    11 h + 25 h = 36 h, at 13:00 on the day before the autumn DST day.

PV, ``pv_mode``
    ``"weather"`` (default): a synthetic weather-service forecast. The simulator emulates a forecast by
    taking the actual PV and adding an error, additive in the clear-sky index:
    ``forecast = clip(actual + envelope * e, 0, envelope)``, where ``envelope`` is the installation's PV
    under a clean clear sky (:func:`clearsky_pv_kw`), so a forecast is never negative, never above what
    the sky allows, and 0 at night. ``e`` comes from :class:`PvErrorModel`: the error of a forecast issued
    at ``i`` for target ``j`` is the sum of the revisions it still has to go through before the target,
    ``e(i, j) = sum_{m=i..j} s(j - m) G_m(j)``, with ``G_m`` an AR(1) process along the target time
    (correlation time 3 h) drawn independently for each issue ``m``, and revision sizes ``s`` such that the
    error std at lead time L (issue to END of the target interval) is
    ``sigma(L) = 0.01 + (0.15 - 0.01) (1 - exp(-L / 6 h))`` (clear-sky index units). So errors grow with
    lead time, are correlated along the horizon (a cloud field is misforecast for hours, not for one
    quarter), and a forecast issued one interval later differs from the previous one only by one more
    revision: consecutive forecasts are consistent and converge on the actual as the target approaches.

    Calibration, measured on the bundled 2024 De Bilt weather with ``examples/home.toml`` at 15 minutes
    over all issues (:func:`pv_skill_by_lead`; nRMSE = RMSE / mean actual PV over the intervals with the
    sun up; 5 seeds): first quarter 5.3 %, 0.25-1 h 7.3 %, 1-4 h 14.3 %, 4-12 h 25 %, 12-24 h 31 %,
    24-36 h 32 %, bias within +-0.5 %. Literature for single sites: intraday 1-4 h ~10-20 %, day-ahead
    ~25-40 % (Lorenz et al. 2009; Pelland et al. 2013; Antonanzas et al. 2016). 3.8 points of the first
    quarter's 5.3 % are the envelope itself: measured PV exceeds the clean clear-sky PV in 5 % of the
    daylight intervals (low sun, diffuse-rich skies), and the forecast is clipped there.

    The error does not depend on any actual, but the forecast does (it is actual + error): a test that
    perturbs future actuals to find leaks must perturb load or prices, or use ``pv_mode="clearsky_index"``.

    ``"clearsky_index"``: the fallback without a weather forecast, built only from PV measured strictly
    before the issue: the clear-sky index of the last hour (``k_recent``) and of the last 24 h (``k_day``),
    each shrunk towards the next longer window by a prior weight of a quarter hour of the envelope's peak
    power (so a window with little daylight, at dawn, leans on the longer one); the forecast is
    ``envelope * (k_day + (k_recent - k_day) exp(-L / 6 h))``: near targets follow the last hour, far ones
    the last day. Measured as above: 31 % (first quarter), 40 %, 58 %, 75 %, 76 %, 76 %.

    ``"perfect"``: the actual PV (for the oracle, and to prove the shield with forecasts == actuals).

Load, ``load_mode``
    ``"history"`` (default): the mean of the home's own ACTUAL load at the same weekday and local clock
    time over the last ``history_weeks`` (4) weeks, all strictly before the issue (the horizon is at most
    6 days, so a week back is always in the past). A week that is not available (before the scenario
    starts; the clock time skipped on a spring DST day) is replaced by the standard profile (NEDU E1A
    scaled to ``[load] annual_kwh``), so the forecast blends from the pure profile on the first day to the
    pure history after four weeks. On an autumn DST day the doubled hour counts as the mean of its two
    occurrences. Because every source lies a week or more before the target, the load forecast depends on
    the target only, not on the issue.

    ``"profile"``: the standard profile only. ``"perfect"``: the actual load.

Leak rule: except in the perfect modes (and the documented ``"weather"`` PV), nothing made at interval
``i`` reads an actual at or after ``i``.
"""

from __future__ import annotations

import operator
import warnings
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Literal, overload

import numpy as np
import numpy.typing as npt
import pandas as pd
import pvlib

from dwars.config import Installation, SiteConfig
from dwars.data.scenario import Scenario
from dwars.env.goals import Deadline, deadlines
from dwars.env.irradiance import interval_solar_position
from dwars.env.load import profile_load_kw
from dwars.env.pv import CLEAN_SKY_LINKE_TURBIDITY, pv_ac_kw
from dwars.policy.base import Forecasts, Home
from dwars.timegrid import LOCAL_TZ

PvMode = Literal["weather", "clearsky_index", "perfect"]
LoadMode = Literal["history", "profile", "perfect"]
PV_MODES: tuple[str, ...] = ("weather", "clearsky_index", "perfect")
LOAD_MODES: tuple[str, ...] = ("history", "profile", "perfect")

#: Local clock hour from which the next day's day-ahead prices are known (EPEX publishes ~12:45 CET).
PUBLISH_HOUR_LOCAL = 13

#: Longest forecast horizon in hours. The load history looks back whole weeks; with at most 6 days ahead
#: (and one hour of DST shift) every source interval lies strictly before the issue.
MAX_HORIZON_H = 144.0

#: Air temperature of the clear-sky envelope, degC: a cold sunny day gives the most PV, so the envelope
#: bounds summer and winter alike (with 16 degC, measured PV exceeded it 70 % more often in 2024).
CLEARSKY_TEMP_AIR_C = 0.0

#: Clear-sky GHI (kW/m2) above which the ratio measured PV / clear-sky GHI sizes the envelope of a home
#: without a ``[pv]`` section (lower sun: the ratio is dominated by orientation, not by system size).
ENVELOPE_MIN_REF_KW_PER_M2 = 0.2
#: Quantile of that ratio taken as the envelope scale (the odd cloud-enhanced interval stays above it).
ENVELOPE_QUANTILE = 0.999

#: Window of the recent clear-sky index (fallback PV forecast), hours.
RECENT_WINDOW_H = 1.0
#: Window of the daily clear-sky index (fallback PV forecast), hours.
DAY_WINDOW_H = 24.0
#: Lead time over which the fallback forecast moves from the recent to the daily clear-sky index, hours.
PERSISTENCE_H = 6.0
#: Prior weight of the shrinkage of a clear-sky index towards the next longer window, as hours of the
#: envelope's peak power.
PRIOR_WEIGHT_H = 0.25
#: Clear-sky index assumed before any PV has been measured (homes with ``[pv]``; 2024 De Bilt: 0.50).
PRIOR_CLEARSKY_INDEX = 0.5

NS_PER_MIN = 60 * 1_000_000_000
NS_PER_DAY = 1440 * NS_PER_MIN


# --------------------------------------------------------------------------------------------------
# Prices


@overload
def price_known_until(now_utc: pd.Timestamp | datetime, tz: str = ..., publish_hour_local: int = ...) -> pd.Timestamp:
    ...


@overload
def price_known_until(now_utc: pd.DatetimeIndex, tz: str = ..., publish_hour_local: int = ...) -> pd.DatetimeIndex:
    ...


def price_known_until(
    now_utc: pd.Timestamp | datetime | pd.DatetimeIndex,
    tz: str = LOCAL_TZ,
    publish_hour_local: int = PUBLISH_HOUR_LOCAL,
) -> pd.Timestamp | pd.DatetimeIndex:
    """End (exclusive, UTC) of the day-ahead prices known at ``now``.

    Before ``publish_hour_local``:00 local time the prices are known until the next local midnight; from
    then on until the local midnight after that (the end of tomorrow). Midnights are taken on the local
    clock, so a DST day counts 23 or 25 hours.

    Parameters
    ----------
    now_utc : tz-aware instant(s), e.g. the start of the interval being decided.
    tz : the market's clock (Europe/Amsterdam).
    publish_hour_local : local hour (0..23) from which tomorrow's prices are known.

    Returns
    -------
    A UTC Timestamp for a scalar ``now``, a UTC DatetimeIndex (ns) for an index.

    Raises
    ------
    ValueError
        for naive times or an hour outside 0..23.
    """
    if not 0 <= publish_hour_local <= 23:
        raise ValueError(f"publish_hour_local = {publish_hour_local}: must be 0..23")
    scalar = not isinstance(now_utc, pd.DatetimeIndex)
    idx = pd.DatetimeIndex([pd.Timestamp(now_utc)]) if scalar else pd.DatetimeIndex(now_utc)
    if idx.tz is None:
        raise ValueError("now_utc: naive timestamps; give tz-aware (UTC) instants")
    wall = idx.tz_convert(tz).tz_localize(None).as_unit("ns")
    day = wall.normalize()
    published = (wall - day) >= pd.Timedelta(hours=publish_hour_local)
    ahead = pd.to_timedelta(np.where(published, 2, 1), unit="D")
    # Amsterdam's clock never skips or repeats midnight; for zones that do, take the earliest valid instant.
    ends = (day + ahead).tz_localize(tz, ambiguous=np.ones(len(idx), bool), nonexistent="shift_forward")
    ends = ends.tz_convert("UTC").as_unit("ns")
    return ends[0] if scalar else ends


# --------------------------------------------------------------------------------------------------
# Clear sky


def clean_clearsky_ghi_w_per_m2(times: pd.DatetimeIndex, site: SiteConfig, minutes: int) -> np.ndarray:
    """Clear-sky GHI of a very clean sky (Ineichen, Linke turbidity 2.0) at interval midpoints, W/m2, >= 0.

    Unlike :func:`dwars.env.irradiance.clearsky_ghi_w_per_m2` (climatological turbidity, a typical clear
    sky), this is an upper bound: measured hourly GHI in De Bilt 2024 exceeded the climatological clear
    sky in 28 % of daylight intervals, this one in 5 %.
    """
    index = pd.DatetimeIndex(times).tz_convert("UTC").as_unit("ns")
    sun = interval_solar_position(index, site, minutes)
    zenith = sun["apparent_zenith"].to_numpy()
    mid = index + pd.Timedelta(minutes=minutes / 2.0)
    airmass = pvlib.atmosphere.get_absolute_airmass(pvlib.atmosphere.get_relative_airmass(zenith))
    dni_extra = pvlib.irradiance.get_extra_radiation(mid.day_of_year.to_numpy())
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # airmass is NaN with the sun below the horizon
        cs = pvlib.clearsky.ineichen(zenith, airmass, CLEAN_SKY_LINKE_TURBIDITY, altitude=0.0, dni_extra=dni_extra)
    return np.maximum(np.nan_to_num(np.asarray(cs["ghi"], dtype=float), nan=0.0), 0.0)


def clearsky_pv_kw(times: pd.DatetimeIndex, inst: Installation, minutes: int) -> np.ndarray:
    """The installation's PV under a clean clear sky at :data:`CLEARSKY_TEMP_AIR_C`, kW per interval.

    The envelope of every PV forecast: what the sky allows. The same model chain as the actual PV
    (:func:`dwars.env.pv.pv_ac_kw`), fed with :func:`clean_clearsky_ghi_w_per_m2`.

    Raises
    ------
    ValueError
        when the installation has no ``[pv]`` section.
    """
    if inst.pv is None:
        raise ValueError(f"{inst.name}: no [pv] section, so no clear-sky PV to model")
    ghi = clean_clearsky_ghi_w_per_m2(times, inst.site, minutes)
    return pv_ac_kw(times, ghi, CLEARSKY_TEMP_AIR_C, inst.site, inst.pv, minutes).to_numpy()


# --------------------------------------------------------------------------------------------------
# PV forecast error


@dataclass(frozen=True)
class PvErrorModel:
    """Error of a synthetic weather-based PV forecast, in clear-sky index units (fraction of the envelope).

    The error std at lead time L (hours from the issue to the end of the target interval) is
    ``sigma(L) = sigma_first + (sigma_day_ahead - sigma_first) (1 - exp(-L / growth_h))``;
    :meth:`errors` builds it as a sum of revisions (see the module text), AR(1) along the target time with
    correlation time ``correlation_h``. Defaults calibrated on De Bilt 2024 (``docs/forecasts.md``).

    Attributes
    ----------
    sigma_first : std at lead 0 (the next quarter is known to within a few % of clear sky).
    sigma_day_ahead : std the error saturates at for long leads.
    growth_h : e-folding lead time of the growth of the error std, hours.
    correlation_h : correlation time of the error along the target time, hours.
    """

    sigma_first: float = 0.01
    sigma_day_ahead: float = 0.15
    growth_h: float = 6.0
    correlation_h: float = 3.0

    def sigma(self, lead_h: npt.ArrayLike) -> np.ndarray:
        """Error std (clear-sky index units) at lead times ``lead_h`` (hours, >= 0)."""
        lead = np.maximum(np.asarray(lead_h, dtype=float), 0.0)
        return self.sigma_first + (self.sigma_day_ahead - self.sigma_first) * (1.0 - np.exp(-lead / self.growth_h))

    def errors(self, n_issues: int, horizon: int, minutes: int, seed: int) -> np.ndarray:
        """Errors of the forecasts issued at intervals ``0..n_issues-1`` for their next ``horizon`` intervals.

        Parameters
        ----------
        n_issues : number of issue intervals.
        horizon : number of target intervals per issue (lead index 0 = the interval being decided).
        minutes : interval length.
        seed : seed of the random generator; the same seed gives the same errors.

        Returns
        -------
        Array (n_issues, horizon), clear-sky index units: ``e[i, L]`` is the error of the forecast issued at
        ``i`` for target ``i + L``, with std ``sigma((L + 1) * minutes / 60)``.
        """
        rng = np.random.default_rng(seed)
        dt_h = minutes / 60.0
        sig = self.sigma((np.arange(horizon) + 1) * dt_h)
        # Size of the revision at each lead: the variances of the revisions still to come add up to sigma^2.
        rev = np.sqrt(np.diff(sig**2, prepend=0.0))
        phi = float(np.exp(-dt_h / self.correlation_h))
        innovation = np.sqrt(1.0 - phi**2)
        rows = n_issues + horizon  # issues beyond the end feed the recursion of the last real ones
        out = np.empty((horizon, rows))
        g = rng.standard_normal(rows)  # revision made at issue m (row) for target m + L, AR(1) over L
        out[0] = rev[0] * g
        for lead in range(1, horizon):
            g = phi * g + innovation * rng.standard_normal(rows)
            # e(i, L) = revision made at i + e(i + 1, L - 1): the forecast of the next issue, plus what i
            # still does not know. The last row has no successor; it is never used for a real issue.
            out[lead, :-1] = rev[lead] * g[:-1] + out[lead - 1, 1:]
            out[lead, -1] = sig[lead] * rng.standard_normal()
        return out[:, :n_issues].T


DEFAULT_PV_ERROR = PvErrorModel()


# --------------------------------------------------------------------------------------------------
# Fallback PV forecast: recent clear-sky index


def clearsky_index_state(
    pv_kw: npt.ArrayLike,
    ref_kw: npt.ArrayLike,
    minutes: int,
    prior_index: float = PRIOR_CLEARSKY_INDEX,
) -> tuple[np.ndarray, np.ndarray]:
    """Recent and daily clear-sky index known at the start of every interval, from PV strictly before it.

    ``k_day(i) = (P24 + c k_all) / (R24 + c)`` and ``k_recent(i) = (P3 + c k_day) / (R3 + c)``, where P and
    R are the measured and the clear-sky energy over the last 24 h / 3 h before ``i`` (intervals ``< i``),
    ``k_all`` the same over all earlier intervals (prior ``prior_index``), and ``c`` the clear-sky energy
    of :data:`PRIOR_WEIGHT_H` hours at the reference's peak power.

    Parameters
    ----------
    pv_kw : measured PV per interval, kW.
    ref_kw : clear-sky reference per interval (the envelope, or clear-sky GHI in kW/m2), same length.
    minutes : interval length.
    prior_index : index before any PV was measured.

    Returns
    -------
    ``(k_recent, k_day)``, arrays of the same length, >= 0.
    """
    pv = np.asarray(pv_kw, dtype=float)
    ref = np.asarray(ref_kw, dtype=float)
    dt_h = minutes / 60.0
    c = PRIOR_WEIGHT_H * float(ref.max(initial=0.0))
    if c <= 0.0:
        return np.zeros(len(pv)), np.zeros(len(pv))
    # cum[i] = energy of intervals 0..i-1: every sum below ends strictly before i.
    cum_pv = np.concatenate(([0.0], np.cumsum(pv * dt_h)))[:-1]
    cum_ref = np.concatenate(([0.0], np.cumsum(ref * dt_h)))[:-1]
    idx = np.arange(len(pv))

    def window(cum: np.ndarray, hours: float) -> np.ndarray:
        # cum[back] counts the intervals before the window's first one, so the difference is [back, i).
        back = np.maximum(idx - round(hours / dt_h), 0)
        return cum - cum[back]

    k_all = (cum_pv + c * prior_index) / (cum_ref + c)
    k_day = (window(cum_pv, DAY_WINDOW_H) + c * k_all) / (window(cum_ref, DAY_WINDOW_H) + c)
    k_recent = (window(cum_pv, RECENT_WINDOW_H) + c * k_day) / (window(cum_ref, RECENT_WINDOW_H) + c)
    return np.maximum(k_recent, 0.0), np.maximum(k_day, 0.0)


# --------------------------------------------------------------------------------------------------
# Load forecast from history


def same_weekday_history_kw(
    load_kw: pd.Series, tz: str = LOCAL_TZ, weeks: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of the load at the same weekday and local clock time 1..``weeks`` weeks earlier.

    Parameters
    ----------
    load_kw : actual mean load per interval, kW, indexed by UTC interval start (regular grid).
    tz : the home's clock.
    weeks : how many weeks back.

    Returns
    -------
    ``(total_kw, count)`` per interval: the sum of the available earlier values and how many there were
    (a week is missing before the start of the series, or when its clock time did not exist, on a spring
    DST day). On an autumn DST day the doubled clock hour counts as the mean of its two occurrences.
    """
    index = pd.DatetimeIndex(load_kw.index).tz_convert("UTC").as_unit("ns")
    values = load_kw.to_numpy(dtype=float)
    wall = index.tz_convert(tz).tz_localize(None).as_unit("ns").asi8
    # One value per local clock instant: the autumn hour occurs twice, its two values are averaged.
    walls, inverse = np.unique(wall, return_inverse=True)
    by_wall = np.bincount(inverse, weights=values) / np.bincount(inverse)
    total = np.zeros(len(values))
    count = np.zeros(len(values), dtype=np.int64)
    for w in range(1, weeks + 1):
        query = wall - w * 7 * NS_PER_DAY
        pos = np.minimum(np.searchsorted(walls, query), len(walls) - 1)
        hit = walls[pos] == query
        total += np.where(hit, by_wall[pos], 0.0)
        count += hit
    return total, count


def history_load_forecast_kw(
    load_kw: pd.Series, fallback_kw: npt.ArrayLike, tz: str = LOCAL_TZ, weeks: int = 4
) -> np.ndarray:
    """Load forecast per target interval: mean of the same weekday and clock time over the last ``weeks``.

    Weeks without history take ``fallback_kw`` (the standard profile) instead: ``(sum of the available
    weeks + missing weeks * fallback) / weeks``.

    Parameters
    ----------
    load_kw : actual load, kW, UTC-indexed.
    fallback_kw : the profile for the same intervals, kW.
    tz : the home's clock.
    weeks : weeks of history averaged.

    Returns
    -------
    Forecast mean load per interval, kW (depends only on values a week or more before each interval).
    """
    if weeks < 1:
        raise ValueError(f"weeks = {weeks}: must be >= 1")
    total, count = same_weekday_history_kw(load_kw, tz, weeks)
    return (total + (weeks - count) * np.asarray(fallback_kw, dtype=float)) / weeks


# --------------------------------------------------------------------------------------------------
# Measuring the PV forecast

#: Lead-time buckets (hours, from the issue to the end of the target interval) of :func:`pv_skill_by_lead`.
LEAD_BUCKETS_H: tuple[float, ...] = (0.0, 0.25, 1.0, 4.0, 12.0, 24.0, 36.0)


def pv_skill_by_lead(forecaster: Forecaster, edges_h: tuple[float, ...] = LEAD_BUCKETS_H) -> list[dict[str, float]]:
    """nRMSE and bias of a forecaster's PV forecasts by lead-time bucket, over every issue of the scenario.

    Only targets with the sun up (envelope > 0) count; both figures are relative to the mean actual PV
    over those intervals (the usual "mean daytime production" normalisation).

    Returns
    -------
    One dict per bucket ``(lo, hi]``: ``lead_from_h``, ``lead_to_h``, ``nrmse_pct``, ``bias_pct`` and
    ``pairs`` (number of issue/target pairs).
    """
    n, h = forecaster.n, forecaster.horizon
    issues = np.arange(n)[:, None]
    leads = np.arange(h)[None, :]
    fc = forecaster.pv_forecast_batch(issues, leads)
    target = np.minimum(issues + leads, n - 1)
    actual = np.asarray(forecaster.pv_actual_kw)[target]
    day = np.isfinite(fc) & (np.asarray(forecaster.pv_clearsky_kw)[target] > 0)
    lead_h = np.broadcast_to((leads + 1) * forecaster.dt_h, fc.shape)
    sun_up = np.asarray(forecaster.pv_clearsky_kw) > 0
    mean_kw = float(np.asarray(forecaster.pv_actual_kw)[sun_up].mean()) if sun_up.any() else float("nan")
    out = []
    for lo, hi in pairwise(edges_h):
        sel = day & (lead_h > lo) & (lead_h <= hi)
        err = fc[sel] - actual[sel]
        out.append({
            "lead_from_h": float(lo),
            "lead_to_h": float(hi),
            "nrmse_pct": float(np.sqrt(np.mean(err**2)) / mean_kw * 100) if err.size else float("nan"),
            "bias_pct": float(err.mean() / mean_kw * 100) if err.size else float("nan"),
            "pairs": int(err.size),
        })
    return out


# --------------------------------------------------------------------------------------------------


def persistence_decay(n: int, dt_h: float) -> np.ndarray:
    """Weight of the last hour's clear-sky index at leads 0..n-1 (the rest goes to the last day's)."""
    return np.exp(-(np.arange(n) + 1) * dt_h / PERSISTENCE_H)


def clearsky_index_forecast_kw(k_recent: npt.ArrayLike, k_day: npt.ArrayLike, decay: npt.ArrayLike,
                               reference_kw: npt.ArrayLike, capped: bool) -> np.ndarray:
    """The clear-sky index forecast (kW): the last hour's index blended into the last day's over the lead
    (``decay``: :func:`persistence_decay`), times the reference. ``capped``: the reference is the clear-sky PV
    itself, so an index above 1 would exceed what the sky allows; otherwise (clear-sky GHI as the reference of
    a measured-PV home) only negative indices are cut."""
    k_recent, k_day = np.asarray(k_recent, dtype=float), np.asarray(k_day, dtype=float)
    k = k_day + (k_recent - k_day) * np.asarray(decay, dtype=float)
    return (np.clip(k, 0.0, 1.0) if capped else np.maximum(k, 0.0)) * np.asarray(reference_kw, dtype=float)


def _frozen(values: npt.ArrayLike, dtype: type = float) -> np.ndarray:
    """A read-only copy: views handed to controllers cannot corrupt the forecaster."""
    arr = np.array(values, dtype=dtype)
    arr.flags.writeable = False
    return arr


class Forecaster:
    """Forecasts for every interval of a scenario, precomputed once; :meth:`at` slices them.

    Parameters
    ----------
    scenario : the scenario (actuals).
    home : the home (installation, tariff).
    horizon_h : forecast horizon in hours (<= :data:`MAX_HORIZON_H`); 36 h holds every known price.
    seed : seed of the PV forecast errors.
    pv_mode : ``"weather"``, ``"clearsky_index"`` or ``"perfect"`` (see the module text).
    load_mode : ``"history"``, ``"profile"`` or ``"perfect"``.
    publish_hour_local : local hour from which tomorrow's prices are known.
    history_weeks : weeks averaged by the history load forecast.
    pv_error : the error model of ``pv_mode="weather"``.

    Attributes
    ----------
    times : UTC interval starts of the scenario.
    horizon : H, intervals per forecast.
    epex_eur_per_mwh, import_price, export_price : per interval; the tariff prices in EUR/kWh.
    price_known_end_index : per interval i, the first index whose price is NOT known at i (<= n).
    pv_clearsky_kw : the envelope of the PV forecasts, kW per interval.
    pv_actual_kw, load_actual_kw : the actuals, kW per interval.
    load_forecast_kw : per TARGET interval, the load forecast (it does not depend on the issue).
    deadlines : every goal deadline of the scenario, in time order.

    Raises
    ------
    ValueError
        for an unknown mode or a horizon outside (0, MAX_HORIZON_H].
    DataError
        when the scenario has only weather and the installation no ``[pv]`` (see ``Scenario.pv_kw``).

    Notes
    -----
    ``pv_mode="weather"`` holds an (n, H) float64 matrix: 40 MB for a year of quarter hours at H = 144.
    """

    def __init__(
        self,
        scenario: Scenario,
        home: Home,
        *,
        horizon_h: float = 36.0,
        seed: int = 0,
        pv_mode: PvMode = "weather",
        load_mode: LoadMode = "history",
        publish_hour_local: int = PUBLISH_HOUR_LOCAL,
        history_weeks: int = 4,
        pv_error: PvErrorModel = DEFAULT_PV_ERROR,
    ) -> None:
        if pv_mode not in PV_MODES:
            raise ValueError(f"pv_mode = {pv_mode!r}: must be one of {', '.join(PV_MODES)}")
        if load_mode not in LOAD_MODES:
            raise ValueError(f"load_mode = {load_mode!r}: must be one of {', '.join(LOAD_MODES)}")
        if not 0 < horizon_h <= MAX_HORIZON_H:
            raise ValueError(f"horizon_h = {horizon_h}: must be > 0 and <= {MAX_HORIZON_H:g}")
        inst = home.installation
        tz = inst.site.timezone
        self.scenario = scenario
        self.home = home
        self.seed = seed
        self.pv_mode = pv_mode
        self.load_mode = load_mode
        self.minutes = scenario.minutes
        self.dt_h = scenario.minutes / 60.0
        self.times = pd.DatetimeIndex(scenario.index).tz_convert("UTC").as_unit("ns")
        self.n = n = len(self.times)
        self.horizon = max(1, round(horizon_h * 60 / self.minutes))
        step_ns = self.minutes * NS_PER_MIN
        self._times_ns = self.times.asi8

        # Prices for the whole scenario, and up to where each issue knows them.
        epex = scenario.frame["price_eur_per_mwh"].to_numpy(dtype=float)
        self.epex_eur_per_mwh = _frozen(epex)
        self.import_price = _frozen(home.tariff.import_price(epex, self.times))
        self.export_price = _frozen(home.tariff.export_price(epex, self.times))
        known = price_known_until(self.times, tz, publish_hour_local).asi8
        self.price_known_end_index = _frozen(np.searchsorted(self._times_ns, known, side="left"), np.int64)

        # PV: actual, envelope and the mode's forecast.
        self.pv_actual_kw = _frozen(scenario.pv_kw(inst).to_numpy(dtype=float))
        self._ref_kw, self.pv_clearsky_kw = self._envelope(inst)
        self._pv_matrix: np.ndarray | None = None
        self._k_recent = self._k_day = np.zeros(0)
        self._decay = persistence_decay(self.horizon, self.dt_h)
        if pv_mode == "weather":
            self._pv_matrix = self._weather_matrix(pv_error)
        elif pv_mode == "clearsky_index":
            prior = PRIOR_CLEARSKY_INDEX if inst.pv is not None else 0.0
            self._k_recent, self._k_day = clearsky_index_state(self.pv_actual_kw, self._ref_kw, self.minutes, prior)

        # Load: one forecast per target interval.
        self.load_actual_kw = _frozen(scenario.frame["load_kw"].to_numpy(dtype=float))
        if load_mode == "perfect":
            load_fc = self.load_actual_kw
        else:
            profile = profile_load_kw(self.times, inst.load.annual_kwh, tz=tz, minutes=self.minutes).to_numpy()
            if load_mode == "profile":
                load_fc = profile
            else:
                history = pd.Series(self.load_actual_kw, index=self.times)
                load_fc = history_load_forecast_kw(history, profile, tz, history_weeks)
        self.load_forecast_kw = _frozen(load_fc)
        # Padded with NaN beyond the end, for the batch look-ups.
        self._load_padded = np.concatenate((self.load_forecast_kw, np.full(self.horizon, np.nan)))

        # Deadlines: those with instant in (t_i, t_i + h_i * dt], h_i the horizon truncated at the end.
        self.deadlines: tuple[Deadline, ...] = tuple(
            deadlines(inst, scenario.start, scenario.end, self.minutes)
        ) if n else ()
        dl_ns = pd.DatetimeIndex([d.time for d in self.deadlines], tz="UTC").as_unit("ns").asi8
        self._end = np.minimum(np.arange(n) + self.horizon, n)
        self._dl_lo = np.searchsorted(dl_ns, self._times_ns, side="right")
        self._dl_hi = np.searchsorted(dl_ns, self._times_ns + (self._end - np.arange(n)) * step_ns, side="right")
        self._k_end = np.minimum(self.price_known_end_index, self._end)

    # ------------------------------------------------------------------ construction helpers

    def _envelope(self, inst: Installation) -> tuple[np.ndarray, np.ndarray]:
        """Clear-sky reference of the clear-sky index and the forecast envelope, kW per interval."""
        if inst.pv is not None:
            env = clearsky_pv_kw(self.times, inst, self.minutes)
            return env, _frozen(env)
        # No [pv]: the reference is the clear-sky GHI (kW/m2). For the weather mode's envelope it is scaled
        # to the system's size from the scenario's PV (the weather mode reads actuals anyway; the
        # clear-sky-index mode does not use this scale).
        ref = clean_clearsky_ghi_w_per_m2(self.times, inst.site, self.minutes) / 1000.0
        sunny = ref >= ENVELOPE_MIN_REF_KW_PER_M2
        pv = np.asarray(self.pv_actual_kw)
        scale = float(np.quantile(pv[sunny] / ref[sunny], ENVELOPE_QUANTILE)) if sunny.any() else 0.0
        return ref, _frozen(ref * max(scale, 0.0))

    def _weather_matrix(self, model: PvErrorModel) -> np.ndarray:
        """(n, H) synthetic weather forecasts: actual + envelope * error, clipped to [0, envelope]."""
        n, h = self.n, self.horizon
        pad = np.zeros(h)
        actual = np.lib.stride_tricks.sliding_window_view(np.concatenate((self.pv_actual_kw, pad)), h)[:n]
        env = np.lib.stride_tricks.sliding_window_view(np.concatenate((self.pv_clearsky_kw, pad)), h)[:n]
        err = model.errors(n, h, self.minutes, self.seed)
        out = np.clip(actual + env * err, 0.0, env)
        # Targets beyond the scenario end are unknown (never handed out by at(); NaN in batch look-ups).
        tail = max(n - h + 1, 0)
        beyond = (np.arange(tail, n)[:, None] + np.arange(h)[None, :]) >= n
        out[tail:][beyond] = np.nan
        out.flags.writeable = False
        return out

    # ------------------------------------------------------------------ per-step access

    def at(self, i: int) -> Forecasts:
        """Forecasts made at the start of scenario interval ``i`` (the interval being decided).

        ``times``, ``pv_kw`` and ``load_kw`` have length ``min(H, n - i)``; the prices have the length K of
        those known at ``times[0]`` (``K <= len(times)``). Arrays are read-only views.
        """
        i = operator.index(i)
        if not 0 <= i < self.n:
            raise IndexError(f"interval {i} outside the scenario (0..{self.n - 1})")
        end = int(self._end[i])
        k_end = int(self._k_end[i])
        return Forecasts(
            times=self.times[i:end],
            pv_kw=self.pv_forecast(i),
            load_kw=self.load_forecast_kw[i:end],
            epex_eur_per_mwh=self.epex_eur_per_mwh[i:k_end],
            import_price_eur_per_kwh=self.import_price[i:k_end],
            export_price_eur_per_kwh=self.export_price[i:k_end],
            deadlines=self.deadlines[self._dl_lo[i]:self._dl_hi[i]],
        )

    def n_price_known(self, i: int) -> int:
        """K at interval ``i``: how many intervals from ``i`` on have known prices (capped at the horizon)."""
        return int(self._k_end[i]) - i

    def pv_forecast(self, i: int, n: int | None = None) -> np.ndarray:
        """PV forecast (kW) made at interval ``i`` for its next ``n`` intervals (default H), cut at the end.

        Raises
        ------
        ValueError
            for ``n`` beyond the horizon.
        """
        end = self._stop(i, n)
        h = end - i
        if self.pv_mode == "perfect":
            return self.pv_actual_kw[i:end]
        if self._pv_matrix is not None:
            return self._pv_matrix[i, :h]
        return clearsky_index_forecast_kw(self._k_recent[i], self._k_day[i], self._decay[:h], self._ref_kw[i:end],
                                          self.home.installation.pv is not None)

    def load_forecast(self, i: int, n: int | None = None) -> np.ndarray:
        """Load forecast (kW) made at interval ``i`` for its next ``n`` intervals (default H), cut at the end."""
        return self.load_forecast_kw[i:self._stop(i, n)]

    def pv_forecast_batch(self, issues: npt.ArrayLike, leads: npt.ArrayLike) -> np.ndarray:
        """PV forecasts (kW) for issue intervals ``issues`` and lead indices ``leads`` (numpy-broadcast).

        ``leads`` 0 is the issue's own interval. Targets beyond the scenario end or leads outside 0..H-1 give
        NaN. E.g. ``pv_forecast_batch(i[:, None], np.arange(H))`` is a (B, H) matrix for a batch of envs.
        """
        issue, lead = np.broadcast_arrays(np.asarray(issues, dtype=np.int64), np.asarray(leads, dtype=np.int64))
        self._check_issues(issue)
        valid = (lead >= 0) & (lead < self.horizon) & (issue + lead < self.n)
        safe_lead = np.where(valid, lead, 0)
        target = issue + safe_lead
        if self.pv_mode == "perfect":
            out = self.pv_actual_kw[target]
        elif self._pv_matrix is not None:
            out = self._pv_matrix[issue, safe_lead]
        else:
            out = clearsky_index_forecast_kw(self._k_recent[issue], self._k_day[issue], self._decay[safe_lead],
                                             self._ref_kw[target], self.home.installation.pv is not None)
        return np.where(valid, out, np.nan)

    def load_forecast_batch(self, issues: npt.ArrayLike, leads: npt.ArrayLike) -> np.ndarray:
        """Load forecasts (kW) for ``issues`` and ``leads`` (broadcast), NaN beyond the end or the horizon."""
        issue, lead = np.broadcast_arrays(np.asarray(issues, dtype=np.int64), np.asarray(leads, dtype=np.int64))
        self._check_issues(issue)
        valid = (lead >= 0) & (lead < self.horizon)
        return np.where(valid, self._load_padded[issue + np.where(valid, lead, 0)], np.nan)

    # ------------------------------------------------------------------ internals

    def _stop(self, i: int, n: int | None) -> int:
        if not 0 <= i < self.n:
            raise IndexError(f"interval {i} outside the scenario (0..{self.n - 1})")
        if n is None:
            return int(self._end[i])
        if not 0 <= n <= self.horizon:
            raise ValueError(f"n = {n}: must be 0..{self.horizon} (the horizon)")
        return min(i + n, self.n)

    def _check_issues(self, issue: np.ndarray) -> None:
        if issue.size and (issue.min() < 0 or issue.max() >= self.n):
            raise IndexError(f"issue intervals must lie in 0..{self.n - 1}")

