"""Dutch standard household load profiles (NEDU/EDSN, e.g. E1A): 15-minute fractions of a year's consumption."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from dwars.data.io import read_text
from dwars.errors import DataError
from dwars.timegrid import LOCAL_TZ

log = logging.getLogger(__name__)

SUM_TOLERANCE = 1e-3  # the published 2019 E1A sums to 1.0000002 (rounding to 8 decimals)


def load_nedu_profile(path: str | Path, year: int = 2019, tz: str = LOCAL_TZ) -> pd.Series:
    """A NEDU profile file (one fraction per line, no header, no timestamps) as a UTC 15-minute series.

    NEDU profiles run in Dutch local time with 92 quarters on the spring DST day and 100 on the autumn
    one, i.e. one unbroken sequence of real quarter hours: value i covers
    ``[local new year of `year` in UTC + 15 min * i, + 15 min)`` (for 2019 that starts at 2018-12-31T23:00Z).

    Parameters
    ----------
    path : profile file (optionally ``.gz``), e.g. ``EDSN_E1A_2019.csv``.
    year : the calendar year the file describes (the file does not say).
    tz : the clock the profile's year runs on.

    Returns
    -------
    Series ``fraction`` (share of the annual consumption used in each quarter hour, dimensionless; multiply
    by the annual kWh to get kWh per quarter) indexed by ``time``, the UTC start of each quarter.

    Raises
    ------
    DataError
        when a line is not a number, a fraction is negative or not finite, the count is not 35040 (35136 in a
        leap year), or the fractions do not sum to 1 within 0.001.
    """
    lines = [ln.strip() for ln in read_text(path).splitlines()]
    # A trailing newline (or none, as published) must not matter; blank lines inside would shift the year.
    while lines and not lines[-1]:
        lines.pop()
    texts = pd.Series(lines, dtype=object)
    # Some exports use a decimal comma; the values are plain fractions, so no thousands separators occur.
    values = pd.to_numeric(texts.str.replace(",", ".", regex=False), errors="coerce")
    bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float)) | (values < 0)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}: line {i + 1}: fraction = {texts[i]!r}: must be a finite number >= 0")
    start = pd.Timestamp(year=year, month=1, day=1).tz_localize(tz).tz_convert("UTC")
    end = pd.Timestamp(year=year + 1, month=1, day=1).tz_localize(tz).tz_convert("UTC")
    index = pd.date_range(start, end, freq="15min", inclusive="left", name="time").as_unit("ns")
    if len(values) != len(index):
        raise DataError(f"{path}: {len(values)} values; a 15-minute profile of {year} needs {len(index)} "
                        f"(one per quarter hour of the local year); is year = {year} right?")
    total = float(values.sum())
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise DataError(f"{path}: fractions sum to {total:.6f}; a profile must sum to 1 (+-{SUM_TOLERANCE:g})")
    return pd.Series(values.to_numpy(dtype=float), index=index, name="fraction")
