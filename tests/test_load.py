"""Household load models: NEDU E1A profile and the OPSD measured trace (bundled real data) mapped by weekday."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dwars.data.household import load_opsd_household
from dwars.data.io import sample_path
from dwars.data.profiles import load_nedu_profile
from dwars.env.load import align_by_weekday, measured_load_kw, profile_load_kw
from dwars.errors import DataError
from dwars.timegrid import local_days_index

TZ = "Europe/Amsterdam"


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def local(series: pd.Series) -> pd.Series:
    return series.tz_convert(TZ)


def day(series: pd.Series, date: str) -> pd.Series:
    """The values of one local day."""
    loc = series.index.tz_convert(TZ)
    return series[loc.strftime("%Y-%m-%d") == date]


@pytest.fixture(scope="module")
def e1a() -> pd.Series:
    return load_nedu_profile(sample_path("EDSN_E1A_2019.csv.gz"), 2019)


@pytest.fixture(scope="module")
def opsd() -> pd.Series:
    return load_opsd_household(sample_path("household_opsd_de_4_2016_slices.csv.gz"))["load_kw"]


@pytest.fixture(scope="module")
def year_2024_15() -> pd.Series:
    return profile_load_kw(local_days_index("2024-01-01", "2025-01-01", 15), 2900.0)


# ---------------------------------------------------------------- profile_load_kw


@pytest.mark.parametrize("minutes", [15, 60])
def test_full_year_sums_to_annual_kwh(minutes: int) -> None:
    index = local_days_index("2024-01-01", "2025-01-01", minutes)
    load = profile_load_kw(index, 3456.0)
    assert load.name == "load_kw"
    assert load.index.equals(index)
    assert np.isfinite(load.to_numpy()).all() and (load > 0).all()
    assert (load * minutes / 60).sum() == pytest.approx(3456.0, rel=1e-9)


def test_dst_days(year_2024_15: pd.Series) -> None:
    spring = day(year_2024_15, "2024-03-31")
    autumn = day(year_2024_15, "2024-10-27")
    assert len(spring) == 92 and np.isfinite(spring.to_numpy()).all()
    assert len(autumn) == 100 and np.isfinite(autumn.to_numpy()).all()
    # The repeated local 02:00-03:00 (00:00Z-00:45Z summer, 01:00Z-01:45Z winter) has the same clock
    # times, so the same values.
    first = year_2024_15[utc("2024-10-27 00:00"):utc("2024-10-27 00:45")].to_numpy()
    second = year_2024_15[utc("2024-10-27 01:00"):utc("2024-10-27 01:45")].to_numpy()
    np.testing.assert_array_equal(first, second)
    assert len(first) == 4
    # The autumn day carries one hour more energy than an ordinary Sunday next to it would suggest.
    assert autumn.sum() > spring.sum()


def test_hourly_is_the_mean_of_the_quarters(year_2024_15: pd.Series) -> None:
    hourly = profile_load_kw(local_days_index("2024-01-01", "2025-01-01", 60), 2900.0)
    quarters = year_2024_15.groupby(year_2024_15.index.floor("h")).mean()
    np.testing.assert_allclose(hourly.to_numpy(), quarters.to_numpy(), rtol=1e-12)


def test_winter_above_summer(year_2024_15: pd.Series) -> None:
    month = year_2024_15.index.tz_convert(TZ).month
    mean_kw = year_2024_15.groupby(month).mean()
    assert mean_kw[12] > 1.3 * mean_kw[6]
    assert mean_kw[[1, 2, 11, 12]].min() > mean_kw[[5, 6, 7, 8]].max()
    # 2900 kWh/year is 0.33 kW on average; E1A's evening peak in winter is about twice that.
    assert year_2024_15.mean() == pytest.approx(2900 / 8784, rel=1e-9)


def test_partial_period_gets_its_share_of_the_year(year_2024_15: pd.Series) -> None:
    december = profile_load_kw(local_days_index("2024-12-01", "2025-01-01", 15), 2900.0)
    june = profile_load_kw(local_days_index("2024-06-01", "2024-07-01", 15), 2900.0)
    np.testing.assert_allclose(december.to_numpy(), year_2024_15.loc[december.index].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(june.to_numpy(), year_2024_15.loc[june.index].to_numpy(), rtol=1e-12)
    assert december.sum() / 4 == pytest.approx(0.103 * 2900, rel=0.03)
    assert december.sum() > 1.3 * june.sum()


def test_period_across_new_year_uses_each_years_scale() -> None:
    across = profile_load_kw(local_days_index("2024-12-20", "2025-01-10", 60), 2900.0)
    y2025 = profile_load_kw(local_days_index("2025-01-01", "2026-01-01", 60), 2900.0)
    jan = across[across.index >= utc("2024-12-31 23:00")]
    np.testing.assert_allclose(jan.to_numpy(), y2025.loc[jan.index].to_numpy(), rtol=1e-12)
    assert y2025.sum() == pytest.approx(2900.0, rel=1e-9)


def test_one_year_at_15_min_is_fast(e1a: pd.Series) -> None:
    index = local_days_index("2024-01-01", "2025-01-01", 15)
    t0 = time.perf_counter()
    align_by_weekday(e1a, index)
    assert time.perf_counter() - t0 < 0.5


# ---------------------------------------------------------------- weekday alignment


def test_weekday_pattern_is_kept(e1a: pd.Series) -> None:
    mapped = align_by_weekday(e1a, local_days_index("2024-01-01", "2025-01-01", 15))
    def by_weekday(s: pd.Series) -> pd.Series:
        return s.groupby(s.index.tz_convert(TZ).day_of_week).mean()
    src, tgt = by_weekday(e1a), by_weekday(mapped)
    np.testing.assert_allclose(tgt.to_numpy(), src.to_numpy(), rtol=0.01)
    # E1A's weekend is about 5 % above its working days; the mapped year keeps that.
    weekend_ratio = src[[5, 6]].mean() / src[[0, 1, 2, 3, 4]].mean()
    assert weekend_ratio > 1.03
    assert tgt[[5, 6]].mean() / tgt[[0, 1, 2, 3, 4]].mean() == pytest.approx(weekend_ratio, rel=0.01)
    # Each target Sunday of 2024 holds a whole Sunday of 2019: compare its day profile with that day.
    sunday = day(mapped, "2024-06-16").to_numpy()
    assert any(np.array_equal(sunday, day(e1a, d).to_numpy())
               for d in ("2019-06-09", "2019-06-16", "2019-06-23"))


def _slot_code_source(minutes: int = 15) -> pd.Series:
    """A 2019 source whose value tells its local weekday and clock slot: weekday * 1000 + slot."""
    index = local_days_index("2019-01-01", "2020-01-01", minutes)
    loc = index.tz_convert(TZ)
    slot = (loc.hour * 60 + loc.minute) // minutes
    return pd.Series(loc.day_of_week * 1000 + slot, index=index, dtype=float, name="code")


def _doy_source() -> pd.Series:
    index = local_days_index("2019-01-01", "2020-01-01", 15)
    return pd.Series(index.tz_convert(TZ).day_of_year, index=index, dtype=float, name="doy")


@settings(max_examples=40, deadline=None)
@given(
    start=st.dates(pd.Timestamp("2015-01-01").date(), pd.Timestamp("2035-12-20").date()),
    n_days=st.integers(1, 10),
    minutes=st.sampled_from([15, 60]),
    src_minutes=st.sampled_from([15, 60]),
)
def test_mapped_value_has_target_weekday_and_clock_time(start, n_days: int, minutes: int,
                                                        src_minutes: int) -> None:
    index = local_days_index(str(start), str(start + pd.Timedelta(days=n_days)), minutes)
    mapped = align_by_weekday(_slot_code_source(src_minutes), index).to_numpy()
    loc = index.tz_convert(TZ)
    weekday = loc.day_of_week.to_numpy()
    clock_min = (loc.hour * 60 + loc.minute).to_numpy()
    if minutes == src_minutes:
        slot = clock_min / minutes
    elif minutes > src_minutes:  # mean of the four quarter codes 4h..4h+3
        slot = clock_min / 15 + 1.5
    else:  # hourly source held over its quarters
        slot = clock_min // 60
    # Autumn source days average the doubled hour and spring ones interpolate the skipped one; both give
    # back the clock slot exactly, because the code is linear in the slot.
    np.testing.assert_allclose(mapped, weekday * 1000 + slot, rtol=0, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(start=st.dates(pd.Timestamp("2015-01-01").date(), pd.Timestamp("2035-12-20").date()),
       n_days=st.integers(1, 10))
def test_source_day_is_close_in_the_year(start, n_days: int) -> None:
    index = local_days_index(str(start), str(start + pd.Timedelta(days=n_days)), 60)
    mapped = align_by_weekday(_doy_source(), index).to_numpy()
    target = index.tz_convert(TZ).day_of_year.to_numpy()
    gap = np.abs(mapped - target)
    gap = np.minimum(gap, 365.2425 - gap)
    # Within three days, except around new year where the source's weekdays jump (2019-12-31 and
    # 2019-01-01 are both Tuesdays).
    assert gap.max() <= 4


# ---------------------------------------------------------------- measured load (OPSD 2016)


def test_measured_load_maps_whole_days_by_weekday(opsd: pd.Series) -> None:
    index = local_days_index("2024-10-14", "2024-11-04", 60)
    mapped = measured_load_kw(opsd, index)
    assert mapped.name == "load_kw"
    assert np.isfinite(mapped.to_numpy()).all()
    source_days = sorted({d.strftime("%Y-%m-%d") for d in opsd.index.tz_convert(TZ)})
    for date in sorted({d.strftime("%Y-%m-%d") for d in index.tz_convert(TZ)}):
        values = day(mapped, date).to_numpy()
        weekday = pd.Timestamp(date).day_of_week
        if date == "2024-10-27":
            continue  # DST day, checked below
        matches = [s for s in source_days if pd.Timestamp(s).day_of_week == weekday
                   and len(day(opsd, s)) == 24 and np.array_equal(values, day(opsd, s).to_numpy())]
        assert matches, date
        gap = abs(pd.Timestamp(matches[0]).day_of_year - pd.Timestamp(date).day_of_year)
        # A same-weekday day within 3 days of the year; 10 for the Friday whose nearest source Friday
        # (2016-10-21) is incomplete (see below).
        assert gap <= (10 if date == "2024-10-18" else 3), (date, matches)


def test_measured_load_skips_incomplete_days(opsd: pd.Series) -> None:
    # 2016-10-21 (a Friday) has 13 blank hours; target Friday 2024-10-18 takes Friday 2016-10-28 instead.
    assert len(day(opsd, "2016-10-21")) == 11
    mapped = measured_load_kw(opsd, local_days_index("2024-10-18", "2024-10-19", 60))
    np.testing.assert_array_equal(mapped.to_numpy(), day(opsd, "2016-10-28").to_numpy())


def test_measured_autumn_and_spring_days(opsd: pd.Series) -> None:
    # Target 2024-10-27 (25 h) maps to the source autumn day 2016-10-30 (25 h): the repeated local 02:00
    # hour gets the mean of the source's two 02:00 hours, twice.
    target = measured_load_kw(opsd, local_days_index("2024-10-27", "2024-10-28", 60))
    assert len(target) == 25 and np.isfinite(target.to_numpy()).all()
    src_0200 = (opsd[utc("2016-10-30 00:00")] + opsd[utc("2016-10-30 01:00")]) / 2
    assert target[utc("2024-10-27 00:00")] == pytest.approx(src_0200)
    assert target[utc("2024-10-27 01:00")] == pytest.approx(src_0200)
    assert target[utc("2024-10-27 02:00")] == opsd[utc("2016-10-30 02:00")]  # 03:00 local
    # Target 2024-03-24, an ordinary Sunday (24 h), maps to the source spring day 2016-03-27 (23 h): its
    # missing 02:00 is interpolated between 01:00 and 03:00 local.
    ordinary = measured_load_kw(opsd, local_days_index("2024-03-24", "2024-03-25", 60))
    assert len(ordinary) == 24
    src = day(opsd, "2016-03-27").to_numpy()
    assert ordinary.iloc[2] == pytest.approx((src[1] + src[2]) / 2)
    np.testing.assert_array_equal(ordinary.to_numpy()[3:], src[2:])


def test_hourly_source_is_held_over_quarters(opsd: pd.Series) -> None:
    hourly = measured_load_kw(opsd, local_days_index("2024-10-14", "2024-10-21", 60))
    quarters = measured_load_kw(opsd, local_days_index("2024-10-14", "2024-10-21", 15))
    np.testing.assert_array_equal(quarters.to_numpy(), np.repeat(hourly.to_numpy(), 4))


def test_measured_rescaled_to_annual_kwh(opsd: pd.Series) -> None:
    index = local_days_index("2024-01-01", "2025-01-01", 15)
    load = measured_load_kw(opsd, index, annual_kwh=2500.0)
    assert (load / 4).sum() == pytest.approx(2500.0, rel=1e-9)
    unscaled = measured_load_kw(opsd, index)
    ratio = load.to_numpy() / unscaled.to_numpy()
    np.testing.assert_allclose(ratio[unscaled.to_numpy() > 0], ratio[unscaled.to_numpy() > 0][0], rtol=1e-9)


def test_missing_weekday_and_bad_input_are_refused(opsd: pd.Series) -> None:
    weekdays_only = opsd[opsd.index.tz_convert(TZ).day_of_week < 5]
    with pytest.raises(DataError, match="no complete Saturday"):
        align_by_weekday(weekdays_only, local_days_index("2024-06-01", "2024-06-03", 60))
    with pytest.raises(DataError, match="annual_kwh"):
        profile_load_kw(local_days_index("2024-06-01", "2024-06-03", 60), 0.0)
    naive = pd.date_range("2024-06-01", periods=4, freq="h")
    with pytest.raises(DataError, match="UTC offset"):
        align_by_weekday(opsd, naive)
