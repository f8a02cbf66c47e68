"""Live day-ahead prices: the real download code against local HTTP servers that answer like EnergyZero and ENTSO-E."""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dwars.data.io import sample_path
from dwars.data.prices import load_prices
from dwars.runtime.prices import (
    EnergyZeroFeed,
    EntsoeFeed,
    PriceFeedError,
    PriceSource,
    day_ahead_prices,
    fetch_energyzero,
    fetch_entsoe,
    parse_entsoe,
)

REAL = load_prices(sample_path("prices_2024.json.gz"))  # EUR/MWh, UTC: what the fixture server answers from


class Feed:
    """How the fixture server behaves: "ok", "drop_one" (EnergyZero's October bug), "garbage" or "error"."""

    mode = "ok"
    requests: ClassVar[list[dict[str, str]]] = []


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        query = {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query).items()}
        Feed.requests.append(query)
        if Feed.mode == "error":
            self.send_response(503)
            self.end_headers()
            return
        lo, hi = pd.Timestamp(query["fromDate"]), pd.Timestamp(query["tillDate"])
        hours = REAL[(REAL.index >= lo) & (REAL.index <= hi)]
        if Feed.mode == "drop_one":
            hours = hours.drop(hours.index[2])
        body = (b"<html>maintenance</html>" if Feed.mode == "garbage" else json.dumps(
            {"Prices": [{"price": v / 1000.0, "readingDate": t.strftime("%Y-%m-%dT%H:%M:%SZ")}
                        for t, v in hours.items()], "intervalType": 4}).encode())
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass


@pytest.fixture
def feed() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    Feed.mode, Feed.requests = "ok", []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/energyprices"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("day", "hours"), [(date(2024, 3, 31), 23), (date(2024, 10, 27), 25),
                                            (date(2024, 6, 1), 24)])
def test_a_local_day_is_fetched_as_its_utc_window(feed: str, day: date, hours: int) -> None:
    prices = fetch_energyzero(day, feed)
    assert len(prices) == hours
    assert prices.index[0] == pd.Timestamp(day).tz_localize("Europe/Amsterdam").tz_convert("UTC")
    pd.testing.assert_series_equal(prices, REAL.loc[prices.index].rename(prices.name), check_freq=False,
                                   check_index_type=False, check_names=False, rtol=1e-9)
    assert Feed.requests[-1]["inclBtw"] == "false" and Feed.requests[-1]["interval"] == "4"


def test_a_day_with_an_hour_missing_is_refused_with_the_hour(feed: str) -> None:
    Feed.mode = "drop_one"
    with pytest.raises(PriceFeedError, match=r"2024-10-27: 24 hours, the day has 25; missing 02:00"):
        fetch_energyzero(date(2024, 10, 27), feed)


def test_the_cache_carries_a_feed_outage(feed: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    day = date(2024, 6, 1)
    fresh, source = day_ahead_prices(day, tmp_path, feed)
    assert source == "feed" and (tmp_path / "prices_2024-06-01.json").exists()
    for mode in ("error", "garbage"):
        Feed.mode = mode
        cached, source = day_ahead_prices(day, tmp_path, feed)
        assert source == "cache"
        pd.testing.assert_series_equal(cached, fresh, rtol=1e-12)
    assert "using the cached copy" in caplog.text
    with pytest.raises(PriceFeedError, match=r"prices for 2024-06-02: feed unreachable .*; no cached copy"):
        day_ahead_prices(date(2024, 6, 2), tmp_path, feed.replace("127.0.0.1", "127.0.0.1:1"), timeout_s=0.5)


def test_an_unreachable_feed_without_cache_is_a_clear_error(tmp_path: Path) -> None:
    from dwars.runtime.sim_inverter import _free_port

    url = f"http://127.0.0.1:{_free_port('127.0.0.1')}/v1/energyprices"
    with pytest.raises(PriceFeedError, match="EnergyZero prices for 2024-06-01: feed unreachable"):
        day_ahead_prices(date(2024, 6, 1), tmp_path, url, timeout_s=0.5)


# --------------------------------------------------------------------------------------------------
# ENTSO-E: recorded-format answers (tests/fixtures/entsoe, built from the bundled real prices) from a local server

ENTSOE_DIR = Path(__file__).resolve().parent / "fixtures" / "entsoe"
QUARTERS = load_prices(sample_path("prices_nl_15min_2025-10.csv.gz"))  # the 15-minute market, October 2025
TOKEN = "3f2b-test-token"
ACK = """<?xml version="1.0" encoding="utf-8"?>
<Acknowledgement_MarketDocument xmlns="urn:iec62325.351:tc57wg16:451-1:acknowledgementdocument:7:0">
  <mRID>ack-1</mRID>
  <createdDateTime>2024-06-01T12:00:00Z</createdDateTime>
  <received_MarketDocument.createdDateTime>2024-06-01T12:00:00Z</received_MarketDocument.createdDateTime>
  <Reason>
    <code>{code}</code>
    <text>{text}</text>
  </Reason>
</Acknowledgement_MarketDocument>
"""


class Entsoe:
    """The fixture server's behaviour: "ok", "error" (503), "garbage", "short" (the period ends an hour early)."""

    mode = "ok"
    requests: ClassVar[list[dict[str, str]]] = []


class EntsoeHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        query = {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query).items()}
        Entsoe.requests.append(query)
        if Entsoe.mode == "error":
            self._send(503, b"Service Unavailable")
            return
        if query.get("securityToken") != TOKEN:  # what ENTSO-E answers to a wrong token
            self._send(401, ACK.format(code="999", text="Unauthorized. Missing or invalid security token").encode())
            return
        start = pd.Timestamp(query["periodStart"], tz="UTC")
        path = ENTSOE_DIR / f"nl_{start.tz_convert('Europe/Amsterdam').date().isoformat()}.xml"
        if not path.exists():
            self._send(200, ACK.format(code="999", text="No matching data found for Data item Energy Prices "
                                                      "[12.1.D] (10YNL----------L)").encode())
            return
        body = path.read_bytes()
        if Entsoe.mode == "garbage":
            body = b"<html><body>Maintenance</body></html"
        elif Entsoe.mode == "short":  # the period and its points end an hour early
            end = pd.Timestamp(query["periodEnd"], tz="UTC")
            hours = int((end - start) / pd.Timedelta(hours=1))
            shorter = (end - pd.Timedelta(hours=1)).strftime("%Y-%m-%dT%H:%MZ")
            body = body.replace(f"<end>{end:%Y-%m-%dT%H:%MZ}</end>".encode(), f"<end>{shorter}</end>".encode())
            body = re.sub(rf"<Point>\s*<position>{hours}</position>.*?</Point>".encode(), b"", body, flags=re.S)
        self._send(200, body)

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/xml")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def entsoe() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EntsoeHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    Entsoe.mode, Entsoe.requests = "ok", []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()
        server.server_close()


