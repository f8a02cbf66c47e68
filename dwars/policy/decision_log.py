"""The decision log: every decision dwars takes, one JSON Lines record per interval (schema 1).

``dwars evaluate`` and the Pi runtime write one record per decided interval: what the controller proposed,
what the safety shield let through (``applied``), every shield intervention with its numbers and its reason
in English and Dutch, and a digest of the inputs the decision saw. ``dwars log`` reads it back
(``docs/decision-log.md`` has the schema, rotation and crash behaviour).

.. code-block:: python

    from dwars.policy.decision_log import DecisionLog, decision_record, inputs_digest, read_records

    with DecisionLog("decisions.jsonl") as log:       # appends; rotates at 10 MB keeping 5 old files
        log.write(decision_record(state.time, "Europe/Amsterdam", "rule", state.soc_pct, proposed, applied,
                                  [i.to_record() for i in result.interventions],
                                  inputs_digest(state, forecasts)))
    records = read_records("decisions.jsonl", since=pd.Timestamp("2024-03-29", tz="Europe/Amsterdam"))

Durability: each record is one ``write`` of one whole line, flushed and ``os.fsync``-ed before ``write``
returns (``fsync=False`` skips the fsync). A crash can at worst leave the LAST line incomplete; the reader
skips such a line with a warning and the writer repairs the file tail when it is opened again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import json
import logging
import math
import os
import re
import struct
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from dwars.env.modes import Decision, Mode
from dwars.errors import DataError
from dwars.policy.shield import RULES

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: The shield's rule ids; stable, they are written into the log (one list, owned by the shield).
RULE_IDS: tuple[str, ...] = RULES
MODE_NAMES: tuple[str, ...] = tuple(m.name.lower() for m in Mode)  # msc, hold, import, export
INTERVENTION_KEYS: tuple[str, ...] = ("rule", "reason_en", "reason_nl", "numbers")
DIGEST_CHARS = 16
_DIGEST_RE = re.compile(r"^[0-9a-f]{16}$")


# ------------------------------------------------------------------------------------------- records


def decision_dict(decision: Decision) -> dict[str, Any]:
    """``{"mode": "export", "power_kw": 3.0, "curtail_pv": false, "reason": "..."}`` of a Decision."""
    return {"mode": decision.mode.name.lower(), "power_kw": float(decision.power_kw),
            "curtail_pv": bool(decision.curtail_pv), "reason": str(decision.reason)}


def decision_record(time_utc: pd.Timestamp | datetime | str, tz: str | ZoneInfo, controller: str, soc_pct: float,
                    proposed: Decision, applied: Decision, interventions: Iterable[Mapping[str, Any] | Any],
                    inputs_digest: str, loads: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One decision-log record (schema 1) for the interval starting at ``time_utc``.

    Parameters
    ----------
    time_utc : tz-aware start of the interval (any zone; written as UTC). Naive times are refused.
    tz : the home's time zone (``Europe/Amsterdam``) for ``local_time``.
    controller : the controller's name (``rule``, ``mpc``, ``rl``, ...).
    soc_pct : state of charge at the start of the interval; a non-finite value (unknown) is written as null.
    proposed, applied : what the controller proposed and what the shield let through.
    interventions : the shield's interventions as dicts with at least ``rule`` (one of :data:`RULE_IDS`),
        ``reason_en``, ``reason_nl`` and ``numbers``; extra keys are kept. Objects with a ``to_record()``
        method (the shield's ``Intervention``) are converted with it. Values are made JSON-ready: numpy
        scalars become numbers, timestamps ISO text, modes their lower-case names and non-finite floats null.
    inputs_digest : :func:`inputs_digest` of the inputs the decision saw (16 hex characters).
    loads : what the flexible loads do this interval, with their reasons (``{"ev": {"power_kw": 4.1, "reason":
        "EV: charging ..."}, "boiler": {...}}``); written as ``loads`` when given. High-voltage mode adds
        ``"voltage": {"voltage_v": 251.8, "mode": "on", "reason": "...", "reden": "spanning 251,8 V: ..."}``
        (:mod:`dwars.runtime.voltage`, :mod:`dwars.env.flex`).
    """
    ts = pd.Timestamp(time_utc)
    if ts.tz is None:
        raise ValueError(f"decision_record: time {ts} has no time zone; give the interval start in UTC")
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(str(tz))
    if not isinstance(inputs_digest, str) or not _DIGEST_RE.match(inputs_digest):
        raise ValueError(f"decision_record: inputs_digest = {inputs_digest!r}: must be 16 lower-case hex "
                         "characters (use inputs_digest(...))")
    notes = []
    for i, item in enumerate(interventions):
        raw = item if isinstance(item, Mapping) else item.to_record()  # a dwars.policy.shield.Intervention
        missing = [k for k in INTERVENTION_KEYS if k not in raw]
        if missing:
            raise ValueError(f"decision_record: interventions[{i}] lacks {', '.join(missing)}")
        if raw["rule"] not in RULE_IDS:
            raise ValueError(f"decision_record: interventions[{i}].rule = {raw['rule']!r}: not a rule id; "
                             f"choose from {', '.join(RULE_IDS)}")
        notes.append(_jsonable(dict(raw)))
    soc = float(soc_pct) if soc_pct is not None else math.nan
    record = {
        "schema": SCHEMA_VERSION,
        "time": _iso(ts.tz_convert("UTC")),
        "local_time": _iso(ts.tz_convert(zone)),
        "controller": str(controller),
        "soc_pct": soc if math.isfinite(soc) else None,
        "inputs_digest": inputs_digest,
        "proposed": decision_dict(proposed),
        "applied": decision_dict(applied),
        "interventions": notes,
        "reason": str(applied.reason),
    }
    if loads:
        record["loads"] = _jsonable(dict(loads))
    return record


