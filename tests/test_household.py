"""OPSD household loader on the bundled real 2016 slices and on small fixtures in the OPSD format."""

from __future__ import annotations

import gzip
import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dwars.data.household import load_opsd_household
from dwars.data.io import sample_path
from dwars.errors import DataError
from dwars.timegrid import check_regular, local_days_index

TZ = "Europe/Amsterdam"
HH = "DE_KN_residential4"
SAMPLE = "household_opsd_de_4_2016_slices.csv.gz"


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    text = gzip.decompress(sample_path(SAMPLE).read_bytes()).decode()
    return pd.read_csv(io.StringIO(text), index_col="utc_timestamp")


@pytest.fixture(scope="module")
def household() -> pd.DataFrame:
    return load_opsd_household(sample_path(SAMPLE))


def write_opsd(path: Path, stamps: list[str], columns: dict[str, list[str]]) -> Path:
    """A file in the OPSD single-index layout (utc_timestamp first, blank = missing)."""
    names = ["utc_timestamp", *columns]
    lines = [",".join(names)]
    for i, t in enumerate(stamps):
        lines.append(",".join([t, *(col[i] for col in columns.values())]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_columns_index_and_units(household: pd.DataFrame) -> None:
    assert list(household.columns) == ["load_kw", "pv_kw"]
    assert household.index.name == "time"
    assert str(household.index.tz) == "UTC"
    assert household.index.is_monotonic_increasing and not household.index.has_duplicates
    assert household.index[0] == utc("2016-03-13 23:00")  # first reading = start of the first hour
    assert (household["load_kw"] >= 0).all() and (household["pv_kw"] >= 0).all()
    # A household of ~6000 kWh/year averages ~0.7 kW; PV peaks at several kW.
    assert 0.3 < household["load_kw"].mean() < 1.5
    assert household["pv_kw"].max() > 3


def test_consumption_is_import_plus_pv_minus_export(raw: pd.DataFrame, household: pd.DataFrame) -> None:
    meters = raw[[f"{HH}_grid_import", f"{HH}_pv", f"{HH}_grid_export"]]
    diff = meters.shift(-1) - meters
    expected = diff[f"{HH}_grid_import"] + diff[f"{HH}_pv"] - diff[f"{HH}_grid_export"]
    expected.index = pd.DatetimeIndex(pd.to_datetime(expected.index, format="%Y-%m-%dT%H:%M:%SZ", utc=True))
    got = household["load_kw"]
    np.testing.assert_allclose(got.to_numpy(), expected.loc[got.index].to_numpy(), rtol=0, atol=1e-9)
    # One hour by hand from the file text: 2016-03-20 12:00Z to 13:00Z.
    a, b = raw.loc["2016-03-20T12:00:00Z"], raw.loc["2016-03-20T13:00:00Z"]
    by_hand = (b[f"{HH}_grid_import"] - a[f"{HH}_grid_import"]) + (b[f"{HH}_pv"] - a[f"{HH}_pv"]) \
        - (b[f"{HH}_grid_export"] - a[f"{HH}_grid_export"])
    assert household.loc[utc("2016-03-20 12:00"), "load_kw"] == pytest.approx(by_hand, abs=1e-9)
    assert household.loc[utc("2016-03-20 12:00"), "pv_kw"] == pytest.approx(
        b[f"{HH}_pv"] - a[f"{HH}_pv"], abs=1e-9)


def test_blank_readings_are_left_out_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dwars.data.household"):
        h = load_opsd_household(sample_path(SAMPLE))
    # Readings 2016-10-21 10:00Z .. 21:00Z are blank: the hours starting 09:00Z .. 21:00Z have no energy.
    autumn = local_days_index("2016-10-17", "2016-11-07", 60)
    report = check_regular(h.index, 60, "load", start=autumn[0], end=autumn[-1] + pd.Timedelta(hours=1))
    assert report.missing.equals(pd.date_range(utc("2016-10-21 09:00"), utc("2016-10-21 21:00"), freq="h"))
    assert "13 hours" in caplog.text and "blank" in caplog.text


def test_dst_days_and_slice_boundaries(household: pd.DataFrame) -> None:
    spring = local_days_index("2016-03-14", "2016-04-04", 60)
    assert household.index[household.index < utc("2016-06-01")].equals(spring)  # complete, 23-hour day incl.
    local = household.index.tz_convert(TZ)
    per_day = pd.Series(1, index=local).groupby(local.date).size()
    assert per_day[pd.Timestamp("2016-03-27").date()] == 23
    assert per_day[pd.Timestamp("2016-10-30").date()] == 25
    # No hour spans the months between the two blocks.
    assert utc("2016-04-03 22:00") not in household.index


def test_meter_reset_hour_is_left_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stamps = [f"2016-01-01T{h:02d}:00:00Z" for h in range(6)]
    path = write_opsd(tmp_path / "reset.csv", stamps, {
        f"{HH}_grid_export": ["0", "0", "0", "0", "0", "0"],
        f"{HH}_grid_import": ["10.0", "10.5", "11.5", "0.2", "0.6", "1.6"],
        f"{HH}_pv": ["5", "5", "5", "5", "5", "5"],
    })
    with caplog.at_level(logging.WARNING, logger="dwars.data.household"):
        h = load_opsd_household(path)
    assert list(h.index) == [utc("2016-01-01 00:00"), utc("2016-01-01 01:00"), utc("2016-01-01 03:00"),
                             utc("2016-01-01 04:00")]
    np.testing.assert_allclose(h["load_kw"].to_numpy(), [0.5, 1.0, 0.4, 1.0])
    assert list(check_regular(h.index, 60, "load").missing) == [utc("2016-01-01 02:00")]
    assert "meter reset" in caplog.text


def test_household_without_pv_or_export(tmp_path: Path) -> None:
    stamps = [f"2016-01-01T{h:02d}:00:00Z" for h in range(3)]
    path = write_opsd(tmp_path / "nopv.csv", stamps, {"DE_KN_residential1_grid_import": ["1", "1.25", "2"]})
    h = load_opsd_household(path, household="DE_KN_residential1")
    assert list(h.columns) == ["load_kw"]
    np.testing.assert_allclose(h["load_kw"].to_numpy(), [0.25, 0.75])


def test_missing_household_names_columns(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_opsd_household(sample_path(SAMPLE), household="DE_KN_residential9")
    assert "DE_KN_residential9_grid_import" in str(err.value)
    assert HH in str(err.value)  # lists the households that are there


def test_bad_reading_names_row_and_value(tmp_path: Path) -> None:
    stamps = ["2016-01-01T00:00:00Z", "2016-01-01T01:00:00Z"]
    path = write_opsd(tmp_path / "bad.csv", stamps, {f"{HH}_grid_import": ["1", "x1"]})
    with pytest.raises(DataError) as err:
        load_opsd_household(path)
    assert "'x1'" in str(err.value) and "2016-01-01T01:00:00Z" in str(err.value)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    imports=st.lists(st.integers(0, 5000), min_size=2, max_size=40),
    data=st.data(),
)
def test_differences_recover_hourly_energy(tmp_path: Path, imports: list[int], data) -> None:
    """Cumulative readings built from hourly Wh give those Wh back, with blanks costing k + 1 hours."""
    n = len(imports)
    pv = data.draw(st.lists(st.integers(0, 8000), min_size=n, max_size=n))
    export = [min(p, data.draw(st.integers(0, 8000))) for p in pv]  # export never above PV
    blank = data.draw(st.lists(st.booleans(), min_size=n + 1, max_size=n + 1))
    cum = {name: np.concatenate([[1000.0], 1000.0 + np.cumsum(v) / 1000]) for name, v in
           (("grid_import", imports), ("pv", pv), ("grid_export", export))}
    stamps = list(pd.date_range("2016-05-01", periods=n + 1, freq="h").strftime("%Y-%m-%dT%H:%M:%SZ"))
    cols = {f"{HH}_{k}": ["" if blank[i] else f"{v[i]:.3f}" for i in range(n + 1)] for k, v in cum.items()}
    h = load_opsd_household(write_opsd(tmp_path / "h.csv", stamps, cols))
    usable = [i for i in range(n) if not blank[i] and not blank[i + 1]]
    assert list(h.index) == [pd.Timestamp(stamps[i]) for i in usable]
    expected = (np.array(imports) + np.array(pv) - np.array(export))[usable] / 1000
    np.testing.assert_allclose(h["load_kw"].to_numpy(), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(h["pv_kw"].to_numpy(), np.array(pv)[usable] / 1000, rtol=0, atol=1e-6)
