"""AC power of a PV installation (one or more planes on one inverter) from irradiance and air temperature."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
import pvlib

from dwars.config import PvArray, PvConfig, SiteConfig
from dwars.env.irradiance import interval_solar_position, sun_below_horizon
from dwars.errors import DataError
from dwars.timegrid import to_utc

#: Ground reflectance: grass and brick streets; pvlib's 0.25 is a desert/concrete-leaning default.
ALBEDO = 0.2

#: Air temperature used when none is given, in degC. The annual mean in De Bilt is ~11 degC, but PV
#: produces mostly in warm hours: the irradiance-weighted mean air temperature was 17.5 degC in 2024, a
#: year about 1 degC warmer than normal. With 16 degC the 2024 yield comes out 0.4 % above the one with
#: the measured hourly temperatures (tests/test_pv.py checks it stays within 1 %).
DEFAULT_TEMP_AIR_C = 16.0

#: Wind speed in m/s. Only used by temperature models with a wind term; the PVsyst model below has
#: u_v = 0 (PVsyst's advice when no reliable wind at module height is known), so it has no effect.
DEFAULT_WIND_SPEED_M_PER_S = 1.0

#: PVsyst thermal loss factor for "semi-integrated" modules (rails on a pitched roof with an air gap
#: behind): u_c = 20 W/(m2 K), u_v = 0. At 1000 W/m2 and 25 degC air the cells reach ~65 degC, between
#: free-standing (u_c = 29, ~53 degC) and insulated/in-roof (u_c = 15, ~79 degC).
TEMPERATURE_MODEL = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["pvsyst"]["semi_integrated"]

#: Above this zenith Erbs' DNI is unreliable (division by a tiny cos(zenith)); all light is diffuse there.
ERBS_MAX_ZENITH_DEG = 87.0

#: Linke turbidity of a very clean sky (Dutch monthly climatology is 2.4..4.6). Clear-sky DNI at this
#: turbidity is an upper bound for DNI: Erbs applied to hourly means near sunrise and sunset can exceed
#: it, which would send too much beam onto steep east/west planes.
CLEAN_SKY_LINKE_TURBIDITY = 2.0


def pv_ac_kw(
    times: pd.DatetimeIndex,
    ghi_w_per_m2: pd.Series | npt.ArrayLike,
    temp_air_c: pd.Series | npt.ArrayLike | None,
    site: SiteConfig,
    pv: PvConfig,
    minutes: int,
) -> pd.Series:
    """Mean AC power of the installation over each interval.

    Parameters
    ----------
    times : tz-aware interval starts (converted to UTC).
    ghi_w_per_m2 : mean global horizontal irradiance over each interval, W/m2. A Series must be indexed
        by ``times``; an array must have their length. Small negative values (pyranometer offsets at
        night) are taken as 0.
    temp_air_c : air temperature in degC per interval (Series, array or scalar), or ``None`` for
        :data:`DEFAULT_TEMP_AIR_C`.
    site : latitude/longitude of the home.
    pv : the arrays (kWp, azimuth North=0, East=90, South=180, West=270; tilt 0 = flat), the inverter AC
        rating and efficiency, the DC system losses and the temperature coefficient.
    minutes : interval length in minutes (the sun is placed at ``start + minutes / 2``).

    Returns
    -------
    Series ``pv_kw``: mean AC power in kW over each interval, index = ``times`` in UTC. Always finite,
    ``0 <= pv_kw <= pv.inverter_kw``, and exactly 0 when the sun is below the horizon for the whole
    interval or GHI is 0.

    Raises
    ------
    DataError
        for naive times, inputs of the wrong length or a different index, or NaN inputs.

    Notes
    -----
    Model chain (pvlib, PVWatts style), with the sun at the midpoint of each interval:

    1. GHI -> DNI + DHI by Erbs (all diffuse above :data:`ERBS_MAX_ZENITH_DEG`); DNI capped at clear-sky
       DNI for :data:`CLEAN_SKY_LINKE_TURBIDITY`, the excess moved to DHI so GHI is kept.
    2. Plane of array per array: beam + Perez sky diffuse (isotropic in twilight) + ground reflection
       with albedo :data:`ALBEDO`.
    3. Reflection loss on the beam by the physical (Fresnel, glass n = 1.526) incidence angle model.
    4. Cell temperature: PVsyst model, semi-integrated roof mount (:data:`TEMPERATURE_MODEL`).
    5. PVWatts DC: ``kwp * E_eff / 1000 * (1 + gamma * (T_cell - 25))``, then times
       ``1 - system_losses_pct / 100``; the arrays are summed.
    6. PVWatts inverter with a DC limit of ``inverter_kw / inverter_efficiency``: part-load efficiency
       curve, AC clipped at ``inverter_kw``.

    The chain is evaluated on interval means, so inverter clipping within an hour of broken clouds is
    underestimated at hourly resolution (15-minute input resolves most of it).
    """
    index = to_utc(times)
    n = len(index)
    if minutes <= 0:
        raise DataError(f"minutes = {minutes}: must be positive")
    ghi = np.maximum(_per_interval(ghi_w_per_m2, index, "ghi_w_per_m2"), 0.0)
    temp = np.full(n, DEFAULT_TEMP_AIR_C) if temp_air_c is None else _per_interval(temp_air_c, index, "temp_air_c")

    sun = interval_solar_position(index, site, minutes)
    zenith = sun["zenith"].to_numpy()
    apparent_zenith = sun["apparent_zenith"].to_numpy()
    solar_azimuth = sun["azimuth"].to_numpy()
    # Twilight light (a few W/m2) is real, but no inverter starts on it: with the sun below the horizon
    # for the whole interval the output is exactly 0, whatever the pyranometer read.
    dark = sun_below_horizon(index, site, minutes, midpoint_elevation_deg=sun["apparent_elevation"].to_numpy())
    ghi = np.where(dark, 0.0, ghi)

    mid = index + pd.Timedelta(minutes=minutes / 2.0)
    doy = mid.day_of_year.to_numpy()
    dni_extra = pvlib.irradiance.get_extra_radiation(doy)
    dni, dhi = _decompose(ghi, zenith, apparent_zenith, dni_extra, doy)
    airmass = pvlib.atmosphere.get_relative_airmass(apparent_zenith)  # NaN below the horizon

    dc_kw = np.zeros(n)
    for array in pv.arrays:
        poa_global, poa_effective = _plane_of_array(
            array, apparent_zenith, solar_azimuth, ghi, dni, dhi, dni_extra, airmass
        )
        temp_cell = pvlib.temperature.pvsyst_cell(
            poa_global, temp, wind_speed=DEFAULT_WIND_SPEED_M_PER_S, **TEMPERATURE_MODEL
        )
        dc_kw += pvlib.pvsystem.pvwatts_dc(
            poa_effective, temp_cell, pdc0=array.kwp, gamma_pdc=pv.temperature_coefficient_pct_per_c / 100.0
        )
    dc_kw *= 1.0 - pv.system_losses_pct / 100.0

    # pdc0 of the inverter is its DC input limit: AC rating / nominal efficiency, so AC clips at inverter_kw.
    ac_kw = pvlib.inverter.pvwatts(
        dc_kw, pdc0=pv.inverter_kw / pv.inverter_efficiency, eta_inv_nom=pv.inverter_efficiency
    )
    ac_kw = np.clip(np.where(ghi > 0.0, ac_kw, 0.0), 0.0, pv.inverter_kw)
    if not np.isfinite(ac_kw).all():  # pragma: no cover - a bug in the chain, never bad input
        raise AssertionError("pv_ac_kw produced non-finite values")
    return pd.Series(ac_kw, index=pd.DatetimeIndex(index, name="time"), name="pv_kw")


def specific_yield_kwh_per_kwp(pv_kw: pd.Series, kwp: float, minutes: int) -> float:
    """AC energy per kWp installed over the whole series, in kWh/kWp (annual yield for a year of data).

    Parameters
    ----------
    pv_kw : mean AC power per interval in kW.
    kwp : installed DC peak power in kWp (> 0).
    minutes : interval length in minutes.
    """
    if kwp <= 0:
        raise DataError(f"kwp = {kwp}: must be positive")
    return float(np.nansum(np.asarray(pv_kw, dtype=float)) * minutes / 60.0 / kwp)


def _per_interval(values: pd.Series | npt.ArrayLike, index: pd.DatetimeIndex, field: str) -> np.ndarray:
    """One float per interval from a Series on ``index``, an array of the same length or a scalar."""
    if isinstance(values, pd.Series):
        if isinstance(values.index, pd.DatetimeIndex) and not to_utc(values.index, field).equals(index):
            raise DataError(f"{field}: its index differs from times; align it first (e.g. reindex)")
        arr = values.to_numpy(dtype=float)
    else:
        arr = np.asarray(values, dtype=float)
        if arr.ndim == 0:
            arr = np.full(len(index), float(arr))
    if arr.shape != (len(index),):
        raise DataError(f"{field}: {arr.size} values for {len(index)} intervals")
    if np.isnan(arr).any():
        where = index[np.isnan(arr)][0]
        raise DataError(f"{field}: {int(np.isnan(arr).sum())} blank (NaN) values, first at {where}")
    return arr


def _decompose(
    ghi: np.ndarray, zenith: np.ndarray, apparent_zenith: np.ndarray, dni_extra: np.ndarray, doy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """DNI and DHI (W/m2) from GHI by Erbs, with DNI capped at clean-sky DNI and DHI closing the balance."""
    erbs = pvlib.irradiance.erbs(ghi, zenith, doy, max_zenith=ERBS_MAX_ZENITH_DEG)
    dni = np.nan_to_num(np.asarray(erbs["dni"], dtype=float), nan=0.0)
    airmass_abs = pvlib.atmosphere.get_absolute_airmass(pvlib.atmosphere.get_relative_airmass(apparent_zenith))
    with np.errstate(divide="ignore", invalid="ignore"):  # NaN/inf airmass with the sun below the horizon
        clean = pvlib.clearsky.ineichen(
            apparent_zenith, airmass_abs, CLEAN_SKY_LINKE_TURBIDITY, altitude=0.0, dni_extra=dni_extra
        )
    dni_max = np.nan_to_num(np.asarray(clean["dni"], dtype=float), nan=0.0)
    dni = np.clip(dni, 0.0, dni_max)
    # GHI = DNI cos(z) + DHI holds exactly: what the cap removes from the beam becomes diffuse.
    cos_zenith = np.maximum(np.cos(np.radians(zenith)), 0.0)
    dhi = np.maximum(ghi - dni * cos_zenith, 0.0)
    return dni, dhi


def _plane_of_array(
    array: PvArray,
    apparent_zenith: np.ndarray,
    solar_azimuth: np.ndarray,
    ghi: np.ndarray,
    dni: np.ndarray,
    dhi: np.ndarray,
    dni_extra: np.ndarray,
    airmass: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Total plane-of-array irradiance and the part that reaches the cells after reflection (W/m2)."""
    tilt, azimuth = array.tilt_deg, array.azimuth_deg
    aoi = pvlib.irradiance.aoi(tilt, azimuth, apparent_zenith, solar_azimuth)
    beam = np.asarray(pvlib.irradiance.beam_component(tilt, azimuth, apparent_zenith, solar_azimuth, dni))
    with np.errstate(invalid="ignore", divide="ignore"):
        sky = np.asarray(
            pvlib.irradiance.perez(tilt, azimuth, dhi, dni, dni_extra, apparent_zenith, solar_azimuth, airmass),
            dtype=float,
        )
    # Perez is undefined with the sun below the horizon (NaN airmass, where pvlib returns 0) and with no
    # diffuse light (NaN clearness); twilight intervals with light get the isotropic sky instead.
    isotropic = np.asarray(pvlib.irradiance.isotropic(tilt, dhi), dtype=float)
    sky = np.where(np.isnan(airmass), isotropic, np.nan_to_num(sky, nan=0.0))
    sky = np.where(dhi > 0.0, sky, 0.0)
    ground = np.asarray(pvlib.irradiance.get_ground_diffuse(tilt, ghi, albedo=ALBEDO), dtype=float)
    # Reflection losses on the beam only, as PVWatts does; its 14 % default losses assume that.
    iam = np.nan_to_num(np.asarray(pvlib.iam.physical(aoi), dtype=float), nan=0.0)
    poa_global = beam + sky + ground
    poa_effective = beam * iam + sky + ground
    return poa_global, poa_effective