def _iso(ts: pd.Timestamp) -> str:
    """ISO 8601 with offset, seconds (or microseconds when there are any): 2024-03-29T12:00:00+01:00."""
    return ts.to_pydatetime(warn=False).isoformat()


def _jsonable(value: Any) -> Any:
    """A JSON-ready copy: numpy scalars -> numbers, times -> ISO text, Mode -> name, non-finite -> None."""
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, Mode):
        return value.name.lower()
    if isinstance(value, Decision):
        return decision_dict(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, pd.Timestamp | datetime):
        return _iso(pd.Timestamp(value)) if pd.Timestamp(value).tz is not None else pd.Timestamp(value).isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -------------------------------------------------------------------------------------------- digest


def inputs_digest(*values: Any) -> str:
    """SHA-256 (first 16 hex characters) of a stable byte form of the given inputs.

    Equal inputs give the same digest on every machine, Python and numpy version: numbers (scalars, lists
    and arrays of bool/int/float) as little-endian float64 with -0.0 as 0.0 and one NaN, so ``[1, 2]``,
    ``(1.0, 2.0)`` and ``np.array([1, 2], dtype=np.int8)`` digest alike; text as UTF-8; timestamps as UTC
    nanoseconds (naive ones marked apart); pandas Series/Index/DataFrame with their index and column names;
    dicts by sorted key; dataclasses (``State``, ``Forecasts``, ``Decision``) by class name and fields.
    Every item is typed and length-prefixed, so ``("ab", "c")`` and ``("a", "bc")`` differ.
    """
    h = hashlib.sha256()
    h.update(b"dwars-inputs-1")
    _feed(h, values)
    return h.hexdigest()[:DIGEST_CHARS]


def _chunk(h: Any, tag: bytes, payload: bytes) -> None:
    h.update(tag)
    h.update(struct.pack("<Q", len(payload)))
    h.update(payload)


def _numbers(arr: np.ndarray) -> bytes:
    a = np.asarray(arr, dtype="<f8") + 0.0  # + 0.0 turns -0.0 into 0.0
    a = np.where(np.isnan(a), np.nan, a)  # one NaN bit pattern
    return struct.pack("<Q", a.ndim) + struct.pack(f"<{a.ndim}Q", *a.shape) + np.ascontiguousarray(a).tobytes()


