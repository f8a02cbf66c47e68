"""When the home owner's goals fall due: the daily endpoint and night-end instants on the interval grid.

- Endpoint: every local day at ``endpoint_hour``:00 local clock, SoC >= ``endpoint_soc_pct``. The instant
  is the end of the interval that ends then (so with 15-minute steps, the SoC after the 16:45 interval
  counts for a 17:00 endpoint).
- Night end: every local day at local sunrise minus ``night_end_offset_min``, floored to the interval
  grid, SoC >= ``night_end_soc_pct``.

Instants are tz-aware UTC; a DST day shifts them correctly because they are built on the local clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dwars.config import Installation
from dwars.timegrid import freq


@dataclass(frozen=True)
class Deadline:
    """One goal that falls due: ``kind`` (``endpoint`` or ``night_end``), the UTC instant and the SoC %."""

    kind: str
    time: pd.Timestamp
    soc_pct: float


def local_dates(start: pd.Timestamp, end: pd.Timestamp, tz: str) -> pd.DatetimeIndex:
    """Local midnights (tz-aware, local) of every local day that overlaps [start, end)."""
    first = pd.Timestamp(start).tz_convert(tz).normalize()
    last = (pd.Timestamp(end) - pd.Timedelta(microseconds=1)).tz_convert(tz).normalize()
    days = pd.date_range(first.tz_localize(None), last.tz_localize(None), freq="D")
    return days.tz_localize(tz)


def endpoint_times(start: pd.Timestamp, end: pd.Timestamp, hour: int, tz: str) -> pd.DatetimeIndex:
    """UTC instants of ``hour``:00 local on every local day, within (start, end]."""
    days = local_dates(start, end, tz)
    naive = days.tz_localize(None) + pd.Timedelta(hours=hour)
    # Hour 2 is skipped on the spring DST day (take the first instant after the gap) and occurs twice on the
    # autumn one (take the first, summer-time, occurrence).
    instants = naive.tz_localize(tz, ambiguous=np.ones(len(naive), bool), nonexistent="shift_forward")
    instants = instants.tz_convert("UTC")
    return instants[(instants > start) & (instants <= end)]


def sunrise_times(days: pd.DatetimeIndex, latitude: float, longitude: float) -> pd.DatetimeIndex:
    """Local sunrise (UTC instants) for local midnights ``days`` (NREL SPA, via pvlib)."""
    import pvlib  # deferred: only goal computations need it

    table = pvlib.solarposition.sun_rise_set_transit_spa(days, latitude, longitude)
    return pd.DatetimeIndex(table["sunrise"]).tz_convert("UTC")


def night_end_times(
    start: pd.Timestamp, end: pd.Timestamp, latitude: float, longitude: float, offset_min: float, minutes: int,
    tz: str,
) -> pd.DatetimeIndex:
    """UTC instants of sunrise minus ``offset_min``, floored to the ``minutes`` grid, within (start, end]."""
    days = local_dates(start, end, tz)
    instants = (sunrise_times(days, latitude, longitude) - pd.Timedelta(minutes=offset_min)).floor(freq(minutes))
    return instants[(instants > start) & (instants <= end)]


def deadlines(inst: Installation, start: pd.Timestamp, end: pd.Timestamp, minutes: int) -> list[Deadline]:
    """All endpoint and night-end deadlines of ``inst`` in (start, end], in time order."""
    out: list[Deadline] = []
    g, s = inst.goals, inst.site
    if g.endpoint_hour is not None:
        ends = endpoint_times(start, end, g.endpoint_hour, s.timezone)
        out += [Deadline("endpoint", t, g.endpoint_soc_pct) for t in ends]
    if g.night_end_soc_pct is not None:
        nights = night_end_times(start, end, s.latitude, s.longitude, g.night_end_offset_min, minutes, s.timezone)
        out += [Deadline("night_end", t, g.night_end_soc_pct) for t in nights]
    return sorted(out, key=lambda d: (d.time, d.kind))
