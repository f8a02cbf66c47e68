"""Hourly household consumption and PV power from the Open Power System Data (OPSD) "Household data" CSV.

The OPSD file (``household_data_60min_singleindex.csv``) holds CUMULATIVE meter readings in kWh per
household and device (columns ``<household>_grid_import``, ``_grid_export``, ``_pv``, ...) at the instants
``utc_timestamp``. dwars turns two consecutive readings into the energy of the hour between them:

    energy of [t_i, t_i+1) = reading(t_i+1) - reading(t_i), stamped with the interval START t_i,

so the row stamped 12:00Z is the energy used from 12:00Z to 13:00Z. (OPSD's own stamping of the
derived hourly values may differ by one hour; dwars fixes this reading once, here.) Mean power over the
hour in kW equals the energy in kWh because the interval is one hour.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from dwars.data.io import read_text
from dwars.errors import DataError

log = logging.getLogger(__name__)

HOUR = pd.Timedelta(hours=1)


def load_opsd_household(path: str | Path, household: str = "DE_KN_residential4") -> pd.DataFrame:
    """Hourly consumption (and PV production) of one OPSD household as mean kW, indexed by UTC hour start.

    Consumption is what the home used, wherever it came from: ``grid_import + pv - grid_export`` (each the
    difference of consecutive cumulative readings; see the module text for the stamping).

    Parameters
    ----------
    path : OPSD 60-minute single-index CSV (optionally ``.gz``), or a slice of it with the same columns.
    household : column prefix, e.g. ``"DE_KN_residential4"``.

    Returns
    -------
    DataFrame indexed by ``time`` (UTC start of the hour) with ``load_kw`` (mean consumption over the hour,
    kW) and, where the household has a ``_pv`` column, ``pv_kw`` (mean PV production, kW). An
    ``_grid_export`` column that does not exist counts as zero export.

    Hours are LEFT OUT (so :func:`dwars.timegrid.check_regular` reports them as missing) and counted in a
    log warning when a reading at either end is blank (a run of k blank rows costs k + 1 hours), when two
    rows are not one hour apart (a slice of the file), or when a cumulative reading decreases (meter reset
    or replacement). Hours whose consumption comes out negative (the meters are read a moment apart) are
    set to 0 kW and counted in a log warning.

    Raises
    ------
    DataError
        when ``utc_timestamp`` or ``<household>_grid_import`` is missing (naming the columns found), or a
        timestamp or reading is not readable (naming the row and value).
    """
    text = read_text(path)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{path}: not an OPSD household CSV ({err})") from None
    import_col = f"{household}_grid_import"
    for col in ("utc_timestamp", import_col):
        if col not in frame.columns:
            ours = [c for c in frame.columns if c.startswith(household)]
            households = sorted({c.rsplit("_", 2)[0] for c in frame.columns if "_grid_" in c})
            raise DataError(f"{path}: column {col} missing; found for {household}: {', '.join(ours) or 'none'}"
                            f"; households with grid columns: {', '.join(households) or 'none'}")
    stamps = frame["utc_timestamp"].str.strip()
    time = pd.to_datetime(stamps, format="%Y-%m-%dT%H:%M:%SZ", errors="coerce")
    if time.isna().any():
        bad = stamps[time.isna()].iloc[0]
        raise DataError(f"{path}: utc_timestamp = {bad!r}: not a time like 2016-01-01T00:00:00Z")
    time_ns = pd.DatetimeIndex(time).as_unit("ns").tz_localize("UTC")
    if not time_ns.is_monotonic_increasing or time_ns.has_duplicates:
        raise DataError(f"{path}: utc_timestamp must increase from row to row")

    def readings(col: str) -> np.ndarray:
        raw = frame[col].str.strip()
        values = pd.to_numeric(raw.replace("", np.nan), errors="coerce")
        bad = values.isna() & (raw != "")
        if bad.any():
            i = bad.idxmax()
            raise DataError(f"{path}: {col} = {raw[i]!r} at {stamps[i]}: not a number (kWh)")
        return values.to_numpy(dtype=float)

    def hourly(col: str) -> tuple[np.ndarray, np.ndarray]:
        # Energy of [t_i, t_i+1) from the readings at both ends, and where the meter went backwards.
        r = readings(col)
        delta = r[1:] - r[:-1]
        return delta, delta < 0

    consecutive = np.diff(time_ns.asi8) == HOUR.value
    columns = {"grid_import": import_col, "grid_export": f"{household}_grid_export", "pv": f"{household}_pv"}
    deltas: dict[str, np.ndarray] = {}
    reset = np.zeros(len(frame) - 1 if len(frame) else 0, dtype=bool)
    for key, col in columns.items():
        if col in frame.columns:
            deltas[key], went_back = hourly(col)
            reset |= went_back
    blank = np.zeros_like(reset)
    for d in deltas.values():
        blank |= np.isnan(d)
    usable = consecutive & ~blank & ~reset
    n_blank = int((consecutive & blank).sum())
    n_reset = int((consecutive & ~blank & reset).sum())
    n_jump = int((~consecutive).sum())
    if n_blank:
        log.warning("%s: %d hours of %s left out: blank meter readings", path, n_blank, household)
    if n_reset:
        log.warning("%s: %d hours of %s left out: a cumulative reading went down (meter reset)",
                    path, n_reset, household)
    if n_jump:
        log.info("%s: %d places where rows are not one hour apart; the hour there is left out", path, n_jump)

    zero = np.zeros_like(deltas["grid_import"])
    load_kwh = deltas["grid_import"] + deltas.get("pv", zero) - deltas.get("grid_export", zero)
    negative = usable & (load_kwh < 0)
    if negative.any():
        # The three meters are not read at exactly the same instant; on a sunny hour with little use that
        # gives up to ~1 kWh below zero (11 hours in 2016 for DE_KN_residential4). Consumption is never
        # negative, so clip (and say how many); the energy added is tiny (2 kWh of 6100 kWh in 2016).
        log.warning("%s: %d hours with consumption below 0 (min %.3f kWh) set to 0", path,
                    int(negative.sum()), float(load_kwh[negative].min()))
        load_kwh = np.where(negative, 0.0, load_kwh)
    index = pd.DatetimeIndex(time_ns[:-1][usable], name="time")
    # kWh in one hour = mean kW over that hour.
    out = pd.DataFrame({"load_kw": load_kwh[usable]}, index=index)
    if "pv" in deltas:
        out["pv_kw"] = deltas["pv"][usable]
    return out