def _feed(h: Any, value: Any) -> None:
    if value is None:
        _chunk(h, b"N", b"")
    elif isinstance(value, enum.Enum):
        _chunk(h, b"E", f"{type(value).__name__}.{value.name}".encode())
    elif isinstance(value, str):
        _chunk(h, b"S", value.encode("utf-8"))
    elif isinstance(value, bytes | bytearray):
        _chunk(h, b"B", bytes(value))
    elif isinstance(value, pd.Timestamp | datetime | np.datetime64):
        ts = pd.Timestamp(value)
        tag = b"T" if ts.tz is not None else b"t"
        _chunk(h, tag, struct.pack("<q", (ts.tz_convert("UTC") if ts.tz is not None else ts).value))
    elif isinstance(value, date):
        _chunk(h, b"D", value.isoformat().encode())
    elif isinstance(value, pd.Timedelta | timedelta | np.timedelta64):  # before numbers: timedelta64 is an int
        _chunk(h, b"d", struct.pack("<q", pd.Timedelta(value).value))
    elif isinstance(value, bool | int | float | np.bool_ | np.integer | np.floating):
        _chunk(h, b"F", _numbers(np.array([value])))
    elif isinstance(value, pd.DatetimeIndex):
        idx = value.tz_convert("UTC") if value.tz is not None else value
        _chunk(h, b"I" if value.tz is not None else b"i", idx.as_unit("ns").asi8.astype("<i8").tobytes())
    elif isinstance(value, pd.DataFrame):
        _chunk(h, b"P", str(value.shape).encode())
        _feed(h, value.index)
        for name in value.columns:
            _feed(h, str(name))
            _feed(h, value[name].to_numpy())
    elif isinstance(value, pd.Series):
        _chunk(h, b"R", str(value.name).encode())
        _feed(h, value.index)
        _feed(h, value.to_numpy())
    elif isinstance(value, pd.Index):
        _feed(h, value.to_numpy())
    elif isinstance(value, np.ndarray | list | tuple):
        arr = value if isinstance(value, np.ndarray) else None
        if arr is None:
            try:
                arr = np.asarray(value)
            except ValueError:  # ragged
                arr = None
        if arr is not None and arr.dtype.kind in "biuf":
            _chunk(h, b"A", _numbers(arr))
        elif arr is not None and arr.dtype.kind == "M":
            _feed(h, pd.DatetimeIndex(arr.ravel()))
        else:
            items = list(value.ravel()) if isinstance(value, np.ndarray) else list(value)
            _chunk(h, b"L", struct.pack("<Q", len(items)))
            for item in items:
                _feed(h, item)
    elif isinstance(value, Mapping):
        keys = sorted(value, key=str)
        _chunk(h, b"M", struct.pack("<Q", len(keys)))
        for k in keys:
            _feed(h, str(k))
            _feed(h, value[k])
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        _chunk(h, b"C", type(value).__name__.encode())
        for f in fields:
            _feed(h, f.name)
            _feed(h, getattr(value, f.name))
    else:
        raise TypeError(f"inputs_digest: cannot digest a {type(value).__name__} ({value!r:.60})")


# -------------------------------------------------------------------------------------------- writer


def _bad_value(value: Any, where: str) -> str | None:
    """Where and why ``value`` is not strict JSON (NaN/Infinity, non-text keys and unknown types are not)."""
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where} = {value}: NaN and Infinity are not JSON (use null)"
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return f"{where}: key {k!r} is a {type(k).__name__}, JSON keys must be text"
            bad = _bad_value(v, f"{where}.{k}" if where else k)
            if bad:
                return bad
        return None
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            bad = _bad_value(v, f"{where}[{i}]")
            if bad:
                return bad
        return None
    return f"{where or 'record'} = {value!r:.60}: a {type(value).__name__} is not JSON-serialisable"


