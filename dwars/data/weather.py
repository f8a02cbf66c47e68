"""KNMI hourly station weather (global radiation and temperature) as UTC series.

Reads both the files users download from KNMI (``uurgeg_260_2021-2030.txt``: long header, a ``# STN,...``
column line, comma-separated and space-padded, blank fields allowed) and the two-column extract bundled
with dwars (``STN,YYYYMMDD,HH,T,Q,...``). KNMI counts hours in UT: ``HH`` = 1..24 and hour HH covers
(HH-1):00 to HH:00 UT, so the interval starts at ``YYYYMMDD + (HH-1) h`` UTC; there is no DST in the file.
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

J_PER_CM2_TO_WH_PER_M2 = 10_000 / 3600  # 1 J/cm2 = 10 000 J/m2 = 2.778 Wh/m2


def load_knmi_hourly(path: str | Path) -> pd.DataFrame:
    """KNMI hourly weather as a DataFrame indexed by UTC interval start.

    Parameters
    ----------
    path : a KNMI ``uurgeg_*.txt`` file or the dwars extract CSV (optionally ``.gz``).

    Returns
    -------
    DataFrame with ``ghi_w_per_m2`` (mean global horizontal irradiance over the hour, W/m2, from Q in
    J/cm2 per hour) and ``temp_air_c`` (air temperature at 1.5 m in degC, observed at the end of the hour).
    Hours whose Q is blank are left out (so they show up as gaps); a blank temperature is interpolated
    from its neighbours and logged.

    Raises
    ------
    DataError
        when the file has no ``YYYYMMDD``, ``HH``, ``Q`` or ``T`` column, or a value is out of range.
    """
    text = read_text(path)
    lines = text.splitlines()
    header_at = None
    for i, line in enumerate(lines):
        stripped = line.lstrip("# ").strip()
        if stripped.startswith("STN,") and "YYYYMMDD" in stripped:
            header_at = i
            break
    if header_at is None:
        raise DataError(f"{path}: no KNMI column line (STN,YYYYMMDD,HH,...) found")
    header = [c.strip() for c in lines[header_at].lstrip("#").split(",")]
    body = "\n".join(ln for ln in lines[header_at + 1:] if ln.strip() and not ln.lstrip().startswith("#"))
    frame = pd.read_csv(io.StringIO(body), header=None, names=header, skipinitialspace=True,
                        na_values=[""], keep_default_na=False, dtype=str)
    for col in ("YYYYMMDD", "HH", "Q", "T"):
        if col not in frame.columns:
            raise DataError(f"{path}: column {col} missing; found {', '.join(frame.columns)}")

    def numeric(col: str) -> pd.Series:
        values = pd.to_numeric(frame[col].str.strip().replace("", np.nan), errors="coerce")
        return values

    hh = numeric("HH")
    bad_hh = frame.index[(hh < 1) | (hh > 24) | hh.isna()]
    if len(bad_hh):
        i = bad_hh[0]
        raise DataError(f"{path}: HH = {frame.loc[i, 'HH']!r} on {frame.loc[i, 'YYYYMMDD']}: must be 1..24")
    day = pd.to_datetime(frame["YYYYMMDD"].str.strip(), format="%Y%m%d", errors="coerce")
    if day.isna().any():
        i = day.index[day.isna()][0]
        raise DataError(f"{path}: YYYYMMDD = {frame.loc[i, 'YYYYMMDD']!r}: not a date")
    start = (day + pd.to_timedelta(hh - 1, unit="h")).dt.tz_localize("UTC")
    q = numeric("Q")
    t = numeric("T")
    if (q < 0).any():
        i = q.index[q < 0][0]
        raise DataError(f"{path}: Q = {q[i]:g} J/cm2 at {start[i]}: radiation cannot be negative")
    out = pd.DataFrame(
        {"ghi_w_per_m2": (q * J_PER_CM2_TO_WH_PER_M2).to_numpy(), "temp_air_c": (t / 10.0).to_numpy()},
        index=pd.DatetimeIndex(start, name="time").as_unit("ns"),
    )
    blank_q = out["ghi_w_per_m2"].isna()
    if blank_q.any():
        log.warning("%s: %d hours without radiation (Q) left out", path, int(blank_q.sum()))
        out = out[~blank_q]
    blank_t = out["temp_air_c"].isna()
    if blank_t.any():
        log.warning("%s: %d hours without temperature (T) interpolated", path, int(blank_t.sum()))
        out["temp_air_c"] = out["temp_air_c"].interpolate(method="time", limit_direction="both")
    if out.index.has_duplicates:
        dup = out.index[out.index.duplicated()][0]
        raise DataError(f"{path}: hour {dup} occurs more than once")
    return out.sort_index()
