"""Sun position over time intervals, and hourly irradiance split into quarter-hours along the clear-sky shape."""

from __future__ import annotations

import warnings

import numpy as np
import numpy.typing as npt
import pandas as pd
import pvlib

from dwars.config import SiteConfig
from dwars.errors import DataError
from dwars.timegrid import to_utc

#: Solar position algorithm. ``nrel_numpy`` is NREL's SPA (±0.0003°) in plain numpy: about 0.12 s for a
#: year of quarter-hours, fast enough that the cheaper but less exact ``ephemeris`` is not worth it.
SOLAR_POSITION_METHOD = "nrel_numpy"

#: Largest clear-sky index used to scale the clear-sky shape within an hour; the rest of the hour's energy
#: is spread evenly over its sub-intervals (see :func:`disaggregate_ghi`).
MAX_CLEARSKY_INDEX = 1.5

#: Clear-sky GHI (hour mean, W/m2) below which the clear-sky shape of an hour is not trusted and the
#: hour is spread evenly: the sun is at or below the horizon for (nearly) the whole hour.
MIN_CLEARSKY_W_PER_M2 = 1.0


def interval_solar_position(times: pd.DatetimeIndex, site: SiteConfig, minutes: float) -> pd.DataFrame:
    """Sun position at the midpoint of each interval.

    The midpoint is the right instant for an interval-mean quantity: over an interval of up to an hour
    the mean of cos(zenith) differs from its midpoint value by less than 1 % of the day's peak.

    Parameters
    ----------
    times : interval starts, tz-aware (converted to UTC).
    site : latitude and longitude of the home.
    minutes : interval length in minutes.

    Returns
    -------
    DataFrame indexed like ``times`` (UTC starts) with pvlib's columns ``apparent_zenith``, ``zenith``,
    ``apparent_elevation``, ``elevation`` and ``azimuth`` (degrees; azimuth North=0, East=90, South=180,
    West=270) and ``equation_of_time`` (minutes).
    """
    index = to_utc(times)
    mid = index + pd.Timedelta(minutes=float(minutes) / 2.0)
    sun = pvlib.solarposition.get_solarposition(
        mid, site.latitude, site.longitude, method=SOLAR_POSITION_METHOD
    )
    sun.index = index
    return sun


def sun_below_horizon(
    times: pd.DatetimeIndex,
    site: SiteConfig,
    minutes: float,
    *,
    midpoint_elevation_deg: npt.ArrayLike | None = None,
) -> np.ndarray:
    """Whether the sun stays below the horizon during the whole of each interval.

    True when the sun's apparent elevation (refraction included) is below 0 degrees at the start, the
    midpoint and the end of the interval. Within an hour the elevation has at most one extreme (at solar
    noon or midnight), so three points are enough away from the poles.

    Parameters
    ----------
    times : interval starts, tz-aware.
    site : the home's location.
    minutes : interval length in minutes.
    midpoint_elevation_deg : apparent elevation at the midpoints if already known (the
        ``apparent_elevation`` column of :func:`interval_solar_position`), to save computing it again.

    Returns
    -------
    Boolean array, one value per interval.
    """
    index = to_utc(times)
    if midpoint_elevation_deg is None:
        at_mid = interval_solar_position(index, site, minutes)["apparent_elevation"].to_numpy()
    else:
        at_mid = np.asarray(midpoint_elevation_deg, dtype=float)
    # The sun moves at most 15 deg/h across the sky, and refraction lifts it by up to ~0.6 deg at the
    # horizon, so over half an interval the apparent elevation changes by less than this; only intervals
    # whose midpoint lies within that band below the horizon need their start and end checked (a few per
    # sunrise and sunset: this keeps the cost near one SPA call instead of three).
    max_change_deg = 15.0 * float(minutes) / 120.0 + 1.0
    below = at_mid < 0.0
    check = below & (at_mid >= -max_change_deg)
    if check.any():
        step = pd.Timedelta(minutes=float(minutes))
        edges = index[check].append(index[check] + step)
        elevation = pvlib.solarposition.get_solarposition(
            edges, site.latitude, site.longitude, method=SOLAR_POSITION_METHOD
        )["apparent_elevation"].to_numpy()
        n_check = int(check.sum())
        below[check] = (elevation[:n_check] < 0.0) & (elevation[n_check:] < 0.0)
    return below


def clearsky_ghi_w_per_m2(times: pd.DatetimeIndex, site: SiteConfig, minutes: float) -> pd.Series:
    """Clear-sky GHI at the midpoint of each interval (Ineichen-Perez, climatological Linke turbidity).

    The monthly Linke turbidity climatology ships with pvlib (``LinkeTurbidities.h5``), so no network is
    needed. Sea level is assumed (the Netherlands).

    Parameters
    ----------
    times : interval starts, tz-aware.
    site : the home's location.
    minutes : interval length in minutes.

    Returns
    -------
    Series of clear-sky GHI in W/m2, >= 0, index = ``times`` in UTC (0 when the sun is below the horizon).
    """
    index = to_utc(times)
    sun = interval_solar_position(index, site, minutes)
    mid = index + pd.Timedelta(minutes=float(minutes) / 2.0)
    with warnings.catch_warnings():
        # pvlib 0.16 reads DatetimeIndex.dayofyear, which pandas 3 deprecates; harmless here.
        warnings.simplefilter("ignore", DeprecationWarning)
        linke = pvlib.clearsky.lookup_linke_turbidity(mid, site.latitude, site.longitude).to_numpy()
    apparent_zenith = sun["apparent_zenith"].to_numpy()
    airmass = pvlib.atmosphere.get_absolute_airmass(pvlib.atmosphere.get_relative_airmass(apparent_zenith))
    dni_extra = pvlib.irradiance.get_extra_radiation(mid.day_of_year.to_numpy())
    with np.errstate(divide="ignore", invalid="ignore"):  # airmass is NaN/inf with the sun below the horizon
        cs = pvlib.clearsky.ineichen(apparent_zenith, airmass, linke, altitude=0.0, dni_extra=dni_extra)
    ghi = np.nan_to_num(np.asarray(cs["ghi"], dtype=float), nan=0.0)
    return pd.Series(np.maximum(ghi, 0.0), index=index, name="clearsky_ghi_w_per_m2")


