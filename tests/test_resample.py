"""Resampling between 60 and 15 minutes: exact round trips, energy kept, incomplete hours refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dwars.data.resample import resample, resample_frame
from dwars.errors import DataError

values = st.lists(st.floats(-1000, 1000, allow_nan=False), min_size=1, max_size=60)
starts = st.sampled_from(["2024-03-30 22:00", "2024-10-26 23:00", "2023-06-01 00:00"])


def hourly(vals: list[float], start: str) -> pd.Series:
    return pd.Series(vals, index=pd.date_range(start, periods=len(vals), freq="h", tz="UTC"), name="x")


@given(vals=values, start=starts, kind=st.sampled_from(["price", "energy", "power"]))
def test_up_then_down_is_exact(vals: list[float], start: str, kind: str) -> None:
    s = hourly(vals, start)
    quarters = resample(s, kind, 15)
    assert len(quarters) == 4 * len(s)
    back = resample(quarters, kind, 60)
    assert back.index.equals(s.index)
    np.testing.assert_allclose(back.to_numpy(), s.to_numpy(), rtol=0, atol=1e-9)


@given(vals=values, start=starts)
def test_energy_split_keeps_total_and_price_is_held(vals: list[float], start: str) -> None:
    s = hourly(vals, start)
    assert resample(s, "energy", 15).sum() == pytest.approx(s.sum(), abs=1e-6)
    held = resample(s, "price", 15).to_numpy().reshape(-1, 4)
    assert (held == np.asarray(vals)[:, None]).all()


def test_down_averages_prices_and_sums_energy() -> None:
    idx = pd.date_range("2025-10-01", periods=8, freq="15min", tz="UTC")
    s = pd.Series([1.0, 2, 3, 4, 10, 10, 10, 50], index=idx)
    assert resample(s, "price", 60).tolist() == [2.5, 20.0]
    assert resample(s, "energy", 60).tolist() == [10.0, 80.0]


def test_incomplete_hour_is_refused() -> None:
    idx = pd.date_range("2025-10-01 00:15", periods=7, freq="15min", tz="UTC")
    with pytest.raises(DataError, match="starts or ends inside an interval"):
        resample(pd.Series(np.ones(7), index=idx, name="price"), "price", 60)


def test_gaps_are_refused() -> None:
    idx = pd.date_range("2024-01-01", periods=6, freq="h", tz="UTC").delete(2)
    with pytest.raises(DataError, match="1 missing interval"):
        resample(pd.Series(np.ones(5), index=idx, name="price"), "price", 15)


def test_unknown_kind_and_naive_index() -> None:
    s = hourly([1.0, 2.0], "2024-01-01")
    with pytest.raises(DataError, match="kind = 'volume'"):
        resample(s, "volume", 15)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="no UTC offset"):
        resample(pd.Series([1.0, 2.0], index=pd.date_range("2024-01-01", periods=2, freq="h")), "price", 15)


def test_frame_by_column_kind() -> None:
    index = pd.date_range("2024-01-01", periods=2, freq="h", tz="UTC")
    f = pd.DataFrame({"p": [1.0, 2.0], "e": [4.0, 8.0]}, index=index)
    out = resample_frame(f, {"p": "price", "e": "energy"}, 15)
    assert out["e"].tolist() == [1.0] * 4 + [2.0] * 4
    with pytest.raises(DataError, match="no kind given"):
        resample_frame(f, {"p": "price"}, 15)
