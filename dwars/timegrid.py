"""Time handling: the interval grid in UTC, local days, naive local timestamps and gaps.

Conventions used everywhere in dwars:

- Every series is indexed by tz-aware UTC timestamps that mark the **start** of an interval.
- The interval length (the resolution) is 15 or 60 minutes.
- A "local day" is a calendar day on the home's clock (Europe/Amsterdam by default): 96 quarters
  normally, 92 on the last Sunday of March and 100 on the last Sunday of October.
- Times are shown in local time; they are never stored or computed in local time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd

from dwars.errors import DataError, MissingDataError

LOCAL_TZ = "Europe/Amsterdam"
RESOLUTIONS_MIN: tuple[int, ...] = (15, 60)
FillMethod = Literal["hold", "interpolate"]

log = logging.getLogger(__name__)


def parse_resolution(value: str | int) -> int:
    """Interval length in minutes from ``"15min"``, ``"60min"``, ``"1h"``, ``"hourly"``, 15 or 60.

    Raises
    ------
    DataError
        for anything else, naming the value.
    """
    text = str(value).strip().lower()
    aliases = {"15": 15, "15min": 15, "15m": 15, "quarter": 15, "60": 60, "60min": 60, "60m": 60,
               "1h": 60, "h": 60, "hour": 60, "hourly": 60}
    if text not in aliases:
        raise DataError(f"resolution = {value!r}: must be 15min or 60min")
    return aliases[text]


def freq(minutes: int) -> str:
    """pandas frequency string for an interval length in minutes (``"15min"``)."""
    return f"{int(minutes)}min"


def infer_resolution(index: pd.DatetimeIndex) -> int:
    """Interval length in minutes, from the most common step of ``index`` (15 or 60).

    Raises
    ------
    DataError
        when the index is too short or its common step is not 15 or 60 minutes.
    """
    index = pd.DatetimeIndex(index)
    if index.freq is not None and pd.Timedelta(index.freq) in (pd.Timedelta(minutes=m) for m in RESOLUTIONS_MIN):
        return int(pd.Timedelta(index.freq).total_seconds() // 60)
    if len(index) < 2:
        raise DataError(f"time: need at least 2 intervals to tell the resolution, got {len(index)}")
    steps = np.diff(pd.DatetimeIndex(index).as_unit("ns").asi8) // 60_000_000_000
    values, counts = np.unique(steps, return_counts=True)
    step = int(values[np.argmax(counts)])
    if step not in RESOLUTIONS_MIN:
        raise DataError(f"time: the common step between rows is {step} minutes; must be 15 or 60")
    return step


def to_utc(index: pd.DatetimeIndex | pd.Series, field: str = "time") -> pd.DatetimeIndex:
    """Convert a tz-aware index to UTC. Naive timestamps are refused: their meaning is ambiguous."""
    idx = pd.DatetimeIndex(index)
    if idx.tz is None:
        raise DataError(f"{field}: timestamps have no UTC offset; write them as 2024-01-01T00:00:00+00:00")
    # One unit everywhere (pandas 3 defaults to microseconds for parsed text, nanoseconds elsewhere).
    return idx.tz_convert("UTC").as_unit("ns")


def local_day_bounds(start: date | str, end: date | str, tz: str = LOCAL_TZ) -> tuple[pd.Timestamp, pd.Timestamp]:
    """UTC instants of local midnight at ``start`` and at ``end`` (end exclusive)."""
    s = pd.Timestamp(start)
    e = pd.Timestamp(end)
    if s.tzinfo is not None or e.tzinfo is not None:
        raise DataError("start/end: give calendar dates (YYYY-MM-DD), not timestamps")
    if e <= s:
        raise DataError(f"end = {e.date()}: must be after start ({s.date()})")
    return s.normalize().tz_localize(tz).tz_convert("UTC"), e.normalize().tz_localize(tz).tz_convert("UTC")


def local_days_index(start: date | str, end: date | str, minutes: int, tz: str = LOCAL_TZ) -> pd.DatetimeIndex:
    """UTC interval starts covering the local days ``start`` (inclusive) to ``end`` (exclusive).

    A local day has 24 hours except on DST days (23 or 25 hours), so a week holding a DST day has
    one hour more or less than 7 x 24.
    """
    s, e = local_day_bounds(start, end, tz)
    return pd.date_range(s, e, freq=freq(minutes), inclusive="left", name="time")


def localize_naive_local(
    naive: pd.DatetimeIndex | pd.Series, tz: str = LOCAL_TZ, field: str = "time"
) -> pd.DatetimeIndex:
    """UTC timestamps from naive local ones, resolving the autumn DST hour by file order.

    On the last Sunday of October the local hour 02:00-03:00 occurs twice. Files in naive local time show
    it twice; the first occurrence is summer time (UTC+2), the second winter time (UTC+1). A time that
    occurs only once in that hour is taken as summer time (the gap report then shows the winter one as
    missing).

    Raises
    ------
    DataError
        for a local time that does not exist (the skipped spring hour), naming it.
    """
    idx = pd.DatetimeIndex(naive)
    if idx.tz is not None:
        return idx.tz_convert("UTC")
    # True (= DST) for the first occurrence of each naive time, False for later ones.
    is_first = pd.Series(idx).groupby(idx).cumcount().to_numpy() == 0
    try:
        local = idx.tz_localize(tz, ambiguous=is_first, nonexistent="raise")
    except Exception as err:  # pytz/zoneinfo raise different types; report the timestamp either way
        bad = _nonexistent_times(idx, tz)
        where = ", ".join(str(t) for t in bad[:5]) or str(err)
        raise DataError(
            f"{field}: local time {where} does not exist ({tz} skips it at the start of summer time)"
        ) from None
    return local.tz_convert("UTC")


def _nonexistent_times(idx: pd.DatetimeIndex, tz: str) -> list[pd.Timestamp]:
    # With every ambiguity resolved (as summer time), only the times that do not exist come back NaT.
    out = idx.tz_localize(tz, ambiguous=np.ones(len(idx), bool), nonexistent="NaT")
    return list(idx[out.isna()])


@dataclass(frozen=True)
class GapReport:
    """Where a series deviates from a regular grid.

    Attributes
    ----------
    field : name of the series (for messages).
    minutes : expected interval length.
    missing : interval starts (UTC) that have no row.
    duplicates : interval starts (UTC) that have more than one row.
    misaligned : rows whose start is not on the grid (e.g. 00:07).
    """

    field: str
    minutes: int
    missing: pd.DatetimeIndex
    duplicates: pd.DatetimeIndex
    misaligned: pd.DatetimeIndex

    @property
    def ok(self) -> bool:
        return len(self.missing) == 0 and len(self.duplicates) == 0 and len(self.misaligned) == 0

    def describe(self, tz: str = LOCAL_TZ, limit: int = 6) -> str:
        """One line for a home owner: what is wrong and where (UTC and local)."""
        parts = []
        for label, idx in (("missing", self.missing), ("duplicate", self.duplicates),
                           ("off-grid", self.misaligned)):
            if len(idx):
                shown = ", ".join(format_time(t, tz) for t in idx[:limit])
                more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
                noun = "interval" if len(idx) == 1 else "intervals"
                parts.append(f"{len(idx)} {label} {noun} ({shown}{more})")
        return f"{self.field}: " + ("; ".join(parts) if parts else "complete")


def format_time(ts: pd.Timestamp, tz: str = LOCAL_TZ) -> str:
    """``2022-10-30 01:00 UTC (02:00 local)``: a UTC instant with its local clock time."""
    ts = pd.Timestamp(ts)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    local = ts.tz_convert(tz)
    return f"{ts.tz_convert('UTC'):%Y-%m-%d %H:%M} UTC ({local:%H:%M} local)"


def check_regular(
    index: pd.DatetimeIndex,
    minutes: int,
    field: str = "series",
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> GapReport:
    """Compare ``index`` with the regular UTC grid from ``start`` (default: first row) to ``end``
    (exclusive; default: one interval after the last row)."""
    idx = to_utc(index, field)
    step = pd.Timedelta(minutes=minutes)
    empty = pd.DatetimeIndex([], tz="UTC")
    if len(idx) == 0:
        if start is None or end is None:
            return GapReport(field, minutes, empty, empty, empty)
        return GapReport(field, minutes, pd.date_range(start, end, freq=step, inclusive="left"), empty, empty)
    misaligned = idx[(idx.asi8 % step.value) != 0]  # asi8 in ns: to_utc fixed the unit
    dup = idx[idx.duplicated()].unique()
    lo = idx.min() if start is None else pd.Timestamp(start).tz_convert("UTC")
    hi = idx.max() + step if end is None else pd.Timestamp(end).tz_convert("UTC")
    grid = pd.date_range(lo, hi, freq=step, inclusive="left")
    missing = grid.difference(idx)
    return GapReport(field, minutes, missing, dup, misaligned)


def fill_gaps(
    series: pd.Series,
    minutes: int,
    method: FillMethod | None,
    field: str | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> tuple[pd.Series, GapReport]:
    """Put ``series`` on its regular grid, filling missing intervals by an explicit rule.

    Parameters
    ----------
    series : values indexed by UTC interval start; blank (NaN) values count as missing.
    minutes : interval length.
    method : ``"hold"`` (repeat the previous value, for prices), ``"interpolate"`` (linear in time) or
        ``None`` (refuse: raise when anything is missing).
    start, end : grid bounds (UTC; end exclusive). Default: the series' own first and last interval.

    Returns
    -------
    The regular series and the report of what was missing. Every fill is logged as a warning.

    Raises
    ------
    MissingDataError
        when intervals are missing and ``method`` is None; the message lists them.
    DataError
        on duplicate or off-grid rows (never filled: they mean the source is misread).
    """
    field = field or str(series.name or "series")
    index = to_utc(series.index, field)
    values = pd.Series(series.to_numpy(dtype=float), index=index, name=series.name).dropna()
    report = check_regular(values.index, minutes, field, start, end)
    if len(report.duplicates) or len(report.misaligned):
        raise DataError(report.describe())
    lo = values.index.min() if start is None else pd.Timestamp(start).tz_convert("UTC")
    hi = values.index.max() + pd.Timedelta(minutes=minutes) if end is None else pd.Timestamp(end).tz_convert("UTC")
    grid = pd.date_range(lo, hi, freq=freq(minutes), inclusive="left", name=index.name)
    if report.missing.size == 0:
        return values.reindex(grid), report
    if method is None:
        raise MissingDataError(
            report.describe() + ". Fill them explicitly (hold or interpolate) or choose another period."
        )
    filled = values.reindex(grid)
    if method == "hold":
        filled = filled.ffill().bfill()
    elif method == "interpolate":
        filled = filled.interpolate(method="time", limit_direction="both")
    else:
        raise DataError(f"fill = {method!r}: must be hold or interpolate")
    log.warning("%s; filled %d intervals by %s", report.describe(), len(report.missing), method)
    return filled, report
