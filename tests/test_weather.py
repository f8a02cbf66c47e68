"""KNMI hourly weather loader on the bundled real samples (original KNMI format and the dwars extract) and
on fixtures in the extract format."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dwars.data.io import sample_path
from dwars.data.weather import J_PER_CM2_TO_WH_PER_M2, load_knmi_hourly
from dwars.errors import DataError
from dwars.timegrid import check_regular, local_days_index

TZ = "Europe/Amsterdam"
EXTRACT_HEADER = "STN,YYYYMMDD,HH,T,Q,utc_start,utc_end"


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture(scope="module")
def knmi_2024() -> pd.DataFrame:
    return load_knmi_hourly(sample_path("knmi_debilt_260_2024_T_Q.csv.gz"))


def extract_rows(name: str) -> pd.DataFrame:
    """The bundled extract as plain text columns (independent of the loader)."""
    path = sample_path(name)
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    lines = [ln.split(",") for ln in text.splitlines()[1:]]
    return pd.DataFrame(lines, columns=EXTRACT_HEADER.split(","))


def write_extract(path: Path, rows: list[tuple[str, int, str, str]]) -> Path:
    """A file in the dwars extract format; rows are (YYYYMMDD, HH, T, Q) as text."""
    lines = [EXTRACT_HEADER]
    for day, hh, t, q in rows:
        start = pd.Timestamp(day) + pd.Timedelta(hours=hh - 1)
        end = start + pd.Timedelta(hours=1)
        lines.append(f"260,{day},{hh},{t},{q},{start:%Y-%m-%dT%H:%MZ},{end:%Y-%m-%dT%H:%MZ}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_original_format_and_extract_agree(knmi_2024: pd.DataFrame) -> None:
    original = load_knmi_hourly(sample_path("uurgeg_260_sample_2024-08-25_26.txt"))
    assert len(original) == 48
    assert original.index[0] == utc("2024-08-25 00:00")
    assert original.index[-1] == utc("2024-08-26 23:00")
    same = knmi_2024.loc[original.index]
    pd.testing.assert_frame_equal(original, same)
    assert original["ghi_w_per_m2"].max() > 500  # a sunny August day, not all zeros


def test_hh1_is_the_hour_from_midnight_utc(knmi_2024: pd.DataFrame) -> None:
    assert str(knmi_2024.index.tz) == "UTC"
    raw = extract_rows("knmi_debilt_260_2024_T_Q.csv.gz")
    first_2024 = raw.index[(raw["YYYYMMDD"] == "20240101") & (raw["HH"] == "1")][0]
    last_2024 = raw.index[(raw["YYYYMMDD"] == "20241231") & (raw["HH"] == "24")][0]
    assert knmi_2024.index[first_2024] == utc("2024-01-01 00:00")  # HH=1 covers 00:00-01:00 UT
    assert knmi_2024["temp_air_c"].iloc[first_2024] == pytest.approx(float(raw.loc[first_2024, "T"]) / 10)
    assert knmi_2024.index[last_2024] == utc("2024-12-31 23:00")  # HH=24 covers 23:00-24:00 UT
    year = knmi_2024.loc["2024"]
    assert len(year) == 8784
    assert check_regular(knmi_2024.index, 60, "weather").ok
    # The extract's own utc_start column agrees with YYYYMMDD + HH - 1 for every row.
    starts = pd.DatetimeIndex(pd.to_datetime(raw["utc_start"], format="%Y-%m-%dT%H:%MZ")).tz_localize("UTC")
    assert knmi_2024.index.equals(starts.as_unit("ns").rename("time"))


def test_q_and_t_conversion(knmi_2024: pd.DataFrame) -> None:
    raw = extract_rows("knmi_debilt_260_2024_T_Q.csv.gz")
    q = raw["Q"].astype(float).to_numpy()
    t = raw["T"].astype(float).to_numpy()
    assert pytest.approx(10_000 / 3600) == J_PER_CM2_TO_WH_PER_M2
    np.testing.assert_allclose(knmi_2024["ghi_w_per_m2"].to_numpy(), q * 10_000 / 3600)
    np.testing.assert_allclose(knmi_2024["temp_air_c"].to_numpy(), t / 10)
    # One spot value by hand: the largest Q of the year.
    i = int(np.argmax(q))
    assert knmi_2024["ghi_w_per_m2"].iloc[i] == pytest.approx(q[i] * 2.7777777777)


def test_annual_irradiation_2024(knmi_2024: pd.DataFrame) -> None:
    # Hourly mean W/m2 summed over the hours = Wh/m2; KNMI De Bilt 2024 had about 1040 kWh/m2.
    kwh_per_m2 = knmi_2024.loc["2024", "ghi_w_per_m2"].sum() / 1000
    assert kwh_per_m2 == pytest.approx(1040, abs=10)


def test_2023_dst_days_are_plain_utc_days() -> None:
    w = load_knmi_hourly(sample_path("knmi_debilt_260_2023_dst_days.csv"))
    assert len(w) == 144
    per_utc_day = w.groupby(w.index.date).size()
    assert (per_utc_day == 24).all() and len(per_utc_day) == 6
    local = w.index.tz_convert(TZ)
    per_local_day = pd.Series(1, index=local).groupby(local.date).size()
    assert per_local_day[pd.Timestamp("2023-03-26").date()] == 23
    assert per_local_day[pd.Timestamp("2023-10-29").date()] == 25
    for day in ("2023-03-26", "2023-10-29"):
        grid = local_days_index(day, str((pd.Timestamp(day) + pd.Timedelta(days=1)).date()), 60)
        assert grid.isin(w.index).all()


def test_blank_q_is_left_out_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [("20240601", hh, "150", "" if hh == 13 else str(hh * 10)) for hh in range(1, 25)]
    with caplog.at_level(logging.WARNING, logger="dwars.data.weather"):
        w = load_knmi_hourly(write_extract(tmp_path / "blank.csv", rows))
    assert len(w) == 23
    assert list(check_regular(w.index, 60, "weather").missing) == [utc("2024-06-01 12:00")]
    assert "1 hours without radiation" in caplog.text


def test_2025_fixture_in_extract_format(tmp_path: Path) -> None:
    # Made-up values for the spring DST day of 2025 (no real 2025 data in the tests: test period).
    rows = [(day, hh, str(50 + hh), str(max(0, 12 - abs(hh - 13)) * 20))
            for day in ("20250329", "20250330", "20250331") for hh in range(1, 25)]
    w = load_knmi_hourly(write_extract(tmp_path / "knmi_2025.csv", rows))
    assert len(w) == 72
    assert w.index[0] == utc("2025-03-29 00:00")
    assert check_regular(w.index, 60, "weather").ok
    assert w.loc[utc("2025-03-30 12:00"), "ghi_w_per_m2"] == pytest.approx(240 * 10_000 / 3600)
    assert w.loc[utc("2025-03-30 12:00"), "temp_air_c"] == pytest.approx(6.3)
    local = w.index.tz_convert(TZ)
    per_local_day = pd.Series(1, index=local).groupby(local.date).size()
    assert per_local_day[pd.Timestamp("2025-03-30").date()] == 23


def test_bad_hh_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="HH"):
        load_knmi_hourly(write_extract(tmp_path / "bad.csv", [("20240601", 25, "150", "10")]))
