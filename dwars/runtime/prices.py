"""Live day-ahead prices from the EnergyZero public API, cached on disk and reused when the feed is down.

``GET https://api.energyzero.nl/v1/energyprices?fromDate=...&tillDate=...&interval=4&usageType=1&inclBtw=false``
answers ``{"Prices": [{"price": EUR/kWh excl. VAT, "readingDate": UTC start}, ...], ...}`` for the hours in the
window. A local day is asked for as its UTC window (local midnight to local midnight), so DST days come back
with 23 or 25 hours; an answer with another count (EnergyZero has been seen to return 24 hours for the October
day) is refused with the hours it lacks, never silently shifted.

:func:`day_ahead_prices` fetches a day, stores it under ``cache_dir`` (one JSON file per local day) and, when the
feed fails, returns the cached copy with a warning. Prices are returned as EPEX EUR/MWh on a UTC index, the unit
of :mod:`dwars.data.prices` and the tariff model.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from datetime import date
from pathlib import Path

import pandas as pd

from dwars.errors import DataError
from dwars.timegrid import LOCAL_TZ

log = logging.getLogger(__name__)

ENERGYZERO_URL = "https://api.energyzero.nl/v1/energyprices"


class PriceFeedError(DataError):
    """The price feed is down or answered something unusable, and there is no cached copy."""


def _day_window(day: date, tz: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = pd.Timestamp(day).tz_localize(tz)
    return start.tz_convert("UTC"), (start + pd.offsets.Day(1)).tz_convert("UTC")


def _iso_z(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def energyzero_url(day: date, base_url: str = ENERGYZERO_URL, tz: str = LOCAL_TZ) -> str:
    """The request for one local day's hourly prices, excl. VAT."""
    start, end = _day_window(day, tz)
    query = {"fromDate": _iso_z(start), "tillDate": _iso_z(end - pd.Timedelta(milliseconds=1)), "interval": 4,
             "usageType": 1, "inclBtw": "false"}
    return f"{base_url}?{urllib.parse.urlencode(query)}"


def parse_energyzero(payload: bytes | str, day: date, tz: str = LOCAL_TZ) -> pd.Series:
    """EUR/MWh per hour (UTC index) from an EnergyZero answer for local ``day``.

    Raises
    ------
    PriceFeedError
        for an answer that is not the expected JSON, holds non-numeric prices, or does not cover exactly the
        hours of the day (the message names the missing or extra hours).
    """
    where = f"EnergyZero prices for {day.isoformat()}"
    try:
        rows = json.loads(payload)["Prices"]
        index = pd.DatetimeIndex([pd.Timestamp(r["readingDate"]) for r in rows])
        values = [float(r["price"]) * 1000.0 for r in rows]  # EUR/kWh -> EUR/MWh
    except (ValueError, KeyError, TypeError) as err:
        raise PriceFeedError(f"{where}: unusable answer ({type(err).__name__}: {err})") from None
    if index.tz is None:
        index = index.tz_localize("UTC")
    index = index.tz_convert("UTC").as_unit("ns")  # the unit of every other series in dwars
    series = pd.Series(values, index=index, name="price_eur_per_mwh").sort_index()
    start, end = _day_window(day, tz)
    expected = pd.date_range(start, end, freq="h", inclusive="left")
    if not series.index.equals(expected):
        missing = expected.difference(series.index)
        extra = series.index.difference(expected)
        shown = ", ".join(t.tz_convert(tz).strftime("%H:%M") for t in missing[:6])
        raise PriceFeedError(f"{where}: {len(series)} hours, the day has {len(expected)}"
                             + (f"; missing {shown}" if len(missing) else "")
                             + (f"; {len(extra)} outside the day" if len(extra) else ""))
    if series.isna().any():
        raise PriceFeedError(f"{where}: missing price values at {list(series.index[series.isna()][:3])}")
    return series


def fetch_energyzero(day: date, base_url: str = ENERGYZERO_URL, timeout_s: float = 10.0,
                     tz: str = LOCAL_TZ) -> pd.Series:
    """Download and parse one local day (:class:`PriceFeedError` when the feed is down or answers garbage)."""
    url = energyzero_url(day, base_url, tz)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            payload = response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise PriceFeedError(f"EnergyZero prices for {day.isoformat()}: feed unreachable ({err})") from None
    return parse_energyzero(payload, day, tz)


def _cache_file(cache_dir: Path, day: date) -> Path:
    return cache_dir / f"prices_{day.isoformat()}.json"


def day_ahead_prices(day: date, cache_dir: str | Path, base_url: str = ENERGYZERO_URL, timeout_s: float = 10.0,
                     tz: str = LOCAL_TZ) -> tuple[pd.Series, str]:
    """(EUR/MWh per hour, where they came from: "feed" or "cache") for local ``day``.

    A fresh download replaces the cached copy; when the feed fails, the cached copy is used and the failure
    logged. :class:`PriceFeedError` when both fail.
    """
    cache = Path(cache_dir)
    path = _cache_file(cache, day)
    try:
        series = fetch_energyzero(day, base_url, timeout_s, tz)
    except PriceFeedError as err:
        if not path.exists():
            raise PriceFeedError(f"{err}; no cached copy in {cache}") from None
        log.warning("%s; using the cached copy %s", err, path)
        return _read_cache(path, day, tz), "cache"
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"source": "energyzero", "day": day.isoformat(),
                               "Prices": [{"readingDate": t.isoformat(), "price": v / 1000.0}
                                          for t, v in series.items()]}), encoding="utf-8")
    tmp.replace(path)  # a crash mid-write never leaves a half file under the real name
    return series, "feed"


def _read_cache(path: Path, day: date, tz: str) -> pd.Series:
    try:
        return parse_energyzero(path.read_bytes(), day, tz)
    except PriceFeedError as err:
        raise PriceFeedError(f"{err} (cached copy {path})") from None