def disaggregate_ghi(ghi_hourly_w_per_m2: pd.Series, site: SiteConfig, minutes: int = 15) -> pd.Series:
    """Split hourly mean GHI into sub-hourly means that follow the clear-sky shape and keep each hour's energy.

    For every hour with measured mean ``G`` and clear-sky sub-interval values ``c_i`` (at their midpoints,
    mean ``c``), the clear-sky index ``k = G / c`` scales the shape: ``q_i = k * c_i``. Two guards:

    - ``k`` is capped at :data:`MAX_CLEARSKY_INDEX`; the energy above the cap is spread evenly over the
      hour (``q_i = k_max * c_i + (G - k_max * c)``). Large ``k`` happens near sunrise and sunset, where
      the clear-sky model and the measurement disagree most, so a scaled-up clear-sky ramp would be an
      artefact.
    - where ``c`` is below :data:`MIN_CLEARSKY_W_PER_M2` (sun at or below the horizon for the whole hour,
      twilight) but ``G > 0``, the hour is spread evenly.

    Either way the mean of each hour's sub-intervals equals its hourly value (to rounding, ~1e-13 W/m2):
    energy is preserved, as everywhere in dwars' resampling. Sub-intervals are >= 0.

    Parameters
    ----------
    ghi_hourly_w_per_m2 : mean GHI over each hour in W/m2 (>= 0), indexed by tz-aware hour starts (UTC
        or any zone; whole hours). Gaps are allowed: missing hours stay missing.
    site : the home's location (for the sun's path).
    minutes : sub-interval length in minutes; a divisor of 60 (15 gives quarter-hours, 60 the input).

    Returns
    -------
    Series of mean GHI over each sub-interval in W/m2, indexed by UTC sub-interval starts (named
    ``time``), with the input's name.

    Raises
    ------
    DataError
        for a naive or off-the-hour index, duplicate hours, NaN or negative values, or ``minutes`` that
        does not divide 60.
    """
    minutes = int(minutes)
    if minutes <= 0 or 60 % minutes:
        raise DataError(f"minutes = {minutes}: must divide 60 (15, 30 or 60)")
    name = ghi_hourly_w_per_m2.name
    field = str(name or "ghi_w_per_m2")
    hours = to_utc(ghi_hourly_w_per_m2.index, field)
    if (hours.asi8 % pd.Timedelta(hours=1).value).any():
        bad = hours[(hours.asi8 % pd.Timedelta(hours=1).value) != 0][0]
        raise DataError(f"{field}: {bad} is not the start of a whole hour")
    if hours.has_duplicates:
        raise DataError(f"{field}: hour {hours[hours.duplicated()][0]} occurs more than once")
    ghi = np.asarray(ghi_hourly_w_per_m2, dtype=float)
    if np.isnan(ghi).any():
        raise DataError(f"{field}: {int(np.isnan(ghi).sum())} hours are blank (NaN); fill or drop them first")
    if (ghi < 0).any():
        raise DataError(f"{field} = {ghi.min():g} W/m2 at {hours[np.argmin(ghi)]}: must be >= 0")

    n_sub = 60 // minutes
    offsets = pd.to_timedelta(np.arange(n_sub) * minutes, unit="min")
    # Row-major (hour, sub-interval) layout: the sub-intervals of one hour are adjacent.
    sub_starts = pd.DatetimeIndex(
        (hours.asi8[:, None] + offsets.as_unit("ns").asi8[None, :]).ravel(), tz="UTC"
    ).as_unit("ns")
    clear = clearsky_ghi_w_per_m2(sub_starts, site, minutes).to_numpy().reshape(-1, n_sub)

    clear_mean = clear.mean(axis=1)
    shaped = clear_mean >= MIN_CLEARSKY_W_PER_M2
    k = np.where(shaped, ghi / np.where(shaped, clear_mean, 1.0), 0.0)
    k = np.minimum(k, MAX_CLEARSKY_INDEX)
    # What the capped shape does not deliver (all of G for unshaped hours) is spread evenly.
    uniform = ghi - k * clear_mean
    out = k[:, None] * clear + uniform[:, None]
    # Take out the last rounding error so the hourly mean is exact; clip the -1e-14 this may leave.
    out += (ghi - out.mean(axis=1))[:, None]
    out = np.maximum(out, 0.0)

    return pd.Series(out.ravel(), index=pd.DatetimeIndex(sub_starts, name="time"), name=name)
