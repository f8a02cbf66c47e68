"""The home's measured load and PV, kept in SQLite across restarts, and the load forecast made from it.

One row per measured interval: UTC start (epoch seconds), length in minutes, mean load and PV in kW. The file is
opened in WAL mode (a reader never blocks the writer, and a crash loses at most the last transaction) and
pruned to the last ``keep_days`` days on every write. A second :class:`LoadHistory` on the same file (after a
restart, or a dashboard reading it) sees every committed row.

The load forecast (:meth:`LoadHistory.load_forecast_kw`) is the simulator's: the mean of the same weekday and
local clock time over the last four weeks (:func:`dwars.env.forecast.history_load_forecast_kw`), each missing
week replaced by the NEDU E1A profile scaled to ``[load] annual_kwh`` (:func:`dwars.env.load.profile_load_kw`).
So a new installation starts on the profile and blends into its own history over four weeks.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from types import TracebackType

import numpy as np
import pandas as pd

from dwars.env.forecast import history_load_forecast_kw
from dwars.env.load import profile_load_kw
from dwars.errors import DataError
from dwars.timegrid import LOCAL_TZ, RESOLUTIONS_MIN

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS measurements (
    start_utc INTEGER NOT NULL,  -- interval start, seconds since 1970-01-01 UTC
    minutes INTEGER NOT NULL,    -- interval length
    load_kw REAL NOT NULL,       -- mean household consumption over the interval
    pv_kw REAL,                  -- mean PV AC power over the interval (NULL: not measured)
    PRIMARY KEY (start_utc, minutes)
) WITHOUT ROWID
"""
_COLUMNS = ["minutes", "load_kw", "pv_kw"]