def _local_day(series: pd.Series, day: date) -> pd.Series:
    start = pd.Timestamp(day).tz_localize("Europe/Amsterdam")
    return series[(series.index >= start) & (series.index < start + pd.offsets.Day(1))]


@pytest.mark.parametrize(("day", "minutes", "count"), [
    (date(2024, 3, 31), 60, 23), (date(2024, 10, 27), 60, 25), (date(2024, 4, 1), 60, 24),
    (date(2025, 10, 25), 15, 96), (date(2025, 10, 26), 15, 100)])
def test_entsoe_days_come_back_whole_at_their_resolution(entsoe: str, day: date, minutes: int, count: int) -> None:
    prices = fetch_entsoe(day, TOKEN, entsoe)
    assert len(prices) == count
    assert (prices.index[1] - prices.index[0]) == pd.Timedelta(minutes=minutes)
    # The numbers are the real ones, also where A03 left a repeated price out (2024-04-01: 21 points, 24 hours).
    # The October 2025 sample lacks the repeated hour's quarters (01:00-01:45Z); the fixture holds 00:45Z there.
    real = _local_day(REAL if minutes == 60 else QUARTERS, day).reindex(prices.index).ffill()
    np.testing.assert_allclose(prices.to_numpy(), real.to_numpy(), atol=1e-9)
    sent = Entsoe.requests[-1]
    assert sent["documentType"] == "A44" and sent["in_Domain"] == sent["out_Domain"] == "10YNL----------L"
    start = pd.Timestamp(day).tz_localize("Europe/Amsterdam").tz_convert("UTC")
    assert sent["periodStart"] == start.strftime("%Y%m%d%H%M")


def test_entsoe_fixture_leaves_out_repeated_prices() -> None:
    # The recorded format really exercises A03: fewer points than hours where a price repeats.
    text = (ENTSOE_DIR / "nl_2024-04-01.xml").read_text()
    assert text.count("<Point>") == 21 and "<curveType>A03</curveType>" in text


def test_entsoe_prefers_quarter_hours_and_falls_back_to_a_whole_hourly_series() -> None:
    day = date(2025, 10, 26)
    both = parse_entsoe((ENTSOE_DIR / "nl_2025-10-26.xml").read_bytes(), day)  # PT15M and PT60M series
    assert len(both) == 100
    # A quarter-hour series that stops an hour early loses to a whole hourly one in the same document.
    start = pd.Timestamp(day).tz_localize("Europe/Amsterdam").tz_convert("UTC")
    hourly = both.groupby(both.index.floor("h")).mean().round(2).tolist()
    doc = _document(_series(start, both.tolist()[:96], 15), _series(start, hourly, 60))
    parsed = parse_entsoe(doc, day)
    assert len(parsed) == 25 and parsed.tolist() == hourly


def test_entsoe_day_cut_short_is_refused_with_the_missing_hour(entsoe: str) -> None:
    Entsoe.mode = "short"
    with pytest.raises(PriceFeedError, match=r"ENTSO-E prices for 2024-10-27: 24 of the 25 60-minute prices; "
                                             r"missing 23:00"):
        fetch_entsoe(date(2024, 10, 27), TOKEN, entsoe)


