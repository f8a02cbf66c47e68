"""Scenario files: the canonical per-interval table of prices, load and PV (or weather) that every
simulation, evaluation and backtest reads.

Contract (CSV, one row per interval, other tools rely on it):

=====================  ===========================================================================
column                 meaning
=====================  ===========================================================================
``time``               interval start, ISO 8601 with UTC offset (written as ``...+00:00``)
``price_eur_per_mwh``  EPEX day-ahead price, EUR/MWh excl. taxes
``load_kw``            household consumption, mean power over the interval, kW
``pv_kw``              measured (or pre-modelled) PV AC power, mean kW — used as is
``ghi_w_per_m2``       global horizontal irradiance, mean W/m2 — PV is modelled for the installation
``temp_air_c``         air temperature, degC (optional, with ``ghi_w_per_m2``)
``grid_voltage_v``     optional: the street's mean grid voltage without this home's own power, V (a
                       home with ``[voltage]``; without it the simulator models the street on the PV)
=====================  ===========================================================================

``pv_kw`` or ``ghi_w_per_m2`` must be present. Intervals are 15 or 60 minutes, regular, without gaps.
A ``.meta.json`` file beside the CSV records how it was built (sources with checksums, fills applied).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dwars.config import Installation
from dwars.data.resample import Kind, resample
from dwars.errors import DataError, MissingDataError
from dwars.timegrid import (
    FillMethod,
    check_regular,
    fill_gaps,
    format_time,
    infer_resolution,
    local_day_bounds,
    local_days_index,
)

log = logging.getLogger(__name__)

REQUIRED_COLUMNS: tuple[str, ...] = ("price_eur_per_mwh", "load_kw")
OPTIONAL_COLUMNS: tuple[str, ...] = ("pv_kw", "ghi_w_per_m2", "temp_air_c", "grid_voltage_v")
COLUMN_KINDS: dict[str, Kind] = {
    "price_eur_per_mwh": "price",
    "load_kw": "power",
    "pv_kw": "power",
    "ghi_w_per_m2": "power",
    "temp_air_c": "power",
    "grid_voltage_v": "power",  # a mean level like a power: averaged to hours, held to quarters
}
_NON_NEGATIVE = ("load_kw", "pv_kw", "ghi_w_per_m2", "grid_voltage_v")
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")


@dataclass(frozen=True)
class Scenario:
    """A validated scenario: ``frame`` is indexed by UTC interval start (``time``) at ``minutes`` resolution.

    Build one with :func:`build_scenario`, read one with :func:`read_scenario`.
    """

    frame: pd.DataFrame
    minutes: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def index(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(self.frame.index)

    @property
    def dt_h(self) -> float:
        """Interval length in hours."""
        return self.minutes / 60.0

    @property
    def start(self) -> pd.Timestamp:
        return self.index[0]

    @property
    def end(self) -> pd.Timestamp:
        """End of the last interval (exclusive), UTC."""
        return self.index[-1] + pd.Timedelta(minutes=self.minutes)

    @property
    def has_measured_pv(self) -> bool:
        return "pv_kw" in self.frame.columns

    def pv_kw(self, inst: Installation) -> pd.Series:
        """PV AC power in kW per interval: the measured column, or modelled from weather for ``inst``.

        Raises
        ------
        DataError
            when the scenario has only weather and the installation has no ``[pv]`` section.
        """
        if self.has_measured_pv:
            return self.frame["pv_kw"].rename("pv_kw")
        if inst.pv is None:
            raise DataError(
                f"{inst.name}: the scenario carries weather (ghi_w_per_m2) but the config has no [pv] section "
                "to turn it into PV power"
            )
        from dwars.env.pv import pv_ac_kw  # deferred: pvlib is only needed when modelling

        temp = self.frame["temp_air_c"] if "temp_air_c" in self.frame.columns else None
        return pv_ac_kw(self.index, self.frame["ghi_w_per_m2"], temp, inst.site, inst.pv, self.minutes)

    def to_resolution(self, minutes: int) -> Scenario:
        """The same scenario at 15 or 60 minutes (prices held/averaged, powers held/averaged)."""
        if minutes == self.minutes:
            return self
        frame = pd.DataFrame({c: resample(self.frame[c], COLUMN_KINDS[c], minutes, self.minutes)
                              for c in self.frame.columns})
        frame.index.name = "time"
        return Scenario(frame, minutes, {**self.meta, "resampled_from_minutes": self.minutes})

    def window(self, start: pd.Timestamp, end: pd.Timestamp) -> Scenario:
        """Rows with ``start <= time < end`` (UTC instants)."""
        idx = self.index
        return Scenario(self.frame[(idx >= start) & (idx < end)], self.minutes, self.meta)


def validate_frame(frame: pd.DataFrame, source: str = "scenario") -> int:
    """Check a scenario frame (UTC index) against the contract; return its resolution in minutes.

    Raises
    ------
    DataError
        naming the column, the interval and the value of the first problem of each kind.
    """
    cols = list(frame.columns)
    missing = [c for c in REQUIRED_COLUMNS if c not in cols]
    if missing:
        raise DataError(f"{source}: column(s) {', '.join(missing)} missing; found {', '.join(map(str, cols))}")
    if "pv_kw" not in cols and "ghi_w_per_m2" not in cols:
        raise DataError(f"{source}: needs pv_kw (measured PV) or ghi_w_per_m2 (weather to model PV from)")
    unknown = [c for c in cols if c not in COLUMN_KINDS]
    if unknown:
        raise DataError(f"{source}: unknown column(s) {', '.join(map(str, unknown))}; "
                        f"known: {', '.join(COLUMN_KINDS)}")
    minutes = infer_resolution(pd.DatetimeIndex(frame.index))
    report = check_regular(pd.DatetimeIndex(frame.index), minutes, f"{source}: time")
    if not report.ok:
        raise DataError(report.describe())
    for col in cols:
        values = frame[col].to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            first = frame.index[bad][0]
            raise DataError(f"{source}: {col} is blank or not a number at {format_time(first)} "
                            f"({int(bad.sum())} intervals in all)")
        if col in _NON_NEGATIVE and (values < 0).any():
            i = int(np.argmax(values < 0))
            raise DataError(f"{source}: {col} = {values[i]:g} at {format_time(frame.index[i])}: must be >= 0")
    return minutes


def read_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario CSV (see the module text for the contract).

    Raises
    ------
    DataError
        when the file is missing, a timestamp lacks its UTC offset, or the contract is broken.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    raw = pd.read_csv(path, dtype={"time": str})
    if "time" not in raw.columns:
        raise DataError(f"{path}: no time column; found {', '.join(map(str, raw.columns))}")
    times = raw["time"].astype(str).str.strip()
    no_offset = ~times.str.contains(_OFFSET)
    if no_offset.any():
        row = int(np.argmax(no_offset.to_numpy()))
        raise DataError(f"{path}: time = {times.iloc[row]!r} (row {row + 2}) has no UTC offset; "
                        "write e.g. 2024-01-01T00:00:00+00:00")
    try:
        index = pd.DatetimeIndex(pd.to_datetime(times, utc=True, format="ISO8601"), name="time").as_unit("ns")
    except (ValueError, TypeError) as err:
        raise DataError(f"{path}: time column cannot be read as ISO 8601 ({err})") from None
    frame = raw.drop(columns="time")
    for col in frame.columns:
        numeric = pd.to_numeric(frame[col], errors="coerce")
        bad = numeric.isna() & frame[col].notna()
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise DataError(f"{path}: {col} = {frame[col].iloc[row]!r} at {format_time(index[row])}: not a number")
        frame[col] = numeric.astype(float)
    frame.index = index
    minutes = validate_frame(frame, str(path))
    meta_path = meta_path_for(path)
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    return Scenario(frame, minutes, meta)


def meta_path_for(path: str | Path) -> Path:
    """Where the build record of a scenario CSV lives (``x.csv`` -> ``x.meta.json``)."""
    path = Path(path)
    return path.with_name(path.stem + ".meta.json")


def write_scenario(scn: Scenario, path: str | Path) -> Path:
    """Write the scenario CSV (times as ``+00:00``) and its ``.meta.json`` build record; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    validate_frame(scn.frame, str(path))
    out = scn.frame.copy()
    out.index = pd.DatetimeIndex(out.index).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    out.index.name = "time"
    ordered = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in out.columns]
    out[ordered].to_csv(path, float_format="%.6f")
    meta_path_for(path).write_text(json.dumps(scn.meta, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cover(series: pd.Series, start: pd.Timestamp, end: pd.Timestamp, minutes: int, what: str) -> None:
    """Refuse a series that does not reach both ends of the period (filling would invent whole days)."""
    step = pd.Timedelta(minutes=minutes)
    if len(series) == 0 or series.index.min() > start or series.index.max() < end - step:
        have = (f"{format_time(series.index.min())} .. {format_time(series.index.max() + step)}"
                if len(series) else "nothing")
        raise MissingDataError(
            f"{what}: the files cover {have}; the period needs {format_time(start)} .. {format_time(end)}"
        )


def _regular(series: pd.Series, minutes: int, start: pd.Timestamp, end: pd.Timestamp, fill: FillMethod | None,
             what: str, fills: list[str]) -> pd.Series:
    series = series[(series.index >= start) & (series.index < end)]
    _cover(series, start, end, minutes, what)
    filled, report = fill_gaps(series, minutes, fill, what, start, end)
    if not report.ok:
        fills.append(f"{report.describe()}; filled by {fill}")
    return filled


def load_price_files(
    paths: Sequence[str | Path], start: pd.Timestamp, end: pd.Timestamp, minutes: int,
    fill: FillMethod | None = None, fills: list[str] | None = None,
) -> pd.Series:
    """Prices from one or more files on the regular ``minutes`` grid of [start, end), EUR/MWh.

    Files may be hourly or 15-minute; overlapping files must agree. Gaps are filled only by ``fill``.
    """
    from dwars.data.prices import load_prices

    fills = [] if fills is None else fills
    parts = []
    for p in paths:
        s = load_prices(p)
        if len(s):
            parts.append((s, infer_resolution(pd.DatetimeIndex(s.index)) if len(s) > 1 else 60))
    if not parts:
        raise MissingDataError(f"prices: no rows in {', '.join(map(str, paths))}")
    finest = min(m for _, m in parts)
    aligned = []
    for s, m in parts:
        if m != finest:
            lo, hi = max(s.index.min(), start), min(s.index.max() + pd.Timedelta(minutes=m), end)
            s = resample(_regular(s, m, lo, hi, fill, "prices", fills), "price", finest, m)
        aligned.append(s)
    combined = pd.concat(aligned).sort_index()
    dup = combined.index.duplicated(keep=False)
    if dup.any():
        clash = combined[dup].groupby(level=0).nunique()
        if (clash > 1).any():
            t = clash.index[clash > 1][0]
            raise DataError(f"prices: the files disagree at {format_time(t)}: "
                            f"{', '.join(f'{v:g}' for v in combined.loc[t])} EUR/MWh")
        combined = combined[~combined.index.duplicated(keep="first")]
    regular = _regular(combined.rename("price_eur_per_mwh"), finest, start, end, fill, "prices", fills)
    return resample(regular, "price", minutes, finest)


def build_scenario(
    inst: Installation,
    prices: Sequence[str | Path],
    start: str,
    end: str,
    minutes: int,
    weather: str | Path | None = None,
    load: str | Path = "profile",
    annual_load_kwh: float | None = None,
    pv: str | Path | None = None,
    model_pv: bool = False,
    fill: FillMethod | None = None,
) -> Scenario:
    """Build a scenario for the local days ``start`` (inclusive) to ``end`` (exclusive).

    Parameters
    ----------
    inst : the installation (its time zone defines the local days; its PV is modelled when asked).
    prices : price files (EnergyZero JSON, 15-minute CSV), hourly or 15-minute.
    start, end : local calendar dates ``YYYY-MM-DD``; ``end`` is the first day not included.
    minutes : resolution of the scenario, 15 or 60.
    weather : KNMI hourly file: writes ``ghi_w_per_m2`` and ``temp_air_c`` (15-minute irradiance is
        spread over the hour along the clear-sky shape, keeping each hour's energy).
    load : ``"profile"`` (NEDU E1A scaled to ``annual_load_kwh``, default ``[load] annual_kwh``), a
        NEDU-style profile file, an OPSD household CSV, or a scenario CSV with ``load_kw``.
    annual_load_kwh : scale the load to this many kWh per year (measured loads: optional rescale).
    pv : a household CSV with measured PV (OPSD) to use as ``pv_kw``; ``"none"`` for a home without PV.
    model_pv : also write ``pv_kw`` modelled from the weather for ``inst`` (faster to simulate later).
    fill : how to fill missing intervals (``hold`` or ``interpolate``); ``None`` refuses gaps.

    Raises
    ------
    MissingDataError
        when a source does not cover the period or has gaps and ``fill`` is None.
    DataError
        on malformed sources or contradictory options.
    """
    tz = inst.site.timezone
    index = local_days_index(start, end, minutes, tz)
    lo, hi = local_day_bounds(start, end, tz)
    fills: list[str] = []
    sources: list[dict[str, str]] = []

    def note(kind: str, path: str | Path) -> None:
        p = Path(path)
        sources.append({"kind": kind, "path": str(p), "sha256": _sha256(p)} if p.exists()
                       else {"kind": kind, "path": str(p)})

    for p in prices:
        note("prices", p)
    frame = pd.DataFrame(index=index)
    frame["price_eur_per_mwh"] = load_price_files(prices, lo, hi, minutes, fill, fills).to_numpy()
    frame["load_kw"] = _build_load(inst, index, minutes, load, annual_load_kwh, note).to_numpy()

    if pv is not None and weather is not None:
        raise DataError("pv and weather: give one source of PV, measured (--pv) or modelled (--weather)")
    if pv is not None and str(pv).lower() == "none":
        frame["pv_kw"] = 0.0
    elif pv is not None:
        note("pv", pv)
        from dwars.data.household import load_opsd_household
        from dwars.env.load import align_by_weekday

        measured = load_opsd_household(pv)
        if "pv_kw" not in measured.columns:
            raise DataError(f"{pv}: no PV column found")
        frame["pv_kw"] = align_by_weekday(measured["pv_kw"].dropna(), index, tz).to_numpy()
    elif weather is not None:
        note("weather", weather)
        frame = frame.join(_build_weather(weather, index, minutes, lo, hi, inst, fill, fills))
        if model_pv:
            scn = Scenario(frame, minutes)
            frame["pv_kw"] = scn.pv_kw(inst).to_numpy()
            frame = frame.drop(columns=["ghi_w_per_m2", "temp_air_c"])
    else:
        raise DataError("no PV source: give --weather (PV modelled from [pv] in the config), "
                        "--pv FILE (measured) or --pv none (a home without panels)")
    frame.index.name = "time"
    validate_frame(frame, "scenario")
    meta = {
        "dwars_scenario": 1,
        "built_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "installation": inst.name,
        "period_local": {"start": str(start), "end_exclusive": str(end), "timezone": tz},
        "minutes": minutes,
        "sources": sources,
        "fills": fills,
        "load": str(load),
        "annual_load_kwh": annual_load_kwh if annual_load_kwh is not None else inst.load.annual_kwh,
    }
    return Scenario(frame, minutes, meta)


def _build_load(inst: Installation, index: pd.DatetimeIndex, minutes: int, load: str | Path,
                annual_kwh: float | None, note: Any) -> pd.Series:
    from dwars.env.load import measured_load_kw, profile_load_kw

    tz = inst.site.timezone
    if str(load) == "profile":
        return profile_load_kw(index, annual_kwh if annual_kwh is not None else inst.load.annual_kwh, tz=tz)
    path = Path(load)
    note("load", path)
    if not path.exists():
        raise DataError(f"load = {str(load)!r}: not 'profile' and no such file")
    from dwars.data.io import read_text

    head = read_text(path)[:2000]
    first = head.splitlines()[0].strip() if head.strip() else ""
    if re.fullmatch(r"[0-9.eE+-]+", first):
        from dwars.data.profiles import load_nedu_profile

        return profile_load_kw(index, annual_kwh if annual_kwh is not None else inst.load.annual_kwh,
                               load_nedu_profile(path), tz=tz)
    if "utc_timestamp" in first and "grid_import" in first:
        from dwars.data.household import load_opsd_household

        measured = load_opsd_household(path)["load_kw"].dropna()
        return measured_load_kw(measured, index, tz, annual_kwh=annual_kwh)
    if first.startswith("time") and "load_kw" in first:
        other = read_scenario(path)
        series = other.frame["load_kw"]
        if other.minutes != minutes:
            series = resample(series, "power", minutes, other.minutes)
        series = series[(series.index >= index[0]) & (series.index <= index[-1])]
        if len(series) != len(index):
            raise MissingDataError(f"{path}: load_kw covers {format_time(other.start)} .. {format_time(other.end)}; "
                                   f"the period needs {format_time(index[0])} .. {format_time(index[-1])}")
        return series
    raise DataError(f"{path}: not a load file dwars knows (NEDU profile, OPSD household CSV or scenario CSV)")


def _build_weather(path: str | Path, index: pd.DatetimeIndex, minutes: int, lo: pd.Timestamp, hi: pd.Timestamp,
                   inst: Installation, fill: FillMethod | None, fills: list[str]) -> pd.DataFrame:
    from dwars.data.weather import load_knmi_hourly

    raw = load_knmi_hourly(path)
    wfill: FillMethod | None = "interpolate" if fill is not None else None
    ghi = _regular(raw["ghi_w_per_m2"], 60, lo, hi, wfill, "weather: ghi_w_per_m2", fills)
    temp = _regular(raw["temp_air_c"], 60, lo, hi, wfill, "weather: temp_air_c", fills)
    if minutes == 15:
        from dwars.env.irradiance import disaggregate_ghi

        ghi = disaggregate_ghi(ghi, inst.site, minutes=15)
        temp = resample(temp, "power", 15, 60)
    out = pd.DataFrame({"ghi_w_per_m2": ghi.to_numpy(), "temp_air_c": temp.to_numpy()}, index=index)
    return out


def summarize(scn: Scenario, inst: Installation | None = None) -> dict[str, Any]:
    """Figures a home owner wants to see about a scenario: period, prices, energy, PV yield, by month.

    PV is taken from the scenario, or modelled for ``inst`` when the scenario carries weather.
    """
    tz = inst.site.timezone if inst else "Europe/Amsterdam"
    f = scn.frame
    dt = scn.dt_h
    pv = scn.pv_kw(inst) if (scn.has_measured_pv or (inst is not None and inst.pv is not None)) else None
    local = scn.index.tz_convert(tz)
    month = local.strftime("%Y-%m")
    table = pd.DataFrame({
        "price": f["price_eur_per_mwh"].to_numpy(),
        "load_kwh": f["load_kw"].to_numpy() * dt,
        "pv_kwh": (pv.to_numpy() * dt) if pv is not None else np.nan,
        "month": month,
    })
    monthly = table.groupby("month").agg(
        mean_price_eur_per_mwh=("price", "mean"), load_kwh=("load_kwh", "sum"), pv_kwh=("pv_kwh", "sum"))
    out: dict[str, Any] = {
        "start_local": format(scn.start.tz_convert(tz), "%Y-%m-%d %H:%M"),
        "end_local": format(scn.end.tz_convert(tz), "%Y-%m-%d %H:%M"),
        "days": round((scn.end - scn.start) / pd.Timedelta(days=1), 3),
        "intervals": len(f),
        "minutes": scn.minutes,
        "price_min_eur_per_mwh": float(f["price_eur_per_mwh"].min()),
        "price_mean_eur_per_mwh": float(f["price_eur_per_mwh"].mean()),
        "price_max_eur_per_mwh": float(f["price_eur_per_mwh"].max()),
        "negative_price_hours": float((f["price_eur_per_mwh"] < 0).sum() * dt),
        "load_kwh": float(table["load_kwh"].sum()),
        "pv_kwh": float(table["pv_kwh"].sum()) if pv is not None else None,
        "pv_source": "measured" if scn.has_measured_pv else ("modelled" if pv is not None else None),
        "monthly": monthly.reset_index().to_dict(orient="records"),
    }
    if pv is not None and inst is not None and inst.pv is not None and not scn.has_measured_pv:
        out["pv_specific_yield_kwh_per_kwp"] = out["pv_kwh"] / inst.pv.kwp
    return out
