"""The live PV forecast: Open-Meteo answers (tests/fixtures/openmeteo, built from real KNMI weather) from a local
server, through the home's PV model, and the clear-sky fallback when the feed is down or has holes."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from dwars.config import Installation
from dwars.data.scenario import Scenario
from dwars.env.forecast import Forecaster
from dwars.env.pv import pv_ac_kw
from dwars.policy.base import Home
from dwars.runtime.weather_feed import (
    OpenMeteoFeed,
    PvForecaster,
    WeatherFeedError,
    open_meteo_url,
    parse_open_meteo,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "openmeteo"
JUNE_15 = "debilt_2024-06-10_minutely_15.json"


class Weather:
    """What the fixture server answers: a fixture file name, "down" (503) or "garbage"."""

    answer = JUNE_15
    requests: ClassVar[list[dict[str, str]]] = []


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        Weather.requests.append({k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                                 .items()})
        if Weather.answer == "down":
            code, body = 503, b"Service Unavailable"
        elif Weather.answer == "garbage":
            code, body = 200, b"<html>rate limited</html>"
        else:
            body = (FIXTURES / Weather.answer).read_bytes()
            code = 400 if Weather.answer.startswith("error") else 200
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def weather() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    Weather.answer, Weather.requests = JUNE_15, []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/forecast"
    finally:
        server.shutdown()
        server.server_close()


def test_the_request_asks_for_irradiance_and_temperature_in_gmt() -> None:
    query = urllib.parse.parse_qs(urllib.parse.urlparse(open_meteo_url(52.1, 5.18, 15)).query)
    assert query["minutely_15"] == ["shortwave_radiation,direct_normal_irradiance,diffuse_radiation,temperature_2m"]
    assert query["timezone"] == ["GMT"] and query["latitude"] == ["52.1000"] and query["forecast_days"] == ["3"]
    assert "hourly" in urllib.parse.parse_qs(urllib.parse.urlparse(open_meteo_url(52.1, 5.18, 60)).query)


def test_radiation_stamped_at_the_end_belongs_to_the_interval_before_it() -> None:
    payload = (FIXTURES / JUNE_15).read_bytes()
    raw = json.loads(payload)["minutely_15"]
    frame = parse_open_meteo(payload, 15)
    # Open-Meteo's value at 12:15 is the mean over 12:00-12:15: the interval that starts at 12:00.
    j = raw["time"].index("2024-06-10T12:15")
    row = frame.loc[pd.Timestamp("2024-06-10 12:00", tz="UTC")]
    assert row["ghi_w_per_m2"] == raw["shortwave_radiation"][j]
    assert row["dni_w_per_m2"] == raw["direct_normal_irradiance"][j]
    assert row["temp_air_c"] == pytest.approx((raw["temperature_2m"][j - 1] + raw["temperature_2m"][j]) / 2)
    assert frame.index[0] == pd.Timestamp("2024-06-09 23:45", tz="UTC") and len(frame) == 3 * 96
    assert str(frame.index.tz) == "UTC"


def test_local_time_answers_are_put_back_on_utc() -> None:
    data = json.loads((FIXTURES / JUNE_15).read_bytes())
    shifted = {**data, "utc_offset_seconds": 7200, "timezone": "Europe/Amsterdam"}
    shifted["minutely_15"] = {**data["minutely_15"], "time": [
        (pd.Timestamp(t) + pd.Timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M") for t in data["minutely_15"]["time"]]}
    pd.testing.assert_frame_equal(parse_open_meteo(json.dumps(shifted), 15),
                                  parse_open_meteo(json.dumps(data), 15))


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["minutely_15"].pop("shortwave_radiation"), r"minutely_15.shortwave_radiation missing"),
    (lambda d: d["minutely_15_units"].update(temperature_2m="°F"), r"temperature_2m in '°F', expected '°C'"),
    (lambda d: d["minutely_15"]["time"].pop(5), r"not a regular 15-minute grid"),
    (lambda d: d.pop("minutely_15"), r"no 'minutely_15' block"),
])
def test_answers_that_do_not_fit_are_refused(change: object, message: str) -> None:
    data = json.loads((FIXTURES / JUNE_15).read_bytes())
    change(data)  # type: ignore[operator]
    with pytest.raises(WeatherFeedError, match=message):
        parse_open_meteo(json.dumps(data), 15)


def test_feed_errors_name_the_reason(weather: str) -> None:
    feed = OpenMeteoFeed(52.1, 5.18, 15, weather, timeout_s=2.0)
    Weather.answer = "error_400.json"
    with pytest.raises(WeatherFeedError, match=r"refused \(HTTP 400: Latitude must be in range of -90 to 90"):
        feed.fetch()
    Weather.answer = "garbage"
    with pytest.raises(WeatherFeedError, match="unusable answer"):
        feed.fetch()
    Weather.answer = "down"
    with pytest.raises(WeatherFeedError, match="HTTP 503"):
        feed.fetch()


def _now() -> pd.Timestamp:
    return pd.Timestamp("2024-06-10 04:00", tz="UTC")


def test_pv_from_the_weather_feed_is_the_home_pv_model(weather: str, home_inst: Installation,
                                                       june_15: Scenario) -> None:
    feed = OpenMeteoFeed(52.1, 5.18, 15, weather)
    times = pd.date_range(_now(), periods=144, freq="15min")
    forecast = PvForecaster(home_inst, 15, feed).forecast(times, pd.Series(dtype=float), _now())
    assert forecast.from_weather.all() and not forecast.causes
    frame = feed.fetch().reindex(times)
    expected = pv_ac_kw(times, frame["ghi_w_per_m2"], frame["temp_air_c"], home_inst.site, home_inst.pv, 15)
    np.testing.assert_allclose(forecast.pv_kw, expected.to_numpy())
    # The fixture is the measured weather, so the forecast is the simulator's actual PV (same model chain).
    actual = june_15.pv_kw(home_inst).reindex(times).to_numpy()
    assert forecast.pv_kw.sum() == pytest.approx(actual.sum(), rel=0.01)
    assert np.abs(forecast.pv_kw - actual).max() < 0.05 * home_inst.pv.inverter_kw


def test_hourly_feed_for_an_hourly_loop(weather: str, home_inst: Installation) -> None:
    Weather.answer = "debilt_2024-06-10_hourly.json"
    times = pd.date_range(_now(), periods=36, freq="60min")
    forecast = PvForecaster(home_inst, 60, OpenMeteoFeed(52.1, 5.18, 60, weather)).forecast(
        times, pd.Series(dtype=float), _now())
    assert forecast.from_weather.all() and forecast.pv_kw.max() > 1.0
    assert "hourly" in Weather.requests[-1]
    with pytest.raises(ValueError, match="feed delivers 60-minute intervals, the forecast needs 15"):
        PvForecaster(home_inst, 15, OpenMeteoFeed(52.1, 5.18, 60, weather))


def test_holes_in_the_forecast_are_filled_by_the_clear_sky_fallback(weather: str, home_inst: Installation,
                                                                    june_15: Scenario) -> None:
    Weather.answer = "debilt_2024-06-10_minutely_15_nulls.json"
    pv_forecaster = PvForecaster(home_inst, 15, OpenMeteoFeed(52.1, 5.18, 15, weather))
    now = pd.Timestamp("2024-06-10 08:00", tz="UTC")
    times = pd.date_range(now, periods=144, freq="15min")
    measured = june_15.pv_kw(home_inst)
    measured = measured[measured.index < now]
    forecast = pv_forecaster.forecast(times, measured, now)
    # Null from the stamps after 11:00 through 13:00, and after 2024-06-11 18:00: stamps are interval ends.
    holes = (times >= pd.Timestamp("2024-06-10 11:00", tz="UTC")) & (times < pd.Timestamp("2024-06-10 13:00", tz="UTC"))
    holes |= times >= pd.Timestamp("2024-06-11 18:00", tz="UTC")
    np.testing.assert_array_equal(~forecast.from_weather, holes)
    assert np.isfinite(forecast.pv_kw).all() and (forecast.pv_kw >= 0).all()
    fallback = pv_forecaster.clearsky_fallback_kw(times, measured)
    np.testing.assert_array_equal(forecast.pv_kw[holes], fallback[holes])
    assert fallback[holes].max() > 0.5  # midday: the fallback is not a silent zero
    assert [key for key, _ in forecast.causes] == ["weather_nan"]
    assert "no irradiance for 16 of 144 intervals (first 2024-06-10 11:00Z)" in forecast.causes[0][1]


def test_a_feed_outage_keeps_the_last_forecast_for_a_while_then_falls_back(weather: str,
                                                                           home_inst: Installation) -> None:
    pv_forecaster = PvForecaster(home_inst, 15, OpenMeteoFeed(52.1, 5.18, 15, weather, timeout_s=1.0),
                                 refresh_min=60, max_age_h=6)
    now = _now()
    times = pd.date_range(now + pd.Timedelta(hours=1), periods=16, freq="15min")
    first = pv_forecaster.forecast(times, pd.Series(dtype=float), now)
    assert first.from_weather.all() and len(Weather.requests) == 1
    Weather.answer = "down"
    pv_forecaster.forecast(times, pd.Series(dtype=float), now + pd.Timedelta(minutes=45))
    assert len(Weather.requests) == 1  # not due yet: weather models update hourly
    kept = pv_forecaster.forecast(times, pd.Series(dtype=float), now + pd.Timedelta(minutes=61))
    assert len(Weather.requests) == 2 and kept.from_weather.all()
    np.testing.assert_array_equal(kept.pv_kw, first.pv_kw)
    assert kept.causes[0][0] == "weather_feed" and "still using the forecast of 2024-06-10 04:00Z" in kept.causes[0][1]
    late = pd.date_range(now + pd.Timedelta(hours=7), periods=16, freq="15min")
    old = pv_forecaster.forecast(late, pd.Series(dtype=float), now + pd.Timedelta(hours=7))
    assert not old.from_weather.any() and "using the clear-sky fallback" in old.causes[0][1]
    Weather.answer = JUNE_15
    back = pv_forecaster.forecast(late, pd.Series(dtype=float), now + pd.Timedelta(hours=8, minutes=1))
    assert back.from_weather.all() and not back.causes


@pytest.mark.parametrize("issue", [0, 3, 40, 97, 180, 300])
def test_the_fallback_is_the_simulators_clearsky_index_forecast(home_inst: Installation, june_15: Scenario,
                                                                issue: int) -> None:
    forecaster = Forecaster(june_15, Home.from_installation(home_inst), pv_mode="clearsky_index")
    expected = forecaster.at(issue)
    measured = june_15.pv_kw(home_inst).iloc[:issue]
    got = PvForecaster(home_inst, 15).forecast(expected.times, measured, june_15.index[issue])
    np.testing.assert_allclose(got.pv_kw, expected.pv_kw, rtol=1e-12, atol=1e-12)
    assert not got.from_weather.any()


def test_gaps_in_the_measured_pv_carry_no_information(home_inst: Installation, june_15: Scenario) -> None:
    pv = june_15.pv_kw(home_inst)
    now = june_15.index[200]
    times = pd.date_range(now, periods=96, freq="15min")
    forecaster = PvForecaster(home_inst, 15)
    whole = forecaster.clearsky_fallback_kw(times, pv[pv.index < now])
    # A night with no measurements (the Pi was off) changes nothing: night PV is 0 and clear sky is 0 too.
    night = (pv.index < now) & (pv.index.hour >= 21)
    holed = forecaster.clearsky_fallback_kw(times, pv[(pv.index < now) & ~night])
    np.testing.assert_allclose(holed, whole, rtol=1e-12)
    # NaN values count as gaps, not as zeros.
    with_nan = pv[pv.index < now].copy()
    with_nan[with_nan.index.hour == 12] = np.nan
    assert np.isfinite(forecaster.clearsky_fallback_kw(times, with_nan)).all()
    zeros = pv[pv.index < now].copy()
    zeros[zeros.index.hour == 12] = 0.0
    assert forecaster.clearsky_fallback_kw(times, with_nan).sum() > forecaster.clearsky_fallback_kw(times, zeros).sum()


def test_without_a_pv_section_only_the_fallback_forecasts(weather: str, home_inst: Installation,
                                                          june_15: Scenario) -> None:
    bare = Installation(site=home_inst.site, name="measured")
    pv = june_15.pv_kw(home_inst)
    now = june_15.index[150]
    times = pd.date_range(now, periods=48, freq="15min")
    forecast = PvForecaster(bare, 15, OpenMeteoFeed(52.1, 5.18, 15, weather)).forecast(times, pv[pv.index < now], now)
    assert not forecast.from_weather.any() and [k for k, _ in forecast.causes] == ["no_pv_model"]
    assert forecast.pv_kw.max() > 0.5  # scaled by the measured PV's index against clear-sky GHI
