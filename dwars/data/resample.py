"""Change the resolution of an interval series between 60 and 15 minutes, by the kind of quantity.

- ``price`` (EUR/MWh, EUR/kWh): held per quarter when going finer; the mean when going coarser.
- ``energy`` (kWh per interval): split evenly when going finer; summed when going coarser.
- ``power`` (mean kW or W/m2 over the interval): held when going finer; averaged when going coarser.

Going finer then coarser again gives back the original exactly. Going coarser needs every hour complete
(four quarters); an incomplete hour is an error, never a silent average of fewer quarters.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from dwars.errors import DataError
from dwars.timegrid import check_regular, format_time, infer_resolution, to_utc

Kind = Literal["price", "energy", "power"]
KINDS: tuple[str, ...] = ("price", "energy", "power")


def resample(series: pd.Series, kind: Kind, to_minutes: int, from_minutes: int | None = None) -> pd.Series:
    """Resample a regular UTC interval series to 15 or 60 minutes.

    Parameters
    ----------
    series : values indexed by UTC interval start, regular (see :func:`dwars.timegrid.check_regular`).
    kind : ``price``, ``energy`` or ``power`` (see the module text).
    to_minutes : target interval length, 15 or 60.
    from_minutes : source interval length; inferred from the index when omitted.

    Raises
    ------
    DataError
        for an unknown kind, an irregular series, or an incomplete hour when going coarser.
    """
    if kind not in KINDS:
        raise DataError(f"kind = {kind!r}: must be one of {', '.join(KINDS)}")
    name = str(series.name or "series")
    index = to_utc(series.index, name)
    src = from_minutes or infer_resolution(index)
    if src == to_minutes:
        return pd.Series(series.to_numpy(), index=index, name=series.name)
    report = check_regular(index, src, name)
    if not report.ok:
        raise DataError(report.describe() + "; fill or refuse the gaps before resampling")
    values = series.to_numpy(dtype=float)
    if to_minutes < src:
        factor = src // to_minutes
        out = np.repeat(values / factor if kind == "energy" else values, factor)
        offsets = np.tile(np.arange(factor) * pd.Timedelta(minutes=to_minutes).value, len(index))
        new_index = pd.DatetimeIndex(np.repeat(index.asi8, factor) + offsets, tz="UTC").as_unit("ns")
        return pd.Series(out, index=new_index.rename(index.name), name=series.name)
    factor = to_minutes // src
    step = pd.Timedelta(minutes=to_minutes).value
    first_ok = index.asi8[0] % step == 0
    last_ok = (index.asi8[-1] + pd.Timedelta(minutes=src).value) % step == 0
    if not (first_ok and last_ok and len(index) % factor == 0):
        edge = index[0] if not first_ok else index[-1]
        raise DataError(
            f"{name}: cannot make {to_minutes}-minute intervals from {src}-minute data that starts or ends "
            f"inside an interval (at {format_time(edge)}); give whole hours"
        )
    blocks = values.reshape(-1, factor)
    out = blocks.sum(axis=1) if kind == "energy" else blocks.mean(axis=1)
    return pd.Series(out, index=index[::factor], name=series.name)


def resample_frame(frame: pd.DataFrame, kinds: dict[str, Kind], to_minutes: int) -> pd.DataFrame:
    """Resample every column of ``frame`` by its kind in ``kinds`` (all columns must be listed)."""
    missing = [c for c in frame.columns if c not in kinds]
    if missing:
        raise DataError(f"resample: no kind given for column(s) {', '.join(missing)}")
    return pd.DataFrame({c: resample(frame[c], kinds[c], to_minutes) for c in frame.columns})
