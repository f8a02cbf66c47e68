"""The measured load and PV history in SQLite: survives restarts, prunes, and gives the simulator's load forecast."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dwars.config import Installation
from dwars.data.io import sample_path
from dwars.data.scenario import Scenario, build_scenario
from dwars.env.forecast import Forecaster
from dwars.env.load import profile_load_kw
from dwars.errors import DataError
from dwars.policy.base import Home
from dwars.runtime.history import LoadHistory

T0 = pd.Timestamp("2024-03-30 22:00", tz="UTC")


@pytest.fixture(scope="module")
def five_weeks(home_inst: Installation) -> Scenario:
    """Five real weeks of 2024 at 15 minutes across the spring DST day, with the real household load."""
    return build_scenario(home_inst, [sample_path("prices_2024.json.gz")], "2024-03-04", "2024-04-08", 15,
                          weather=sample_path("knmi_debilt_260_2024_T_Q.csv.gz"), model_pv=True)


def test_rows_survive_a_restart_and_a_second_reader_sees_them(tmp_path: Path) -> None:
    path = tmp_path / "state" / "history.sqlite"
    with LoadHistory(path) as first:
        first.record(T0, 15, 0.42, 1.5)
        first.record(T0 + pd.Timedelta(minutes=15), 15, 0.38, None)
        reader = LoadHistory(path)  # e.g. a dashboard, while the loop keeps writing
        first.record(T0 + pd.Timedelta(minutes=30), 15, 0.51, 0.0)
        assert len(reader) == 3
        reader.close()
    with LoadHistory(path) as again:  # the restart
        rows = again.between(T0, T0 + pd.Timedelta(hours=1))
    assert rows.index.tolist() == [T0 + pd.Timedelta(minutes=m) for m in (0, 15, 30)]
    assert rows["load_kw"].tolist() == [0.42, 0.38, 0.51]
    assert rows["pv_kw"].iloc[0] == 1.5 and np.isnan(rows["pv_kw"].iloc[1])
    assert str(rows.index.tz) == "UTC"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_recording_an_interval_again_replaces_it(tmp_path: Path) -> None:
    with LoadHistory(tmp_path / "h.sqlite") as history:
        history.record(T0, 15, 0.4, 1.0)
        history.record(T0.tz_convert("Europe/Amsterdam"), 15, 0.6, 1.2)  # the same instant in local time
        assert len(history) == 1
        assert history.between(T0, T0 + pd.Timedelta(minutes=15))["load_kw"].tolist() == [0.6]


def test_old_rows_are_pruned(tmp_path: Path) -> None:
    with LoadHistory(tmp_path / "h.sqlite", keep_days=2) as history:
        starts = pd.date_range(T0, periods=4 * 24 * 4, freq="15min")  # four days
        history.record_many(pd.DataFrame({"load_kw": 0.3, "pv_kw": 0.0}, index=starts), 15)
        rows = history.between(T0 - pd.Timedelta(days=1), T0 + pd.Timedelta(days=5))
    assert rows.index[0] == starts[-1] - pd.Timedelta(days=2) and rows.index[-1] == starts[-1]


@pytest.mark.parametrize(("args", "message"), [
    ((pd.Timestamp("2024-03-30 22:00"), 15, 0.4, 1.0), "must be timezone-aware"),
    ((T0 + pd.Timedelta(minutes=5), 15, 0.4, 1.0), "not the start of a 15-minute interval"),
    ((T0 + pd.Timedelta(minutes=15), 60, 0.4, 1.0), "not the start of a 60-minute interval"),
    ((T0, 15, -0.1, 1.0), r"load_kw = -0.1 at 2024-03-30T22:00:00\+00:00: must be a number >= 0"),
    ((T0, 15, float("nan"), 1.0), "load_kw = nan"),
    ((T0, 15, 0.4, float("inf")), "pv_kw = inf"),
    ((T0, 30, 0.4, 1.0), "minutes = 30: must be one of 15, 60"),
])
def test_bad_measurements_are_refused_and_nothing_is_written(tmp_path: Path, args: tuple, message: str) -> None:
    with LoadHistory(tmp_path / "h.sqlite") as history:
        with pytest.raises(DataError, match=message):
            history.record(*args)
        assert len(history) == 0


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    path.write_bytes(b"this is not sqlite, it is a text file that happens to be here" * 20)
    with pytest.raises(DataError, match="not a usable history database"):
        LoadHistory(path)


def test_quarter_hours_and_hours_convert_as_powers(tmp_path: Path) -> None:
    with LoadHistory(tmp_path / "h.sqlite") as history:
        quarters = pd.date_range(T0, periods=7, freq="15min")  # one whole hour and three quarters of the next
        history.record_many(pd.DataFrame({"load_kw": [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0],
                                          "pv_kw": [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 2.0]}, index=quarters), 15)
        history.record(T0 + pd.Timedelta(hours=3), 60, 0.9, 0.5)
        hourly = history.series(T0, T0 + pd.Timedelta(hours=4), 60)
        quarterly = history.series(T0 + pd.Timedelta(hours=3), T0 + pd.Timedelta(hours=4), 15)
    assert hourly["load_kw"].iloc[0] == pytest.approx(0.5) and hourly["pv_kw"].iloc[0] == pytest.approx(0.5)
    assert np.isnan(hourly["load_kw"].iloc[1])  # three quarters are not an hour
    assert np.isnan(hourly["load_kw"].iloc[2]) and hourly["load_kw"].iloc[3] == 0.9
    assert quarterly["load_kw"].tolist() == [0.9] * 4 and quarterly["pv_kw"].tolist() == [0.5] * 4


@settings(max_examples=25, deadline=None)
@given(rows=st.dictionaries(st.integers(0, 2000), st.tuples(st.floats(0, 20), st.none() | st.floats(0, 10)),
                            max_size=40))
def test_what_is_recorded_is_what_is_read(tmp_path_factory: pytest.TempPathFactory,
                                          rows: dict[int, tuple[float, float | None]]) -> None:
    path = tmp_path_factory.mktemp("prop") / "h.sqlite"
    with LoadHistory(path, keep_days=365) as history:
        for k, (load, pv) in rows.items():
            history.record(T0 + k * pd.Timedelta(minutes=15), 15, load, pv)
    with LoadHistory(path, keep_days=365) as history:
        got = history.between(T0, T0 + pd.Timedelta(days=30))
    keys = sorted(rows)
    assert got.index.tolist() == [T0 + k * pd.Timedelta(minutes=15) for k in keys]
    assert got["load_kw"].tolist() == [rows[k][0] for k in keys]
    np.testing.assert_array_equal(got["pv_kw"].to_numpy(), [np.nan if rows[k][1] is None else rows[k][1]
                                                            for k in keys])


def test_without_history_the_load_forecast_is_the_standard_profile(tmp_path: Path, home_inst: Installation) -> None:
    times = pd.date_range(T0, periods=144, freq="15min")  # across the spring DST night
    with LoadHistory(tmp_path / "h.sqlite") as history:
        got = history.load_forecast_kw(times, 15, home_inst.load.annual_kwh)
    expected = profile_load_kw(times, home_inst.load.annual_kwh, minutes=15).to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("minutes", [15, 60])
def test_the_load_forecast_is_the_simulators(tmp_path: Path, home_inst: Installation, five_weeks: Scenario,
                                             minutes: int) -> None:
    scenario = five_weeks.to_resolution(minutes)
    forecaster = Forecaster(scenario, Home.from_installation(home_inst), pv_mode="clearsky_index",
                            load_mode="history")
    per_day = 1440 // minutes
    with LoadHistory(tmp_path / "h.sqlite") as history:
        history.record_many(scenario.frame[["load_kw"]].assign(pv_kw=scenario.pv_kw(home_inst)), minutes)
        # Issues from the first day (pure profile) through the DST week to the fifth week (pure history).
        for issue in (0, 3 * per_day + 5, 13 * per_day, 27 * per_day + 7, 33 * per_day):
            expected = forecaster.at(issue)
            got = history.load_forecast_kw(expected.times, minutes, home_inst.load.annual_kwh)
            np.testing.assert_allclose(got, expected.load_kw, rtol=1e-12, err_msg=f"issue {issue}")


def test_the_load_forecast_reads_only_the_past(tmp_path: Path, home_inst: Installation, five_weeks: Scenario) -> None:
    times = five_weeks.index[2000:2144]
    with LoadHistory(tmp_path / "h.sqlite") as history:
        history.record_many(five_weeks.frame[["load_kw"]].iloc[:2000], 15)
        before = history.load_forecast_kw(times, 15, home_inst.load.annual_kwh)
        history.record_many(five_weeks.frame[["load_kw"]].iloc[2000:] * 10, 15)  # "future" rows
        after = history.load_forecast_kw(times, 15, home_inst.load.annual_kwh)
    np.testing.assert_array_equal(before, after)
