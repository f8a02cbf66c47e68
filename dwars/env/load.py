"""Household load models: a standard profile (NEDU E1A) or a measured trace, mapped onto any period by weekday.

Both models use :func:`align_by_weekday`: a target day takes the load of a source day with the same weekday
near the same time of year, at the same local clock time. That keeps the weekly rhythm (weekends differ from
working days) and the seasonal level of the source, whatever year the source comes from.

DST rule (the source and the target may have their clock changes on different dates): every source day is
first turned into a table of local clock-time slots (96 for a 15-minute source, 24 for an hourly one).

- On a source autumn day the 02:xx slots occur twice; the table holds the mean of the two.
- On a source spring day the 02:xx slots do not exist; the table interpolates them linearly between 01:45
  (01:00 for hourly) and 03:00.
- A target interval takes the table value of its own local clock time, so the target autumn day repeats
  the 02:xx values (100 quarters, 25 hours of load) and the spring day skips them (92 quarters).

Source days with missing or blank intervals are never used (a complete day of the same weekday close by
is taken instead), so gaps in a measured trace do not turn into gaps or zeros in the load.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dwars.data.io import sample_path
from dwars.data.profiles import load_nedu_profile
from dwars.errors import DataError
from dwars.timegrid import LOCAL_TZ, infer_resolution, local_days_index, to_utc

NS_PER_MIN = 60 * 1_000_000_000
NS_PER_DAY = 1440 * NS_PER_MIN
DAYS_PER_YEAR = 365.2425  # period of the day-of-year distance (wraps December onto January)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
DEFAULT_PROFILE = "EDSN_E1A_2019.csv.gz"
DEFAULT_PROFILE_YEAR = 2019


def align_by_weekday(
    source: pd.Series,
    target_index: pd.DatetimeIndex,
    tz: str = LOCAL_TZ,
    *,
    minutes: int | None = None,
) -> pd.Series:
    """Map a series of mean powers from another period onto ``target_index`` by local weekday and clock time.

    For each local target date, the source date with the same weekday whose day of the year is closest
    (counted around the year, so late December is close to early January; a target outside the source's
    season takes the nearest covered weeks) is chosen among the COMPLETE source days; ties go to the earlier
    source date. Each target interval then takes that day's value at the same local clock time (DST rule:
    see the module text).

    Parameters
    ----------
    source : mean power per interval (e.g. kW, or fraction per hour), indexed by UTC interval start, 15 or
        60 minutes. Blank (NaN) values count as missing.
    target_index : UTC interval starts to fill, 15 or 60 minutes.
    tz : the clock that weekdays and clock times are read on.
    minutes : target interval length; inferred from ``target_index`` when omitted (needed for one interval).

    Returns
    -------
    Series named like ``source`` on ``target_index``: the source value when both resolutions agree, the
    mean of the source quarters for an hourly target (mean power), the held hourly value for a 15-minute
    target with an hourly source.

    Raises
    ------
    DataError
        for a naive index, a resolution other than 15/60 minutes, duplicate source intervals, or when the
        source has no complete day of a weekday the target needs.
    """
    name = str(source.name or "source")
    src_index = to_utc(source.index, name)
    if src_index.has_duplicates:
        raise DataError(f"{name}: interval {src_index[src_index.duplicated()][0]} occurs more than once")
    src_min = infer_resolution(src_index)
    tgt_index = to_utc(target_index, "target")
    if len(tgt_index) == 0:
        return pd.Series([], index=tgt_index, name=source.name, dtype=float)
    tgt_min = minutes if minutes is not None else infer_resolution(tgt_index)
    if tgt_min not in (15, 60):
        raise DataError(f"target: interval length {tgt_min} minutes; must be 15 or 60")
    values = source.to_numpy(dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        raise DataError(f"{name}: no values to align")
    first_day, table, complete = _clock_table(src_index[finite], values[finite], src_min, tz)
    table = _to_resolution(table, src_min, tgt_min)

    tgt_day, tgt_slot = _local_day_slot(tgt_index, tz, tgt_min)
    days, inverse = np.unique(tgt_day, return_inverse=True)
    cand = first_day + np.flatnonzero(complete)  # local day numbers of the usable source days
    chosen = _closest_same_weekday(days, cand, name)
    out = table[(chosen - first_day)[inverse], tgt_slot]
    return pd.Series(out, index=tgt_index, name=source.name)


def profile_load_kw(
    target_index: pd.DatetimeIndex,
    annual_kwh: float,
    profile_fractions: pd.Series | None = None,
    tz: str = LOCAL_TZ,
    *,
    minutes: int | None = None,
) -> pd.Series:
    """Household load from a standard profile, scaled to an annual consumption.

    The profile is aligned onto the target by weekday (:func:`align_by_weekday`) and scaled per LOCAL
    calendar year: for every local year the target touches, the profile is aligned onto the whole year at the
    target's resolution and scaled so that year sums to ``annual_kwh``. A partial period therefore gets its
    seasonal share (a December week more than a June week), and a full year sums to ``annual_kwh`` exactly.

    Parameters
    ----------
    target_index : UTC interval starts, 15 or 60 minutes.
    annual_kwh : consumption of a whole local calendar year, in kWh.
    profile_fractions : share of the annual consumption per interval (sums to ~1), UTC-indexed, 15 or 60
        minutes; default the bundled NEDU E1A 2019 profile.
    tz : the home's clock.
    minutes : target interval length; inferred from ``target_index`` when omitted.

    Returns
    -------
    Series ``load_kw``: mean household power over each target interval, in kW.

    Raises
    ------
    DataError
        for ``annual_kwh`` not a positive finite number, or anything :func:`align_by_weekday` refuses.
    """
    _check_annual(annual_kwh)
    if profile_fractions is None:
        profile_fractions = load_nedu_profile(sample_path(DEFAULT_PROFILE), DEFAULT_PROFILE_YEAR)
    index = to_utc(profile_fractions.index, "profile")
    step_h = infer_resolution(index) / 60
    # Fraction of the year per interval -> fraction of the year per hour: a mean power, so it can be
    # averaged to a coarser resolution and held to a finer one.
    per_hour = pd.Series(profile_fractions.to_numpy(dtype=float) / step_h, index=index, name="load_kw")
    return _scaled(per_hour, target_index, annual_kwh, tz, minutes)


def measured_load_kw(
    series: pd.Series,
    target_index: pd.DatetimeIndex,
    tz: str = LOCAL_TZ,
    annual_kwh: float | None = None,
    *,
    minutes: int | None = None,
) -> pd.Series:
    """A measured household load (e.g. OPSD 2015-2017) mapped onto the target period by weekday.

    Parameters
    ----------
    series : mean load per interval in kW, UTC-indexed, 15 or 60 minutes (gaps allowed: incomplete days
        are not used).
    target_index : UTC interval starts, 15 or 60 minutes.
    tz : the home's clock.
    annual_kwh : when given, rescale as :func:`profile_load_kw` does (each local year the target touches
        sums to this many kWh); when None, keep the measured level.
    minutes : target interval length; inferred from ``target_index`` when omitted.

    Returns
    -------
    Series ``load_kw``: mean household power over each target interval, in kW.
    """
    kw = pd.Series(series.to_numpy(dtype=float), index=series.index, name="load_kw")
    if annual_kwh is None:
        return align_by_weekday(kw, target_index, tz, minutes=minutes)
    _check_annual(annual_kwh)
    return _scaled(kw, target_index, annual_kwh, tz, minutes)


# --------------------------------------------------------------------------------------------------


def _check_annual(annual_kwh: float) -> None:
    if not (np.isfinite(annual_kwh) and annual_kwh > 0):
        raise DataError(f"annual_kwh = {annual_kwh}: must be a positive number of kWh")


def _scaled(per_hour: pd.Series, target_index: pd.DatetimeIndex, annual_kwh: float, tz: str,
            minutes: int | None) -> pd.Series:
    """Align ``per_hour`` (a mean power) onto the target and scale each local year to ``annual_kwh``."""
    tgt_index = to_utc(target_index, "target")
    tgt_min = minutes if minutes is not None else infer_resolution(tgt_index)
    aligned = align_by_weekday(per_hour, target_index, tz, minutes=tgt_min).to_numpy()
    years = tgt_index.tz_convert(tz).year.to_numpy()
    scale = np.empty(len(aligned))
    for year in np.unique(years):  # one or two years: a loop over years, not intervals
        whole = local_days_index(f"{year}-01-01", f"{year + 1}-01-01", tgt_min, tz)
        energy = align_by_weekday(per_hour, whole, tz, minutes=tgt_min).sum() * tgt_min / 60
        scale[years == year] = annual_kwh / energy
    return pd.Series(aligned * scale, index=tgt_index, name="load_kw")


def _local_day_slot(index: pd.DatetimeIndex, tz: str, minutes: int) -> tuple[np.ndarray, np.ndarray]:
    """Local day number (days since 1970-01-01 on the local calendar) and clock-time slot of each instant."""
    wall_ns = index.tz_convert(tz).tz_localize(None).as_unit("ns").asi8
    day = wall_ns // NS_PER_DAY
    slot = (wall_ns - day * NS_PER_DAY) // (minutes * NS_PER_MIN)
    return day, slot


def _clock_table(index: pd.DatetimeIndex, values: np.ndarray, minutes: int,
                 tz: str) -> tuple[int, np.ndarray, np.ndarray]:
    """Per local source day, the value at each clock-time slot.

    Returns the first local day number, the (days x slots) table and which days are complete (every
    interval of the day present). Doubled autumn slots hold their mean; skipped spring slots are
    interpolated linearly within the day.
    """
    n_slots = 1440 // minutes
    day, slot = _local_day_slot(index, tz, minutes)
    first, last = int(day.min()), int(day.max())
    n_days = last - first + 1
    # Which (day, slot) cells the clock really has, and how often (2 in the doubled autumn hour).
    midnights = pd.to_datetime(np.array([first, last + 1]) * NS_PER_DAY).tz_localize(tz).tz_convert("UTC")
    grid = pd.date_range(midnights[0], midnights[1], freq=f"{minutes}min", inclusive="left")
    g_day, g_slot = _local_day_slot(grid, tz, minutes)
    size = n_days * n_slots
    expected = np.bincount((g_day - first) * n_slots + g_slot, minlength=size).reshape(n_days, n_slots)
    cell = (day - first) * n_slots + slot
    count = np.bincount(cell, minlength=size).reshape(n_days, n_slots)
    total = np.bincount(cell, weights=values, minlength=size).reshape(n_days, n_slots)
    with np.errstate(invalid="ignore", divide="ignore"):
        table = total / count
    complete = (count == expected).all(axis=1)
    skipped = expected == 0
    slots = np.arange(n_slots)
    for row in np.flatnonzero(complete & skipped.any(axis=1)):  # spring DST days only: one per year
        have = ~skipped[row]
        table[row, ~have] = np.interp(slots[~have], slots[have], table[row, have])
    return first, table, complete


def _to_resolution(table: np.ndarray, src_min: int, tgt_min: int) -> np.ndarray:
    """Clock table at the target's slot length: mean power over a coarser slot, held over finer ones."""
    if tgt_min == src_min:
        return table
    if tgt_min > src_min and tgt_min % src_min == 0:
        k = tgt_min // src_min
        return table.reshape(table.shape[0], -1, k).mean(axis=2)
    if src_min % tgt_min == 0:
        return np.repeat(table, src_min // tgt_min, axis=1)
    raise DataError(f"cannot map {src_min}-minute values onto {tgt_min}-minute intervals")


def _closest_same_weekday(days: np.ndarray, candidates: np.ndarray, name: str) -> np.ndarray:
    """For each local day number, the candidate day with the same weekday closest in day of the year."""
    if len(candidates) == 0:
        raise DataError(f"{name}: no complete local day in the source (every day has missing intervals)")
    weekday_t = (days + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    weekday_c = (candidates + 3) % 7
    doy_t = pd.to_datetime(days * NS_PER_DAY).day_of_year.to_numpy()
    doy_c = pd.to_datetime(candidates * NS_PER_DAY).day_of_year.to_numpy()
    gap = np.abs(doy_t[:, None] - doy_c[None, :]).astype(float)
    gap = np.minimum(gap, DAYS_PER_YEAR - gap)
    gap[weekday_t[:, None] != weekday_c[None, :]] = np.inf
    best = np.argmin(gap, axis=1)  # candidates are sorted, so ties go to the earlier source date
    lacking = ~np.isfinite(gap[np.arange(len(days)), best])
    if lacking.any():
        wd = WEEKDAYS[int(weekday_t[lacking][0])]
        raise DataError(f"{name}: the source has no complete {wd} to map onto the target")
    return candidates[best]
