"""Live day-ahead prices from EnergyZero or ENTSO-E, cached on disk and reused when the feed is down.

EnergyZero (public, hourly):
``GET https://api.energyzero.nl/v1/energyprices?fromDate=...&tillDate=...&interval=4&usageType=1&inclBtw=false``
answers ``{"Prices": [{"price": EUR/kWh excl. VAT, "readingDate": UTC start}, ...], ...}`` for the hours in the
window. A local day is asked for as its UTC window (local midnight to local midnight), so DST days come back
with 23 or 25 hours; an answer with another count (EnergyZero has been seen to return 24 hours for the October
day) is refused with the hours it lacks, never silently shifted.

ENTSO-E Transparency Platform (needs a security token; hourly until 2025-09-30, per quarter hour since):
``GET https://web-api.tp.entsoe.eu/api?documentType=A44&processType=A01&in_Domain=10YNL----------L
&out_Domain=10YNL----------L&periodStart=yyyyMMddHHmm&periodEnd=yyyyMMddHHmm&securityToken=...`` answers a
Publication_MarketDocument (XML, times in UTC, EUR/MWh); see :func:`parse_entsoe`. Without data it answers an
Acknowledgement_MarketDocument with the reason.

:class:`PriceSource` is the runtime's choice of feed (``energyzero`` or ``entsoe``): it fetches a day, stores it
under ``cache_dir`` (one file per local day) and, when the feed fails, returns the cached copy with a warning.
:func:`day_ahead_prices` is the same for EnergyZero alone. Prices are returned as EPEX EUR/MWh on a UTC index,
the unit of :mod:`dwars.data.prices` and the tariff model.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import ClassVar

import pandas as pd

from dwars.config import PRICE_SOURCES
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


def _energyzero_cache_bytes(series: pd.Series, day: date) -> bytes:
    return json.dumps({"source": "energyzero", "day": day.isoformat(),
                       "Prices": [{"readingDate": t.isoformat(), "price": v / 1000.0} for t, v in series.items()]},
                      ).encode("utf-8")


def day_ahead_prices(day: date, cache_dir: str | Path, base_url: str = ENERGYZERO_URL, timeout_s: float = 10.0,
                     tz: str = LOCAL_TZ) -> tuple[pd.Series, str]:
    """(EUR/MWh per hour, where they came from: "feed" or "cache") for local ``day``, from EnergyZero.

    A fresh download replaces the cached copy; when the feed fails, the cached copy is used and the failure
    logged. :class:`PriceFeedError` when both fail. (:class:`PriceSource` with one :class:`EnergyZeroFeed`.)
    """
    series, source = PriceSource([EnergyZeroFeed(base_url)], cache_dir, timeout_s, tz).day(day)
    return series, "cache" if source.endswith("cache") else "feed"


# --------------------------------------------------------------------------------------------------
# ENTSO-E Transparency Platform

ENTSOE_URL = "https://web-api.tp.entsoe.eu/api"
#: EIC of the Dutch bidding zone (in_Domain = out_Domain for day-ahead prices).
NL_BIDDING_ZONE = "10YNL----------L"
#: Market time units the parser understands (ISO 8601 durations of ``<resolution>``), in minutes.
ENTSOE_RESOLUTIONS_MIN = {"PT15M": 15, "PT60M": 60, "PT1H": 60}


def entsoe_url(day: date, token: str, base_url: str = ENTSOE_URL, domain: str = NL_BIDDING_ZONE,
               tz: str = LOCAL_TZ) -> str:
    """The request for one local day's day-ahead prices (document A44, process A01).

    ``periodStart``/``periodEnd`` are the day's UTC window as ``yyyyMMddHHmm``. The URL holds the security
    token: never log it.
    """
    start, end = _day_window(day, tz)
    query = {"documentType": "A44", "processType": "A01", "in_Domain": domain, "out_Domain": domain,
             "periodStart": start.strftime("%Y%m%d%H%M"), "periodEnd": end.strftime("%Y%m%d%H%M"),
             "securityToken": token}
    return f"{base_url}?{urllib.parse.urlencode(query)}"


def _text(element: ET.Element, path: str, where: str) -> str:
    found = element.find(path)
    if found is None or found.text is None or not found.text.strip():
        raise PriceFeedError(f"{where}: unusable answer (no <{path.replace('{*}', '')}>)")
    return found.text.strip()


def _entsoe_reason(root: ET.Element) -> str:
    """The text of an Acknowledgement_MarketDocument (what ENTSO-E answers instead of prices)."""
    texts = [t.text.strip() for t in root.iter() if t.tag.endswith("text") and t.text and t.text.strip()]
    return "; ".join(texts) or "no reason given"


def _entsoe_periods(root: ET.Element, where: str) -> dict[tuple[int, int], pd.Series]:
    """Every price point of the document as one series per (classification sequence, minutes).

    A03 ("variable sized block") leaves out a position whose price equals the one before it, also at the
    end of a period: the omitted positions are filled with the last price. A01 must list every position.
    """
    out: dict[tuple[int, int], list[pd.Series]] = {}
    for ts in root.findall(".//{*}TimeSeries"):
        curve = (ts.findtext("{*}curveType") or "A01").strip()
        if curve not in ("A01", "A03"):
            raise PriceFeedError(f"{where}: curveType = {curve!r}: only A01 and A03 are understood")
        sequence = int((ts.findtext("{*}classificationSequence_AttributeInstanceComponent.position") or "1").strip())
        for period in ts.findall("{*}Period"):
            resolution = _text(period, "{*}resolution", where)
            if resolution not in ENTSOE_RESOLUTIONS_MIN:
                raise PriceFeedError(f"{where}: resolution = {resolution!r}: must be one of "
                                     f"{', '.join(ENTSOE_RESOLUTIONS_MIN)}")
            minutes = ENTSOE_RESOLUTIONS_MIN[resolution]
            try:
                start = pd.Timestamp(_text(period, "{*}timeInterval/{*}start", where)).tz_convert("UTC")
                end = pd.Timestamp(_text(period, "{*}timeInterval/{*}end", where)).tz_convert("UTC")
                points = {int(_text(p, "{*}position", where)): float(_text(p, "{*}price.amount", where))
                          for p in period.findall("{*}Point")}
            except (ValueError, TypeError) as err:
                raise PriceFeedError(f"{where}: unusable answer ({type(err).__name__}: {err})") from None
            slots = pd.date_range(start, end, freq=f"{minutes}min", inclusive="left").as_unit("ns")
            bad = [p for p in points if not 1 <= p <= len(slots)]
            if bad or 1 not in points:
                raise PriceFeedError(f"{where}: position {bad[0] if bad else 1} "
                                     f"{'outside' if bad else 'missing from'} the period "
                                     f"{start:%Y-%m-%d %H:%M}Z-{end:%H:%M}Z ({len(slots)} x {resolution})")
            values = pd.Series(points, dtype=float).reindex(range(1, len(slots) + 1))
            if curve == "A01" and values.isna().any():
                missing = slots[values.isna().to_numpy()]
                raise PriceFeedError(f"{where}: curve A01 lacks {len(missing)} positions, first at "
                                     f"{missing[0].tz_convert(LOCAL_TZ):%H:%M}")
            series = pd.Series(values.ffill().to_numpy(), index=slots, name="price_eur_per_mwh")
            out.setdefault((sequence, minutes), []).append(series)
    return {key: pd.concat(parts).sort_index() for key, parts in out.items()}


def parse_entsoe(payload: bytes | str, day: date, tz: str = LOCAL_TZ) -> pd.Series:
    """EUR/MWh per market time unit (UTC index, 15 or 60 minutes) from an ENTSO-E A44 answer for local ``day``.

    The Publication_MarketDocument (IEC 62325-451-3) holds one TimeSeries per day, each with Periods of
    Points (``position`` 1.. from the period's start, ``price.amount`` in EUR/MWh). When the document holds
    several series, the SDAC one (classification sequence 1, else the lowest) is taken, and of its
    resolutions the finest that covers the whole day (a day published both per quarter hour and per hour
    gives the quarter hours).

    Raises
    ------
    PriceFeedError
        for an answer that is not the expected XML, an Acknowledgement (ENTSO-E's "no matching data", e.g.
        tomorrow before publication), duplicate or non-numeric prices, or no series covering exactly the
        intervals of the day (the message names the missing ones).
    """
    where = f"ENTSO-E prices for {day.isoformat()}"
    try:
        root = ET.fromstring(payload)
    except ET.ParseError as err:
        raise PriceFeedError(f"{where}: unusable answer (not XML: {err})") from None
    if root.tag.endswith("Acknowledgement_MarketDocument"):
        raise PriceFeedError(f"{where}: ENTSO-E has no prices ({_entsoe_reason(root)})")
    if not root.tag.endswith("Publication_MarketDocument"):
        raise PriceFeedError(f"{where}: unusable answer (<{root.tag.split('}')[-1]}>, expected "
                             "<Publication_MarketDocument>)")
    found = _entsoe_periods(root, where)
    if not found:
        raise PriceFeedError(f"{where}: the answer holds no prices")
    start, end = _day_window(day, tz)
    sequence = min(seq for seq, _ in found)
    problems = []
    for minutes in sorted(m for seq, m in found if seq == sequence):
        series = found[(sequence, minutes)]
        if series.index.has_duplicates:
            raise PriceFeedError(f"{where}: the {minutes}-minute prices list "
                                 f"{series.index[series.index.duplicated()][0].tz_convert(tz):%H:%M} twice")
        expected = pd.date_range(start, end, freq=f"{minutes}min", inclusive="left").as_unit("ns")
        day_part = series[(series.index >= start) & (series.index < end)]
        if day_part.index.equals(expected):
            return day_part
        missing = expected.difference(day_part.index)
        shown = ", ".join(t.tz_convert(tz).strftime("%H:%M") for t in missing[:6])
        problems.append(f"{len(day_part)} of the {len(expected)} {minutes}-minute prices"
                        + (f"; missing {shown}" if len(missing) else ""))
    raise PriceFeedError(f"{where}: " + " and ".join(problems))


def fetch_entsoe(day: date, token: str, base_url: str = ENTSOE_URL, timeout_s: float = 10.0,
                 tz: str = LOCAL_TZ, domain: str = NL_BIDDING_ZONE) -> pd.Series:
    """Download and parse one local day from ENTSO-E (:class:`PriceFeedError` when down, refused or garbage)."""
    return parse_entsoe(_download_entsoe(day, token, base_url, timeout_s, tz, domain), day, tz)


def _download_entsoe(day: date, token: str, base_url: str, timeout_s: float, tz: str, domain: str) -> bytes:
    where = f"ENTSO-E prices for {day.isoformat()}"
    if not token:
        raise PriceFeedError(f"{where}: no security token configured (ENTSO-E needs one; see "
                             "transparency.entsoe.eu, 'Restful API access')")
    try:
        with urllib.request.urlopen(entsoe_url(day, token, base_url, domain, tz), timeout=timeout_s) as response:
            return response.read()
    except urllib.error.HTTPError as err:
        # ENTSO-E explains refusals (bad token, no data) in an Acknowledgement document; the URL (with the
        # token) is never part of the message.
        body = err.read() or b""
        try:
            reason = _entsoe_reason(ET.fromstring(body))
        except ET.ParseError:
            reason = "no reason given"
        raise PriceFeedError(f"{where}: ENTSO-E refused the request (HTTP {err.code}: {reason})") from None
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise PriceFeedError(f"{where}: feed unreachable ({reason})") from None


# --------------------------------------------------------------------------------------------------
# One choice of feed, with the cache


@dataclass(frozen=True)
class EnergyZeroFeed:
    """The EnergyZero public API (hourly, no token). The cache holds the day as EnergyZero-style JSON."""

    base_url: str = ENERGYZERO_URL
    name: ClassVar[str] = "EnergyZero"

    def download(self, day: date, timeout_s: float, tz: str) -> tuple[pd.Series, bytes]:
        series = fetch_energyzero(day, self.base_url, timeout_s, tz)
        return series, _energyzero_cache_bytes(series, day)

    def cache_file(self, cache_dir: Path, day: date) -> Path:
        return _cache_file(cache_dir, day)

    def parse(self, payload: bytes, day: date, tz: str) -> pd.Series:
        return parse_energyzero(payload, day, tz)


@dataclass(frozen=True)
class EntsoeFeed:
    """The ENTSO-E Transparency Platform (15 or 60 minutes, needs a token). The cache holds the answer as is."""

    token: str = field(repr=False)  # a secret: kept out of reprs and logs
    base_url: str = ENTSOE_URL
    domain: str = NL_BIDDING_ZONE
    name: ClassVar[str] = "ENTSO-E"

    def download(self, day: date, timeout_s: float, tz: str) -> tuple[pd.Series, bytes]:
        payload = _download_entsoe(day, self.token, self.base_url, timeout_s, tz, self.domain)
        return parse_entsoe(payload, day, tz), payload

    def cache_file(self, cache_dir: Path, day: date) -> Path:
        return cache_dir / f"entsoe_{self.domain}_{day.isoformat()}.xml"

    def parse(self, payload: bytes, day: date, tz: str) -> pd.Series:
        return parse_entsoe(payload, day, tz)


PriceFeed = EnergyZeroFeed | EntsoeFeed


class PriceSource:
    """Day-ahead prices of a local day from the chosen feed, cached on disk, the cache used when the feed fails.

    Parameters
    ----------
    feeds : the feeds to try in order (usually one; e.g. ENTSO-E then EnergyZero as a second opinion).
    cache_dir : folder of the per-day cache files (created when needed).
    timeout_s : network timeout per request, seconds.
    tz : the market's clock (local days).

    :meth:`day` returns ``(EUR/MWh on a UTC index at the market's resolution, where from)`` with where from
    ``"<feed>"`` or ``"<feed> cache"``. Build one with :meth:`choose`.
    """

    def __init__(self, feeds: tuple[PriceFeed, ...] | list[PriceFeed], cache_dir: str | Path, timeout_s: float = 10.0,
                 tz: str = LOCAL_TZ) -> None:
        if not feeds:
            raise ValueError("feeds: give at least one price feed")
        self.feeds = tuple(feeds)
        self.cache_dir = Path(cache_dir)
        self.timeout_s = float(timeout_s)
        self.tz = tz

    @classmethod
    def choose(cls, kind: str, cache_dir: str | Path, *, token: str | None = None, base_url: str | None = None,
               timeout_s: float = 10.0, tz: str = LOCAL_TZ) -> PriceSource:
        """The source named ``kind`` (``energyzero`` or ``entsoe``; ``entsoe`` needs ``token``)."""
        if kind == "energyzero":
            return cls([EnergyZeroFeed(base_url or ENERGYZERO_URL)], cache_dir, timeout_s, tz)
        if kind == "entsoe":
            if not token:
                raise PriceFeedError("price source = 'entsoe': needs the ENTSO-E security token")
            return cls([EntsoeFeed(token, base_url or ENTSOE_URL)], cache_dir, timeout_s, tz)
        raise PriceFeedError(f"price source = {kind!r}: must be one of {', '.join(PRICE_SOURCES)}")

    def day(self, day: date) -> tuple[pd.Series, str]:
        """Prices of local ``day`` (see the class text).

        Raises
        ------
        PriceFeedError
            when no feed answers usably and there is no usable cached copy; the message names the day and
            each thing tried.
        """
        tried = []
        for feed in self.feeds:
            try:
                series, cache_bytes = feed.download(day, self.timeout_s, self.tz)
            except PriceFeedError as err:
                tried.append(str(err))
                continue
            self._store(feed.cache_file(self.cache_dir, day), cache_bytes)
            return series, feed.name
        for feed in self.feeds:
            path = feed.cache_file(self.cache_dir, day)
            if not path.exists():
                continue
            try:
                series = feed.parse(path.read_bytes(), day, self.tz)
            except PriceFeedError as err:
                tried.append(f"{err} (cached copy {path})")
                continue
            log.warning("%s; using the cached copy %s", "; ".join(tried), path)
            return series, f"{feed.name} cache"
        if not any(feed.cache_file(self.cache_dir, day).exists() for feed in self.feeds):
            tried.append(f"no cached copy in {self.cache_dir}")
        raise PriceFeedError("; ".join(tried))

    def _store(self, path: Path, payload: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(payload)
        tmp.replace(path)  # a crash mid-write never leaves a half file under the real name
