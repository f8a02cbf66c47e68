"""Live day-ahead prices: the real download code against a local HTTP server that answers like EnergyZero."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest

from dwars.data.io import sample_path
from dwars.data.prices import load_prices
from dwars.runtime.prices import PriceFeedError, day_ahead_prices, fetch_energyzero

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
    thread = threading.Thread(target=server.serve_forever, daemon=True)
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