def _epoch_s(when: pd.Timestamp, field: str) -> int:
    ts = pd.Timestamp(when)
    if ts.tzinfo is None:
        raise DataError(f"{field} = {ts}: must be timezone-aware (dwars stores UTC)")
    return int(ts.tz_convert("UTC").value // 1_000_000_000)


class LoadHistory:
    """Measured load and PV per interval in an SQLite file (see the module text).

    Parameters
    ----------
    path : the database file (created with its folder when missing).
    keep_days : rows older than this many days before the newest row are deleted on every write.
    tz : the home's clock (for the weekday/clock-time load forecast).
    """

    def __init__(self, path: str | Path, keep_days: float = 42.0, tz: str = LOCAL_TZ) -> None:
        if not keep_days > 0:
            raise DataError(f"keep_days = {keep_days}: must be > 0")
        self.path = Path(path)
        self.keep_days = float(keep_days)
        self.tz = tz
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=10.0)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise DataError(f"{self.path}: history schema version {version}; this dwars reads {SCHEMA_VERSION}")
            with self._db:
                self._db.execute(_SCHEMA)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise DataError(f"{self.path}: not a usable history database ({err})") from None

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LoadHistory:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ writing

    def record(self, start: pd.Timestamp, minutes: int, load_kw: float, pv_kw: float | None = None) -> None:
        """Store (or replace) one measured interval: UTC ``start``, ``minutes`` long, mean ``load_kw``/``pv_kw``.

        Raises
        ------
        DataError
            for a naive time, a length other than 15/60, a start off the interval grid, or a load or PV that is
            not a finite number >= 0 (PV may be None: not measured).
        """
        self.record_many(pd.DataFrame({"load_kw": [load_kw], "pv_kw": [np.nan if pv_kw is None else pv_kw]},
                                      index=pd.DatetimeIndex([pd.Timestamp(start)])), minutes)

    def record_many(self, frame: pd.DataFrame, minutes: int) -> int:
        """Store many intervals at once (``load_kw`` and optional ``pv_kw`` columns, UTC start index).

        Returns the number of rows written; see :meth:`record` for what is refused.
        """
        if minutes not in RESOLUTIONS_MIN:
            raise DataError(f"minutes = {minutes}: must be one of {', '.join(map(str, RESOLUTIONS_MIN))}")
        rows = []
        load = frame["load_kw"].to_numpy(dtype=float)
        pv = frame["pv_kw"].to_numpy(dtype=float) if "pv_kw" in frame else np.full(len(frame), np.nan)
        for when, load_kw, pv_kw in zip(frame.index, load, pv, strict=True):
            start_s = _epoch_s(when, "start")
            if start_s % (minutes * 60):
                raise DataError(f"start = {pd.Timestamp(when).isoformat()}: not the start of a {minutes}-minute "
                                "interval")
            if not (math.isfinite(load_kw) and load_kw >= 0):
                raise DataError(f"load_kw = {load_kw} at {pd.Timestamp(when).isoformat()}: must be a number >= 0")
            if not (math.isnan(pv_kw) or pv_kw >= 0) or math.isinf(pv_kw):
                raise DataError(f"pv_kw = {pv_kw} at {pd.Timestamp(when).isoformat()}: must be a number >= 0")
            rows.append((start_s, int(minutes), float(load_kw), None if math.isnan(pv_kw) else float(pv_kw)))
        if not rows:
            return 0
        with self._db:  # one transaction: all rows or none
            self._db.executemany("INSERT OR REPLACE INTO measurements VALUES (?, ?, ?, ?)", rows)
            self._prune()
        return len(rows)

    def _prune(self) -> None:
        newest = self._db.execute("SELECT MAX(start_utc) FROM measurements").fetchone()[0]
        if newest is not None:
            self._db.execute("DELETE FROM measurements WHERE start_utc < ?",
                             (int(newest - self.keep_days * 86400),))

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0])

    def between(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """The rows with ``start <= interval start < end`` (UTC index ``time``; ``minutes``, ``load_kw``, ``pv_kw``
        with NaN where PV was not measured), in time order."""
        lo, hi = _epoch_s(start, "start"), _epoch_s(end, "end")
        rows = self._db.execute("SELECT start_utc, minutes, load_kw, pv_kw FROM measurements WHERE start_utc >= ? "
                                "AND start_utc < ? ORDER BY start_utc, minutes", (lo, hi)).fetchall()
        index = pd.DatetimeIndex(pd.to_datetime([r[0] for r in rows], unit="s", utc=True), name="time").as_unit("ns")
        frame = pd.DataFrame([r[1:] for r in rows], columns=_COLUMNS, index=index)
        frame["minutes"] = frame["minutes"].astype(np.int64)
        return frame.astype({"load_kw": float, "pv_kw": float})

    def series(self, start: pd.Timestamp, end: pd.Timestamp, minutes: int) -> pd.DataFrame:
        """``load_kw`` and ``pv_kw`` on the ``minutes`` grid over ``[start, end)``, NaN where nothing was measured.

        Rows of the other length are converted as powers: quarter hours averaged into an hour (only when all
        four were measured), hours held over their quarters. Where both lengths exist, rows of ``minutes`` win.
        """
        if minutes not in RESOLUTIONS_MIN:
            raise DataError(f"minutes = {minutes}: must be one of {', '.join(map(str, RESOLUTIONS_MIN))}")
        grid = pd.date_range(pd.Timestamp(start).tz_convert("UTC").ceil(f"{minutes}min"),
                             pd.Timestamp(end).tz_convert("UTC"), freq=f"{minutes}min", inclusive="left",
                             name="time").as_unit("ns")
        rows = self.between(start - pd.Timedelta(hours=1), end)
        out = pd.DataFrame({"load_kw": np.nan, "pv_kw": np.nan}, index=grid)
        other = rows[rows["minutes"] != minutes]
        if len(other) and minutes == 60:
            hours = other.groupby(other.index.floor("h"))
            whole = hours["load_kw"].count() == 4
            out.update(hours[["load_kw", "pv_kw"]].mean()[whole].reindex(grid).dropna(how="all"))
        elif len(other):  # hours held over their four quarters
            held = other.loc[other.index.repeat(4), ["load_kw", "pv_kw"]]
            held.index = held.index + pd.to_timedelta(np.tile([0, 15, 30, 45], len(other)), unit="min")
            out.update(held[held.index.isin(grid)])
        same = rows[rows["minutes"] == minutes]
        out.loc[same.index.intersection(grid), ["load_kw", "pv_kw"]] = same.loc[
            same.index.intersection(grid), ["load_kw", "pv_kw"]].to_numpy()
        return out

    def last(self, start: pd.Timestamp, minutes: int) -> tuple[float, float]:
        """(load_kw, pv_kw) measured in the interval starting at ``start`` (NaN for what is missing)."""
        row = self.series(start, pd.Timestamp(start) + pd.Timedelta(minutes=minutes), minutes)
        return (float(row["load_kw"].iloc[0]), float(row["pv_kw"].iloc[0])) if len(row) else (np.nan, np.nan)

    # ------------------------------------------------------------------ forecast

    def load_forecast_kw(self, times: pd.DatetimeIndex, minutes: int, annual_kwh: float, weeks: int = 4) -> np.ndarray:
        """Load forecast (kW) for ``times`` (regular UTC interval starts), as the simulator makes it.

        The mean of the measured load at the same weekday and local clock time 1..``weeks`` weeks before each
        target, with every week that was not measured replaced by the standard profile scaled to ``annual_kwh``
        (:func:`~dwars.env.forecast.history_load_forecast_kw`). Only rows before ``times[0]`` are used.
        """
        times = pd.DatetimeIndex(times).tz_convert("UTC").as_unit("ns")
        # One hour more than whole weeks: the same clock time a week back is 167-169 h away across DST.
        first = times[0] - pd.Timedelta(weeks=weeks, hours=1)
        measured = self.series(first, times[0], minutes)["load_kw"].dropna()
        # Targets go in as NaN: they are sources only for intervals a week after them, never asked for here.
        load = pd.concat([measured, pd.Series(np.nan, index=times)])
        profile = profile_load_kw(times, annual_kwh, tz=self.tz, minutes=minutes).to_numpy()
        fallback = np.concatenate([np.zeros(len(measured)), profile])
        return history_load_forecast_kw(load, fallback, self.tz, weeks)[len(measured):]