def encode_record(record: Mapping[str, Any]) -> bytes:
    """The record as one UTF-8 JSON line (ending in a newline); DataError naming the key if it cannot be."""
    if not isinstance(record, dict):
        raise DataError(f"decision log: a record must be a dict, not a {type(record).__name__}")
    bad = _bad_value(record, "")
    if bad:
        raise DataError(f"decision log: record refused: {bad}")
    for key in ("schema", "time"):
        if key not in record:
            raise DataError(f"decision log: record refused: it has no {key!r} (build it with decision_record)")
    if record["schema"] != SCHEMA_VERSION:
        raise DataError(f"decision log: record refused: schema = {record['schema']!r}, this dwars writes "
                        f"schema {SCHEMA_VERSION}")
    try:
        when = datetime.fromisoformat(str(record["time"]))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise DataError(f"decision log: record refused: time = {record['time']!r}: must be ISO 8601 with an offset")
    return (json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n").encode("utf-8")


class DecisionLog:
    """Append-only JSON Lines writer of decision records, with size-based rotation.

    Parameters
    ----------
    path : the log file; its folder is created. An existing file is appended to (restart-safe).
    max_bytes : rotate before a record would make the file larger than this; a record is never split (a
        single record larger than ``max_bytes`` gets a file of its own). 0 = never rotate.
    backups : old files kept: ``path.1`` (newest) .. ``path.N`` (oldest); the oldest is deleted on
        rotation. 0 = never rotate (like :class:`logging.handlers.RotatingFileHandler`).
    fsync : ``os.fsync`` after every record (default), so a record is on disk when ``write`` returns.

    One process writes a log at a time. On opening, a tail left by a crash mid-write (a last line without its
    newline) is repaired: a complete record gets its newline, a partial one is cut off with a warning.
    """

    def __init__(self, path: str | os.PathLike[str], max_bytes: int = 10_000_000, backups: int = 5,
                 fsync: bool = True) -> None:
        if max_bytes < 0 or backups < 0:
            raise ValueError(f"DecisionLog: max_bytes = {max_bytes}, backups = {backups}: must be >= 0")
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.backups = int(backups)
        self.fsync = bool(fsync)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        self._fd: int | None = None
        self._size = 0
        self._open()

    # -- file handling ----------------------------------------------------------------------------------
    def _open(self) -> None:
        existed = self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        if not existed and self.fsync:
            self._sync_dir()

    def _sync_dir(self) -> None:
        """Make a new or renamed file's directory entry durable (POSIX; a no-op where unsupported)."""
        try:
            fd = os.open(self.path.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _repair_tail(self) -> None:
        if not self.path.is_file():
            return
        with open(self.path, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            start = max(size - 1_048_576, 0)  # a record is far smaller than 1 MiB
            f.seek(start)
            tail = f.read()
            cut = tail.rfind(b"\n")
            line_start = start + cut + 1 if cut >= 0 else start
            last = tail[cut + 1:]
            try:
                complete = isinstance(json.loads(last.decode("utf-8")), dict)
            except (ValueError, UnicodeDecodeError):
                complete = False
            if complete:
                f.write(b"\n")
                log.warning("%s: the last record lacked its newline (crash mid-write?); added it", self.path)
            else:
                f.truncate(line_start)
                log.warning("%s: cut off an incomplete last line of %d bytes left by a crash mid-write",
                            self.path, size - line_start)
            f.flush()
            os.fsync(f.fileno())

    def _rotate(self) -> None:
        self._close_fd()
        oldest = self.path.with_name(f"{self.path.name}.{self.backups}")
        if oldest.exists():
            oldest.unlink()
        for n in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{n}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._open()

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- public -----------------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._fd is None

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record as one line; on disk (fsync) before returning. DataError if not strict JSON."""
        if self._fd is None:
            raise ValueError(f"{self.path}: the decision log is closed")
        line = encode_record(record)
        if self.max_bytes > 0 and self.backups > 0 and self._size > 0 and self._size + len(line) > self.max_bytes:
            self._rotate()
        view = memoryview(line)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(line)
        if self.fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        self._close_fd()

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self._close_fd()


# -------------------------------------------------------------------------------------------- reader


def log_files(path: str | os.PathLike[str], include_rotated: bool = True) -> list[Path]:
    """The files of a log, oldest first: ``path.N`` .. ``path.1``, then ``path`` (those that exist)."""
    path = Path(path)
    files: list[tuple[int, Path]] = []
    if include_rotated and path.parent.is_dir():
        pattern = re.compile(re.escape(path.name) + r"\.(\d+)$")
        for p in path.parent.iterdir():
            m = pattern.match(p.name)
            if m and p.is_file():
                files.append((int(m.group(1)), p))
    ordered = [p for _, p in sorted(files, reverse=True)]
    if path.is_file():
        ordered.append(path)
    return ordered


def _utc(value: Any, what: str) -> datetime:
    ts = pd.Timestamp(value)
    if ts.tz is None:
        raise ValueError(f"{what} = {value!r}: give a time zone (e.g. pd.Timestamp('2024-03-29', tz='UTC'))")
    return ts.tz_convert("UTC").to_pydatetime(warn=False)


def read_records(path: str | os.PathLike[str], since: pd.Timestamp | datetime | str | None = None,
                 include_rotated: bool = True) -> list[dict[str, Any]]:
    """Every record of a decision log (and its rotated files), in time order (write order for equal times).

    since : keep records whose interval starts at or after this tz-aware instant.
    A last line without its newline that is not valid JSON (a crash mid-write) is skipped with a warning;
    any other line that is not a schema-1 record raises DataError naming the file and the line number.
    """
    path = Path(path)
    files = log_files(path, include_rotated)
    if not files:
        if path.is_dir():
            raise DataError(f"{path}: is a folder, not a decision log file")
        raise DataError(f"{path}: no such decision log")
    cutoff = _utc(since, "since") if since is not None else None
    keyed: list[tuple[datetime, int, dict[str, Any]]] = []
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as err:
            raise DataError(f"{file}: cannot read the decision log ({err.strerror})") from err
        lines = data.split(b"\n")
        unterminated = lines[-1] != b""
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as err:
                if unterminated and number == len(lines):
                    log.warning("%s: line %d is incomplete (%d bytes, no newline; a crash mid-write?): skipped",
                                file, number, len(raw))
                    continue
                raise DataError(f"{file}: line {number}: not a JSON record ({err})") from err
            when = _check(record, file, number)
            if cutoff is None or when >= cutoff:
                keyed.append((when, len(keyed), record))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [record for _, _, record in keyed]


def _check(record: Any, file: Path, number: int) -> datetime:
    where = f"{file}: line {number}"
    if not isinstance(record, dict):
        raise DataError(f"{where}: a record must be a JSON object, not {type(record).__name__}")
    schema = record.get("schema")
    if schema != SCHEMA_VERSION:
        raise DataError(f"{where}: schema = {schema!r}: this dwars reads schema {SCHEMA_VERSION}")
    try:
        when = datetime.fromisoformat(str(record.get("time")))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise DataError(f"{where}: time = {record.get('time')!r}: must be ISO 8601 with an offset")
    return when


# ------------------------------------------------------------------------------------------- summary


def shield_summary(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """How often the shield stepped in.

    Returns ``decisions`` (records), ``decisions_with_intervention`` (records with at least one
    intervention), ``intervention_rate`` (their share, 0.0 for no records), ``per_rule`` (interventions per
    rule id: every known rule, zeros included, in :data:`RULE_IDS` order, then any other id found),
    ``changed`` (records whose applied mode/power differs from the proposal), ``first_time`` and
    ``last_time`` (UTC ISO, None for no records).
    """
    per_rule: dict[str, int] = dict.fromkeys(RULE_IDS, 0)
    decisions = with_intervention = changed = 0
    first = last = None
    for r in records:
        decisions += 1
        notes = r.get("interventions") or []
        if notes:
            with_intervention += 1
        for note in notes:
            rule = str(note.get("rule"))
            per_rule[rule] = per_rule.get(rule, 0) + 1
        p, a = r.get("proposed") or {}, r.get("applied") or {}
        if (p.get("mode"), p.get("power_kw")) != (a.get("mode"), a.get("power_kw")):
            changed += 1
        t = r.get("time")
        first = t if first is None else first
        last = t
    return {
        "decisions": decisions,
        "decisions_with_intervention": with_intervention,
        "intervention_rate": with_intervention / decisions if decisions else 0.0,
        "per_rule": per_rule,
        "changed": changed,
        "first_time": first,
        "last_time": last,
    }


def describe_action(action: Mapping[str, Any] | None) -> str:
    """``export 3.00 kW``, ``msc``, ``hold, PV curtailed`` for a record's proposed/applied dict."""
    if not action:
        return "-"
    mode = str(action.get("mode", "?"))
    text = mode
    if mode in ("import", "export"):
        text += f" {float(action.get('power_kw') or 0.0):.2f} kW"
    if action.get("curtail_pv"):
        text += ", PV curtailed"
    return text


def local_label(record: Mapping[str, Any]) -> str:
    """``2024-03-29 12:00 +01:00``: a record's interval start on the home's clock (offset kept for DST days)."""
    text = str(record.get("local_time") or record.get("time") or "")
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return text or "-"
    offset = t.strftime("%z")
    offset = f" {offset[:3]}:{offset[3:]}" if offset else ""
    return f"{t:%Y-%m-%d %H:%M}{offset}"


def parse_since(text: str, tz: str = "Europe/Amsterdam") -> pd.Timestamp:
    """A ``--since`` value: ``YYYY-MM-DD`` (local midnight) or an ISO time; without an offset it is on ``tz``."""
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError) as err:
        raise DataError(f"--since {text!r}: not a date or time (use YYYY-MM-DD or an ISO 8601 time)") from err
    if ts is pd.NaT:
        raise DataError(f"--since {text!r}: not a date or time (use YYYY-MM-DD or an ISO 8601 time)")
    if ts.tz is None:
        try:
            ts = ts.tz_localize(ZoneInfo(tz), ambiguous=True, nonexistent="shift_forward")
        except (KeyError, ValueError) as err:
            raise DataError(f"--tz {tz!r}: not a time zone name such as Europe/Amsterdam") from err
    return ts
