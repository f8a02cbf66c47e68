"""The UTC interval grid: local days on DST dates, naive local timestamps, gap reports and fills."""

from __future__ import annotations

import pandas as pd
import pytest

from dwars.errors import DataError, MissingDataError
from dwars.timegrid import (
    check_regular,
    fill_gaps,
    infer_resolution,
    local_days_index,
    localize_naive_local,
    parse_resolution,
)


@pytest.mark.parametrize(("day", "hours"), [
    ("2023-03-26", 23), ("2023-10-29", 25), ("2024-03-31", 23), ("2024-10-27", 25),
    ("2025-03-30", 23), ("2025-10-26", 25), ("2024-06-01", 24),
])
@pytest.mark.parametrize("minutes", [15, 60])
def test_local_days_have_23_24_or_25_hours(day: str, hours: int, minutes: int) -> None:
    end = (pd.Timestamp(day) + pd.Timedelta(days=1)).date()
    idx = local_days_index(day, end, minutes)
    assert len(idx) == hours * 60 // minutes
    assert str(idx.tz) == "UTC"
    assert idx[0].tz_convert("Europe/Amsterdam").hour == 0


def test_naive_local_autumn_duplicate_resolved_by_order() -> None:
    naive = pd.DatetimeIndex(["2024-10-27 01:00", "2024-10-27 02:00", "2024-10-27 02:00", "2024-10-27 03:00"])
    utc = localize_naive_local(naive)
    assert [t.strftime("%H:%M") for t in utc] == ["23:00", "00:00", "01:00", "02:00"]


def test_naive_local_spring_gap_time_is_an_error() -> None:
    with pytest.raises(DataError, match="2024-03-31 02:00:00 does not exist"):
        localize_naive_local(pd.DatetimeIndex(["2024-03-31 01:00", "2024-03-31 02:00"]))


def test_resolution_parsing_and_inference() -> None:
    assert parse_resolution("15min") == 15 and parse_resolution("hourly") == 60 and parse_resolution(60) == 60
    with pytest.raises(DataError, match="resolution = '5min': must be 15min or 60min"):
        parse_resolution("5min")
    idx = pd.date_range("2024-01-01", periods=10, freq="15min", tz="UTC")
    assert infer_resolution(idx) == 15
    with pytest.raises(DataError, match="common step between rows is 5 minutes"):
        infer_resolution(pd.date_range("2024-01-01", periods=10, freq="5min", tz="UTC"))


def test_gap_report_names_utc_and_local_times() -> None:
    idx = pd.date_range("2022-10-29 22:00", periods=5, freq="h", tz="UTC").delete([3])
    text = check_regular(idx, 60, "prices").describe()
    assert text == "prices: 1 missing interval (2022-10-30 01:00 UTC (02:00 local))"


def test_duplicates_and_off_grid_rows_are_reported() -> None:
    idx = pd.DatetimeIndex(["2024-01-01 00:00", "2024-01-01 00:00", "2024-01-01 01:07"], tz="UTC")
    report = check_regular(idx, 60, "x")
    assert len(report.duplicates) == 1 and len(report.misaligned) == 1 and not report.ok
    with pytest.raises(DataError, match="duplicate"):
        fill_gaps(pd.Series([1.0, 2.0, 3.0], index=idx), 60, "hold")


def test_fill_refuses_without_rule_and_logs_with_rule(caplog: pytest.LogCaptureFixture) -> None:
    idx = pd.date_range("2024-01-01", periods=4, freq="h", tz="UTC").delete(1)
    s = pd.Series([10.0, 30.0, 40.0], index=idx, name="prices")
    with pytest.raises(MissingDataError, match="1 missing interval"):
        fill_gaps(s, 60, None)
    held, report = fill_gaps(s, 60, "hold")
    assert held.tolist() == [10.0, 10.0, 30.0, 40.0] and len(report.missing) == 1
    interpolated, _ = fill_gaps(s, 60, "interpolate")
    assert interpolated.tolist() == [10.0, 20.0, 30.0, 40.0]
    assert "filled 1 intervals by interpolate" in caplog.text


def test_blank_values_count_as_missing() -> None:
    idx = pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC")
    with pytest.raises(MissingDataError):
        fill_gaps(pd.Series([1.0, float("nan"), 3.0], index=idx, name="p"), 60, None)


def test_fill_within_explicit_bounds() -> None:
    idx = pd.date_range("2024-01-01 01:00", periods=2, freq="h", tz="UTC")
    s = pd.Series([5.0, 6.0], index=idx)
    lo, hi = pd.Timestamp("2024-01-01 00:00", tz="UTC"), pd.Timestamp("2024-01-01 04:00", tz="UTC")
    filled, report = fill_gaps(s, 60, "hold", start=lo, end=hi)
    assert filled.tolist() == [5.0, 5.0, 6.0, 6.0] and len(report.missing) == 2
