"""Scenario files: built from real bundled data, DST-correct, 15/60-minute consistent, strictly validated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dwars.config import load_config
from dwars.data.io import sample_path
from dwars.data.scenario import Scenario, build_scenario, read_scenario, summarize, write_scenario
from dwars.errors import DataError, MissingDataError

ROOT = Path(__file__).resolve().parents[1]
HOME = load_config(ROOT / "examples" / "home.toml")
PRICES_2024 = [sample_path("prices_2024.json.gz")]
WEATHER_2024 = sample_path("knmi_debilt_260_2024_T_Q.csv.gz")


def spring(minutes: int, **kw: object) -> Scenario:
    return build_scenario(HOME, PRICES_2024, "2024-03-28", "2024-04-03", minutes, weather=WEATHER_2024, **kw)


@pytest.fixture(scope="module")
def spring15() -> Scenario:
    return spring(15)


@pytest.fixture(scope="module")
def spring60() -> Scenario:
    return spring(60)


def test_spring_dst_week_has_one_hour_less(spring15: Scenario, spring60: Scenario) -> None:
    assert len(spring60.frame) == 6 * 24 - 1
    assert len(spring15.frame) == (6 * 24 - 1) * 4
    assert list(spring15.frame.columns) == ["price_eur_per_mwh", "load_kw", "ghi_w_per_m2", "temp_air_c"]
    assert spring15.start == pd.Timestamp("2024-03-27 23:00", tz="UTC")
    assert spring15.end == pd.Timestamp("2024-04-02 22:00", tz="UTC")


def test_autumn_dst_day_has_25_hours() -> None:
    scn = build_scenario(HOME, PRICES_2024, "2024-10-27", "2024-10-28", 15, weather=WEATHER_2024)
    assert len(scn.frame) == 100
    # Prices of the two 02:00 local hours are different real values, each held for four quarters.
    prices = scn.frame["price_eur_per_mwh"].to_numpy().reshape(-1, 4)
    assert (prices == prices[:, :1]).all()


def test_15_and_60_minutes_agree(spring15: Scenario, spring60: Scenario) -> None:
    coarse = spring15.to_resolution(60)
    for col in spring60.frame.columns:
        np.testing.assert_allclose(coarse.frame[col].to_numpy(), spring60.frame[col].to_numpy(), atol=1e-9, err_msg=col)
    pv15 = spring15.pv_kw(HOME).sum() * 0.25
    pv60 = spring60.pv_kw(HOME).sum()
    assert pv15 == pytest.approx(pv60, rel=0.03)


def test_prices_are_the_real_ones(spring60: Scenario) -> None:
    import gzip
    import json

    rows = json.loads(gzip.decompress(PRICES_2024[0].read_bytes()))["prices"]
    by_time = {r["timestamp"]: r["price"] for r in rows}
    local = spring60.index.tz_convert("Europe/Amsterdam")
    for t, value in zip(local[:30], spring60.frame["price_eur_per_mwh"][:30], strict=True):
        assert value == by_time[t.strftime("%Y-%m-%dT%H:%M:%S")]


def test_write_then_read_round_trip(tmp_path: Path, spring15: Scenario) -> None:
    path = write_scenario(spring15, tmp_path / "s.csv")
    text = path.read_text().splitlines()
    assert text[0] == "time,price_eur_per_mwh,load_kw,ghi_w_per_m2,temp_air_c"
    assert text[1].startswith("2024-03-27T23:00:00+00:00,")
    back = read_scenario(path)
    assert back.minutes == 15 and back.index.equals(spring15.index)
    np.testing.assert_allclose(back.frame.to_numpy(), spring15.frame.to_numpy(), atol=1e-6)
    assert back.meta["sources"][0]["sha256"]


def test_model_pv_matches_on_the_fly_model(spring15: Scenario) -> None:
    modelled = spring(15, model_pv=True)
    assert "pv_kw" in modelled.frame.columns and "ghi_w_per_m2" not in modelled.frame.columns
    np.testing.assert_allclose(modelled.frame["pv_kw"].to_numpy(), spring15.pv_kw(HOME).to_numpy(), atol=1e-9)


def test_gap_in_prices_is_refused_then_filled_and_recorded() -> None:
    prices = [sample_path("prices_2022_dst_days.json")]
    with pytest.raises(MissingDataError, match="2 missing intervals.*2022-10-30 01:00 UTC"):
        build_scenario(HOME, prices, "2022-10-30", "2022-10-31", 60, pv="none")
    scn = build_scenario(HOME, prices, "2022-10-30", "2022-10-31", 60, pv="none", fill="hold")
    assert len(scn.frame) == 25
    assert any("2 missing intervals" in f for f in scn.meta["fills"])


def test_period_outside_the_data_is_refused() -> None:
    with pytest.raises(MissingDataError, match="the files cover .* the period needs"):
        build_scenario(HOME, PRICES_2024, "2024-12-30", "2025-01-02", 60, pv="none")


def test_measured_pv_and_load_from_a_real_household() -> None:
    household = sample_path("household_opsd_de_4_2016_slices.csv.gz")
    scn = build_scenario(HOME, PRICES_2024, "2024-06-03", "2024-06-10", 60, load=household, pv=household)
    assert scn.has_measured_pv
    assert scn.frame["pv_kw"].max() > 1.0 and scn.frame["load_kw"].min() >= 0
    # PV of the real trace is zero at night (local midnight).
    midnight = scn.index.tz_convert("Europe/Amsterdam").hour == 0
    assert scn.frame.loc[midnight, "pv_kw"].max() < 0.05


def test_no_pv_source_is_refused() -> None:
    with pytest.raises(DataError, match="no PV source"):
        build_scenario(HOME, PRICES_2024, "2024-06-03", "2024-06-04", 60)


def test_profile_load_scales_to_the_annual_figure() -> None:
    scn = build_scenario(HOME, PRICES_2024, "2024-01-01", "2025-01-01", 60, pv="none", annual_load_kwh=4000)
    assert scn.frame["load_kw"].sum() == pytest.approx(4000, rel=1e-9)


def good_csv(tmp_path: Path, body: str | None = None) -> Path:
    path = tmp_path / "s.csv"
    path.write_text(body or (
        "time,price_eur_per_mwh,load_kw,pv_kw\n"
        "2024-01-01T00:00:00+01:00,10.5,0.3,0\n"
        "2024-01-01T01:00:00+01:00,12.0,0.4,0\n"
        "2024-01-01T02:00:00+01:00,9.0,0.2,0\n"))
    return path


def test_reading_accepts_any_offset_and_stores_utc(tmp_path: Path) -> None:
    scn = read_scenario(good_csv(tmp_path))
    assert scn.minutes == 60 and str(scn.index.tz) == "UTC" and scn.start.hour == 23


@pytest.mark.parametrize(("body", "message"), [
    ("time,price_eur_per_mwh,load_kw,pv_kw\n2024-01-01T00:00:00,1,1,0\n2024-01-01T01:00:00,1,1,0\n",
     "has no UTC offset"),
    ("time,price_eur_per_mwh,pv_kw\n2024-01-01T00:00:00Z,1,0\n2024-01-01T01:00:00Z,1,0\n",
     r"column\(s\) load_kw missing"),
    ("time,price_eur_per_mwh,load_kw\n2024-01-01T00:00:00Z,1,1\n2024-01-01T01:00:00Z,1,1\n",
     "needs pv_kw"),
    ("time,price_eur_per_mwh,load_kw,pv_kw\n2024-01-01T00:00:00Z,1,-1,0\n2024-01-01T01:00:00Z,1,1,0\n",
     r"load_kw = -1 at 2024-01-01 00:00 UTC \(01:00 local\): must be >= 0"),
    ("time,price_eur_per_mwh,load_kw,pv_kw\n2024-01-01T00:00:00Z,,1,0\n2024-01-01T01:00:00Z,1,1,0\n",
     "price_eur_per_mwh is blank or not a number at 2024-01-01 00:00 UTC"),
    ("time,price_eur_per_mwh,load_kw,pv_kw\n2024-01-01T00:00:00Z,abc,1,0\n2024-01-01T01:00:00Z,1,1,0\n",
     "price_eur_per_mwh = 'abc'"),
    ("time,price_eur_per_mwh,load_kw,pv_kw\n2024-01-01T00:00:00Z,1,1,0\n2024-01-01T01:00:00Z,1,1,0\n"
     "2024-01-01T03:00:00Z,1,1,0\n", "1 missing interval"),
    ("time,price_eur_per_mwh,load_kw,pv_kw,wind\n2024-01-01T00:00:00Z,1,1,0,3\n2024-01-01T01:00:00Z,1,1,0,3\n",
     r"unknown column\(s\) wind"),
])
def test_bad_scenarios_name_column_time_and_value(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_scenario(good_csv(tmp_path, body))


def test_summary_of_a_year() -> None:
    scn = build_scenario(HOME, PRICES_2024, "2024-01-01", "2025-01-01", 60, weather=WEATHER_2024)
    s = summarize(scn, HOME)
    assert s["intervals"] == 8784 and len(s["monthly"]) == 12
    assert 800 < s["pv_specific_yield_kwh_per_kwp"] < 1000
    assert s["load_kwh"] == pytest.approx(HOME.load.annual_kwh, rel=1e-9)
    assert s["negative_price_hours"] > 100  # the bundled 2024 prices have 428 hours below zero


def test_load_from_an_hourly_scenario_file_on_a_15_minute_grid(tmp_path: Path, spring60: Scenario) -> None:
    path = write_scenario(spring60, tmp_path / "hourly.csv")
    scn = build_scenario(HOME, PRICES_2024, "2024-03-28", "2024-04-03", 15, load=path, pv="none")
    quarters = scn.frame["load_kw"].to_numpy().reshape(-1, 4)
    np.testing.assert_allclose(quarters, np.repeat(spring60.frame["load_kw"].to_numpy()[:, None], 4, 1), atol=1e-6)
