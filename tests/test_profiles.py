"""NEDU profile loader on the bundled real E1A 2019 profile and on fixtures in its format."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dwars.data.io import sample_path
from dwars.data.profiles import load_nedu_profile
from dwars.errors import DataError
from dwars.timegrid import local_days_index

TZ = "Europe/Amsterdam"


@pytest.fixture(scope="module")
def e1a() -> pd.Series:
    return load_nedu_profile(sample_path("EDSN_E1A_2019.csv.gz"), 2019)


def raw_lines() -> list[str]:
    return gzip.decompress(sample_path("EDSN_E1A_2019.csv.gz").read_bytes()).decode().split("\r\n")


def test_e1a_2019_index_and_sum(e1a: pd.Series) -> None:
    assert e1a.name == "fraction"
    assert len(e1a) == 35040
    assert e1a.index[0] == pd.Timestamp("2018-12-31 23:00", tz="UTC")
    assert e1a.index[-1] == pd.Timestamp("2019-12-31 22:45", tz="UTC")
    assert e1a.index.equals(local_days_index("2019-01-01", "2020-01-01", 15))
    assert e1a.sum() == pytest.approx(1.0, abs=1e-6)
    assert (e1a > 0).all()
    # Values in file order: the first and last lines of the published file.
    lines = raw_lines()
    assert e1a.iloc[0] == float(lines[0]) and e1a.iloc[-1] == float(lines[-1])


def test_e1a_dst_days_have_92_and_100_quarters(e1a: pd.Series) -> None:
    local = e1a.index.tz_convert(TZ)
    per_day = pd.Series(1, index=local).groupby(local.date).size()
    assert per_day[pd.Timestamp("2019-03-31").date()] == 92
    assert per_day[pd.Timestamp("2019-10-27").date()] == 100
    assert len(per_day) == 365


def test_e1a_is_winter_heavy(e1a: pd.Series) -> None:
    month = e1a.index.tz_convert(TZ).month
    share = e1a.groupby(month).sum()
    assert share[12] == pytest.approx(0.103, abs=0.002)
    assert share[6] == pytest.approx(0.071, abs=0.002)
    assert share[[1, 2, 11, 12]].min() > share[[5, 6, 7, 8]].max()


def test_wrong_year_length_is_refused() -> None:
    with pytest.raises(DataError) as err:
        load_nedu_profile(sample_path("EDSN_E1A_2019.csv.gz"), 2020)  # leap year: 35136 quarters
    assert "35040" in str(err.value) and "35136" in str(err.value)


def test_sum_and_values_are_checked(tmp_path: Path) -> None:
    lines = raw_lines()
    doubled = tmp_path / "doubled.csv"
    doubled.write_text("\r\n".join(str(2 * float(v)) for v in lines))
    with pytest.raises(DataError, match="sum to 2"):
        load_nedu_profile(doubled, 2019)
    bad = tmp_path / "bad.csv"
    bad.write_text("\r\n".join([*lines[:99], "n.v.t.", *lines[100:]]))
    with pytest.raises(DataError, match=r"line 100: fraction = 'n\.v\.t\.'"):
        load_nedu_profile(bad, 2019)
    negative = tmp_path / "negative.csv"
    negative.write_text("\n".join([*lines[:5], "-0.00001", *lines[6:]]) + "\n")
    with pytest.raises(DataError, match="line 6"):
        load_nedu_profile(negative, 2019)


def test_leap_year_fixture(tmp_path: Path) -> None:
    n = len(local_days_index("2024-01-01", "2025-01-01", 15))
    assert n == 35136
    path = tmp_path / "flat_2024.csv"
    path.write_text("\r\n".join([f"{1 / n:.14f}"] * n))
    p = load_nedu_profile(path, 2024)
    assert p.index[0] == pd.Timestamp("2023-12-31 23:00", tz="UTC")
    assert p.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(p.to_numpy(), 1 / n, rtol=1e-6)
