"""The P1 meter's energy counters at every interval boundary, kept in SQLite for ``dwars bill``.

One row per boundary: the UTC boundary (epoch seconds, on the 15-minute grid), the meter's import and export
counters in kWh (all tariff registers summed, as :class:`~dwars.runtime.meter.reading.MeterReading` gives them;
a dynamic contract prices every interval by its own EPEX price, so the T1/T2 split does not enter a bill) and
the meter's own time of the reading. Counters at boundaries are all a bill needs: the energy of an interval is
the difference of the counters at its two ends (:mod:`dwars.runtime.bill`).

The file is written in WAL mode, one transaction per row: a process that is killed loses nothing that was
committed, and a second reader (``dwars bill`` while ``dwars run`` writes) sees every committed row. Recording a
boundary that is already there keeps the first row (a restart within an interval records it again; the first
reading is the one nearest to the boundary). Rows are never pruned: a year of quarter hours is 35 040 rows,
about 2 MB, and the yearly statement needs the whole year.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

from dwars.errors import DataError

log = logging.getLogger(__name__)

FILE_NAME = "meter_log.sqlite"
SCHEMA_VERSION = 1
GRID_MIN = 15  # boundaries lie on the quarter-hour grid (hourly boundaries are on it too)
#: A reading further than this from the boundary is not recorded: 90 s is 10 % of a quarter hour, beyond which
#: too much of one interval's energy would land in the next. A missing boundary is a gap that the bill reports
#: (its energy is known from the counters on either side, only its timing is not).
MAX_SKEW_S = 90.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (
    time_utc INTEGER PRIMARY KEY,   -- interval boundary, seconds since 1970-01-01 UTC
    import_kwh_total REAL NOT NULL, -- meter counter, energy drawn from the grid, all tariffs
    export_kwh_total REAL NOT NULL, -- meter counter, energy fed into the grid, all tariffs
    read_utc INTEGER                -- the meter's own time of the reading (NULL: not known)
)
"""


def meter_log_path(data_dir: str | Path) -> Path:
    """The meter log in a runtime data folder (``runtime.data_dir``)."""
    return Path(data_dir) / FILE_NAME


def _epoch_s(when: Any, field: str) -> int:
    try:
        ts = pd.Timestamp(when)
    except (TypeError, ValueError):
        raise DataError(f"{field} = {when!r}: not a time") from None
    if ts.tzinfo is None:
        raise DataError(f"{field} = {ts}: must be timezone-aware (dwars stores UTC)")
    return int(ts.tz_convert("UTC").value // 1_000_000_000)


class MeterLog:
    """The meter's counters at interval boundaries in an SQLite file (see the module text).

    Parameters
    ----------
    path : the database file (created with its folder when missing).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=10.0)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise DataError(f"{self.path}: meter log schema version {version}; this dwars reads {SCHEMA_VERSION}")
            with self._db:
                self._db.execute(_SCHEMA)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise DataError(f"{self.path}: not a usable meter log ({err})") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> MeterLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM counters").fetchone()[0])

    def record(self, time_utc: Any, import_kwh_total: float, export_kwh_total: float,
               read_time: Any | None = None) -> bool:
        """Store the counters (kWh) at boundary ``time_utc``; True when stored, False when the boundary was there.

        Raises
        ------
        DataError
            for a naive time, a time off the quarter-hour grid, or a counter that is not a finite number >= 0.
        """
        at = _epoch_s(time_utc, "time_utc")
        if at % (GRID_MIN * 60):
            raise DataError(f"time_utc = {pd.Timestamp(time_utc).isoformat()}: not an interval boundary (the log "
                            f"keeps the counters at whole quarter hours)")
        for name, value in (("import_kwh_total", import_kwh_total), ("export_kwh_total", export_kwh_total)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise DataError(f"{name} = {value!r} at {pd.Timestamp(time_utc).isoformat()}: must be a number >= 0")
        read_s = None if read_time is None else _epoch_s(read_time, "read_time")
        with self._db:  # one transaction per row: committed means kept, also when the process is killed next
            cursor = self._db.execute("INSERT OR IGNORE INTO counters VALUES (?, ?, ?, ?)",
                                      (at, float(import_kwh_total), float(export_kwh_total), read_s))
        return cursor.rowcount == 1

    def readings(self, start: Any, end: Any) -> pd.DataFrame:
        """The rows with ``start <= time <= end`` (both ends included: a period's bill needs the counters at its
        first and at its last boundary), in time order.

        Returns
        -------
        DataFrame indexed by ``time`` (UTC boundary) with ``import_kwh_total``, ``export_kwh_total`` (kWh) and
        ``read_time`` (UTC, NaT where not known): the layout :func:`dwars.runtime.bill.reconstruct_bill` reads.
        """
        lo, hi = _epoch_s(start, "start"), _epoch_s(end, "end")
        rows = self._db.execute("SELECT time_utc, import_kwh_total, export_kwh_total, read_utc FROM counters "
                                "WHERE time_utc >= ? AND time_utc <= ? ORDER BY time_utc", (lo, hi)).fetchall()
        index = pd.DatetimeIndex(pd.to_datetime([r[0] for r in rows], unit="s", utc=True), name="time").as_unit("ns")
        return pd.DataFrame({
            "import_kwh_total": pd.Series([r[1] for r in rows], index=index, dtype=float),
            "export_kwh_total": pd.Series([r[2] for r in rows], index=index, dtype=float),
            "read_time": pd.Series(pd.to_datetime([r[3] for r in rows], unit="s", utc=True), index=index),
        })


def record_counters(data_dir: str | Path, boundary: pd.Timestamp, reading: Any,
                    max_skew_s: float = MAX_SKEW_S) -> bool:
    """The runtime's hook: store ``reading``'s counters at interval ``boundary`` in the data folder's meter log.

    Opens the file for this one row and closes it again (four times an hour: the cost is a millisecond, and no
    handle stays open across a crash). Nothing is stored without a reading, for a reading further than
    ``max_skew_s`` from the boundary (a stale meter: better a gap than energy in the wrong interval), or for a
    boundary off the quarter-hour grid. Never raises: a failing log must not stop the control loop; it says why
    in a warning and returns False.
    """
    if reading is None:
        return False
    skew_s = abs((pd.Timestamp(reading.time) - pd.Timestamp(boundary)).total_seconds())
    if skew_s > max_skew_s:
        log.warning("meter log: the last meter reading is %.0f s from the interval boundary %s; the counters of "
                    "this boundary are not logged (the bill reports a gap)", skew_s, boundary)
        return False
    try:
        with MeterLog(meter_log_path(data_dir)) as meter_log:
            return meter_log.record(boundary, reading.import_kwh_total, reading.export_kwh_total, reading.time)
    except (DataError, sqlite3.Error, OSError) as err:
        log.warning("meter log: could not store the counters at %s (%s)", boundary, err)
        return False