def test_entsoe_without_data_or_with_a_wrong_token_says_why(entsoe: str) -> None:
    with pytest.raises(PriceFeedError, match=r"2024-06-01: ENTSO-E has no prices \(No matching data found"):
        fetch_entsoe(date(2024, 6, 1), TOKEN, entsoe)
    with pytest.raises(PriceFeedError, match=r"refused the request \(HTTP 401: Unauthorized") as info:
        fetch_entsoe(date(2024, 3, 31), "wrong-token", entsoe)
    assert "wrong-token" not in str(info.value)
    with pytest.raises(PriceFeedError, match="no security token configured"):
        fetch_entsoe(date(2024, 3, 31), "", entsoe)


def _series(start: pd.Timestamp, values: list[float], minutes: int) -> str:
    """One TimeSeries in the documented layout, A03: a price equal to the one before is left out."""
    end = start + pd.Timedelta(minutes=minutes * len(values))
    points = "".join(f"<Point><position>{i}</position><price.amount>{v}</price.amount></Point>"
                     for i, v in enumerate(values, start=1) if i == 1 or v != values[i - 2])
    return (f"<TimeSeries><curveType>A03</curveType><Period><timeInterval><start>{start:%Y-%m-%dT%H:%MZ}</start>"
            f"<end>{end:%Y-%m-%dT%H:%MZ}</end></timeInterval><resolution>PT{minutes}M</resolution>{points}"
            "</Period></TimeSeries>")


def _document(*series: str) -> str:
    return ('<Publication_MarketDocument xmlns="urn:iec62325.351:tc57wg16:451-3:publicationdocument:7:3">'
            f"<type>A44</type>{''.join(series)}</Publication_MarketDocument>")


@settings(max_examples=40, deadline=None)
@given(day=st.sampled_from([date(2024, 3, 31), date(2024, 10, 27), date(2025, 10, 26), date(2024, 6, 1)]),
       minutes=st.sampled_from([15, 60]), data=st.data())
def test_entsoe_a03_round_trip(day: date, minutes: int, data: st.DataObject) -> None:
    start = pd.Timestamp(day).tz_localize("Europe/Amsterdam")
    n = int((start + pd.offsets.Day(1) - start) / pd.Timedelta(minutes=minutes))
    values = data.draw(st.lists(st.sampled_from([-5.5, 0.0, 0.01, 87.3, 250.0]), min_size=n, max_size=n))
    parsed = parse_entsoe(_document(_series(start.tz_convert("UTC"), values, minutes)), day)
    assert parsed.tolist() == values
    assert parsed.index[0] == start.tz_convert("UTC") and len(parsed) == n


def test_price_source_entsoe_caches_and_reuses_the_cache(entsoe: str, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    source = PriceSource.choose("entsoe", tmp_path, token=TOKEN, base_url=entsoe, timeout_s=2.0)
    fresh, where = source.day(date(2025, 10, 26))
    assert where == "ENTSO-E" and len(fresh) == 100
    for mode in ("error", "garbage"):
        Entsoe.mode = mode
        cached, where = source.day(date(2025, 10, 26))
        assert where == "ENTSO-E cache"
        pd.testing.assert_series_equal(cached, fresh)
    assert "using the cached copy" in caplog.text
    assert TOKEN not in caplog.text and TOKEN not in repr(source.feeds[0])  # the token is a secret
    Entsoe.mode = "error"
    with pytest.raises(PriceFeedError, match=r"^ENTSO-E prices for 2025-10-25: ENTSO-E refused the request "
                                             r"\(HTTP 503.*; no cached copy in "):
        source.day(date(2025, 10, 25))


def test_price_source_tries_the_next_feed_before_the_cache(entsoe: str, feed: str, tmp_path: Path) -> None:
    source = PriceSource([EntsoeFeed(TOKEN, entsoe), EnergyZeroFeed(feed)], tmp_path, timeout_s=2.0)
    prices, where = source.day(date(2024, 6, 1))  # not in the ENTSO-E fixtures: EnergyZero answers
    assert where == "EnergyZero" and len(prices) == 24
    Feed.mode = "error"
    with pytest.raises(PriceFeedError) as info:
        source.day(date(2024, 6, 2))
    message = str(info.value)
    assert "ENTSO-E prices for 2024-06-02: ENTSO-E has no prices" in message
    assert "EnergyZero prices for 2024-06-02: feed unreachable" in message
    assert message.endswith(f"no cached copy in {tmp_path}")


def test_price_source_choice_is_checked(tmp_path: Path) -> None:
    with pytest.raises(PriceFeedError, match=r"price source = 'nordpool': must be one of energyzero, entsoe"):
        PriceSource.choose("nordpool", tmp_path)
    with pytest.raises(PriceFeedError, match="needs the ENTSO-E security token"):
        PriceSource.choose("entsoe", tmp_path)
