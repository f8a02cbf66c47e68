"""Price loaders on the bundled real files (2022, 2023, 2024 JSON; October 2025 15-minute CSV) and on
fixtures written in the original formats for cases no real file covers (a 2025 spring day, CSV spring days)."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dwars.data.io import sample_path
from dwars.data.prices import load_prices, load_prices_csv, load_prices_json
from dwars.errors import DataError, MissingDataError
from dwars.timegrid import check_regular, fill_gaps, local_days_index

TZ = "Europe/Amsterdam"


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def local_day_counts(series: pd.Series) -> pd.Series:
    """Number of intervals per local calendar day."""
    local = series.index.tz_convert(TZ)
    return pd.Series(1, index=local).groupby(local.date).size()


def raw_json_rows(name: str) -> list[dict]:
    path = sample_path(name)
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return json.loads(data)["prices"]


def write_json(path: Path, rows: list[tuple[str, object]], year: int = 2025) -> Path:
    """A price file in the original layout: compact JSON, naive local timestamps."""
    doc = {"year": year, "count": len(rows), "prices": [{"timestamp": t, "price": p} for t, p in rows]}
    path.write_text(json.dumps(doc, separators=(",", ":")))
    return path


def write_csv(path: Path, rows: list[tuple[str, str | None, float | str]], with_utc: bool = True) -> Path:
    """A price file in the jeroen.nl layout: ';', decimal comma, quoted timestamps, EUR/kWh."""
    head = "datum_nl;datum_utc;prijs_excl_belastingen" if with_utc else "datum_nl;prijs_excl_belastingen"
    lines = [head]
    for nl, u, p in rows:
        price = p if isinstance(p, str) else f"{p:.6f}".replace(".", ",")
        lines.append(f'"{nl}";"{u}";{price}' if with_utc else f'"{nl}";{price}')
    path.write_text("\n".join(lines) + "\n")
    return path


def naive_local_rows(index: pd.DatetimeIndex, fmt: str) -> list[str]:
    """The naive local text a file in local time shows for each UTC interval (02:00 twice in autumn)."""
    return list(index.tz_convert(TZ).tz_localize(None).strftime(fmt))


# ---------------------------------------------------------------- 2024, whole year, bundled


@pytest.fixture(scope="module")
def prices_2024() -> pd.Series:
    return load_prices(sample_path("prices_2024.json.gz"))


def test_2024_whole_year_is_regular_utc(prices_2024: pd.Series) -> None:
    s = prices_2024
    assert s.name == "price_eur_per_mwh"
    assert s.dtype == float
    assert s.index.name == "time"
    assert str(s.index.tz) == "UTC"
    assert len(s) == 8784
    # Local 2024-01-01 00:00 (CET) is 2023-12-31 23:00 UTC; the file's first price is 0.1 EUR/MWh.
    assert s.index[0] == utc("2023-12-31 23:00")
    assert s.iloc[0] == pytest.approx(0.1)
    assert s.index[-1] == utc("2024-12-31 22:00")
    assert check_regular(s.index, 60, "prices").ok
    assert s.index.equals(local_days_index("2024-01-01", "2025-01-01", 60))


def test_2024_dst_days(prices_2024: pd.Series) -> None:
    counts = local_day_counts(prices_2024)
    assert counts[pd.Timestamp("2024-03-31").date()] == 23
    assert counts[pd.Timestamp("2024-10-27").date()] == 25
    assert (counts.drop([pd.Timestamp("2024-03-31").date(), pd.Timestamp("2024-10-27").date()]) == 24).all()
    # The naive 02:00 occurs twice on 2024-10-27: first summer time (00:00Z), then winter time (01:00Z).
    rows = [r for r in raw_json_rows("prices_2024.json.gz") if r["timestamp"] == "2024-10-27T02:00:00"]
    assert len(rows) == 2
    assert prices_2024[utc("2024-10-27 00:00")] == pytest.approx(rows[0]["price"])
    assert prices_2024[utc("2024-10-27 01:00")] == pytest.approx(rows[1]["price"])
    # Spring: 01:00 local (00:00Z) is followed by 03:00 local (01:00Z).
    spring = {r["timestamp"]: r["price"] for r in raw_json_rows("prices_2024.json.gz")}
    assert prices_2024[utc("2024-03-31 00:00")] == pytest.approx(spring["2024-03-31T01:00:00"])
    assert prices_2024[utc("2024-03-31 01:00")] == pytest.approx(spring["2024-03-31T03:00:00"])


def test_2024_values_in_file_order(prices_2024: pd.Series) -> None:
    # File order = time order, so the values must come out exactly in the file's order.
    expected = np.array([float(r["price"]) for r in raw_json_rows("prices_2024.json.gz")])
    np.testing.assert_array_equal(prices_2024.to_numpy(), expected)


# ---------------------------------------------------------------- 2023 DST days, bundled


def test_2023_dst_days() -> None:
    s = load_prices_json(sample_path("prices_2023_dst_days.json"))
    assert len(s) == 144
    counts = local_day_counts(s)
    assert counts[pd.Timestamp("2023-03-26").date()] == 23
    assert counts[pd.Timestamp("2023-10-29").date()] == 25
    # Each block is complete on its local days.
    for start, end in (("2023-03-25", "2023-03-28"), ("2023-10-28", "2023-10-31")):
        grid = local_days_index(start, end, 60)
        block = s[(s.index >= grid[0]) & (s.index <= grid[-1])]
        assert block.index.equals(grid)
    # Real values of the doubled hour: -1.9 (summer, 00:00Z), then -1.6 (winter, 01:00Z).
    assert s[utc("2023-10-29 00:00")] == pytest.approx(-1.9)
    assert s[utc("2023-10-29 01:00")] == pytest.approx(-1.6)
    assert s[utc("2023-10-28 23:00")] == pytest.approx(-2.8)  # 01:00 local summer time
    assert s[utc("2023-10-29 02:00")] == pytest.approx(-1.5)  # 03:00 local winter time
    # Spring: 01:00 local = 00:00Z (80.0), 03:00 local = 01:00Z (84.9).
    assert s[utc("2023-03-26 00:00")] == pytest.approx(80.0)
    assert s[utc("2023-03-26 01:00")] == pytest.approx(84.9)


# ---------------------------------------------------------------- 2022 gap, bundled


def test_2022_gap_is_reported_not_filled() -> None:
    s = load_prices(sample_path("prices_2022_dst_days.json"))
    assert len(s) == 71  # 3 local days = 24 + 25 + 24 = 73 hours, 2 missing
    report = check_regular(s.index, 60, "prices")
    assert list(report.missing) == [utc("2022-10-30 01:00"), utc("2022-10-30 21:00")]
    assert len(report.duplicates) == 0 and len(report.misaligned) == 0
    with pytest.raises(MissingDataError) as err:
        fill_gaps(s, 60, None)
    assert "2022-10-30 01:00 UTC" in str(err.value)
    assert "2022-10-30 21:00 UTC" in str(err.value)
    filled, _ = fill_gaps(s, 60, "hold")
    assert len(filled) == 73
    assert filled[utc("2022-10-30 01:00")] == pytest.approx(98.3)  # held from the single 02:00 (00:00Z)
    assert filled[utc("2022-10-30 21:00")] == pytest.approx(127.0)  # held from 21:00 local (20:00Z)


# ---------------------------------------------------------------- October 2025, 15 minutes, bundled


@pytest.fixture(scope="module")
def prices_2025_10() -> pd.Series:
    return load_prices(sample_path("prices_nl_15min_2025-10.csv.gz"))


def test_2025_10_csv(prices_2025_10: pd.Series) -> None:
    s = prices_2025_10
    assert s.name == "price_eur_per_mwh"
    assert len(s) == 2976
    assert s.index[0] == utc("2025-09-30 22:00")
    assert s.iloc[0] == pytest.approx(102.6)  # 0,102600 EUR/kWh
    assert s.index[-1] == utc("2025-10-31 22:45")
    assert s.iloc[-1] == pytest.approx(36.1)  # 0,036100 EUR/kWh
    assert np.isfinite(s.to_numpy()).all()


def test_2025_10_gap_is_reported(prices_2025_10: pd.Series) -> None:
    report = check_regular(prices_2025_10.index, 15, "prices")
    expected = pd.date_range(utc("2025-10-26 01:00"), periods=4, freq="15min")
    assert report.missing.equals(expected)
    assert len(report.duplicates) == 0 and len(report.misaligned) == 0
    # The local day 2025-10-26 has 100 quarters; 96 are in the file.
    day = local_days_index("2025-10-26", "2025-10-27", 15)
    assert len(day) == 100
    assert day.isin(prices_2025_10.index).sum() == 96
    with pytest.raises(MissingDataError) as err:
        fill_gaps(prices_2025_10, 15, None)
    for t in ("01:00", "01:15", "01:30", "01:45"):
        assert f"2025-10-26 {t} UTC" in str(err.value)


def test_2025_10_local_column_alone_gives_the_same(tmp_path: Path, prices_2025_10: pd.Series) -> None:
    # Without datum_utc the loader localises datum_nl; the single 02:xx of 2025-10-26 is summer time,
    # which is what datum_utc says too.
    text = gzip.decompress(sample_path("prices_nl_15min_2025-10.csv.gz").read_bytes()).decode()
    lines = [";".join(line.split(";")[0::2]) for line in text.splitlines()]
    path = tmp_path / "local_only.csv"
    path.write_text("\n".join(lines) + "\n")
    s = load_prices_csv(path)
    pd.testing.assert_series_equal(s, prices_2025_10)


def test_2025_10_every_local_day_has_96_quarters_except_the_dst_day(prices_2025_10: pd.Series) -> None:
    counts = local_day_counts(prices_2025_10)
    assert len(counts) == 31
    assert counts[pd.Timestamp("2025-10-26").date()] == 96  # 100 minus the 4 missing
    assert (counts.drop(pd.Timestamp("2025-10-26").date()) == 96).all()


# ---------------------------------------------------------------- fixtures in the original formats


def test_json_2025_spring_day_fixture(tmp_path: Path) -> None:
    rows = [(f"2025-03-30T{h:02d}:00:00", 50.0 + h) for h in range(24) if h != 2]
    s = load_prices_json(write_json(tmp_path / "spring.json", rows))
    assert len(s) == 23
    assert s.index.equals(local_days_index("2025-03-30", "2025-03-31", 60))
    assert s[utc("2025-03-30 00:00")] == 51.0  # 01:00 local (CET)
    assert s[utc("2025-03-30 01:00")] == 53.0  # 03:00 local (CEST)
    assert s[utc("2025-03-30 21:00")] == 73.0  # 23:00 local


def test_json_2025_autumn_day_fixture(tmp_path: Path) -> None:
    rows = [(f"2025-10-26T{h:02d}:00:00", float(h)) for h in range(3)]
    rows += [("2025-10-26T02:00:00", 2.5)] + [(f"2025-10-26T{h:02d}:00:00", float(h)) for h in range(3, 24)]
    s = load_prices_json(write_json(tmp_path / "autumn.json", rows))
    assert len(s) == 25
    assert s.index.equals(local_days_index("2025-10-26", "2025-10-27", 60))
    assert s[utc("2025-10-26 00:00")] == 2.0  # first 02:00: summer time
    assert s[utc("2025-10-26 01:00")] == 2.5  # second 02:00: winter time
    assert s[utc("2025-10-26 02:00")] == 3.0


def test_csv_spring_day_quarters_local_only_and_with_utc(tmp_path: Path) -> None:
    grid = local_days_index("2025-03-30", "2025-03-31", 15)
    assert len(grid) == 92
    nl = naive_local_rows(grid, "%Y-%m-%d %H:%M:%S")
    assert "2025-03-30 02:00:00" not in nl
    u = list(grid.tz_localize(None).strftime("%Y-%m-%d %H:%M:%S"))
    prices = [0.001 * i for i in range(len(grid))]
    both = load_prices_csv(write_csv(tmp_path / "both.csv", list(zip(nl, u, prices, strict=True))))
    local = load_prices_csv(write_csv(tmp_path / "local.csv", list(zip(nl, u, prices, strict=True)),
                                      with_utc=False))
    for s in (both, local):
        assert s.index.equals(grid)
        np.testing.assert_allclose(s.to_numpy(), np.array(prices) * 1000, rtol=0, atol=1e-9)


def test_csv_hourly_autumn_day_local_only(tmp_path: Path) -> None:
    grid = local_days_index("2024-10-27", "2024-10-28", 60)
    nl = naive_local_rows(grid, "%Y-%m-%d %H:%M:%S")
    assert nl.count("2024-10-27 02:00:00") == 2
    rows = [(t, None, 0.01 * i) for i, t in enumerate(nl)]
    s = load_prices(write_csv(tmp_path / "hourly.csv", rows, with_utc=False))
    assert s.index.equals(grid)
    assert len(local_day_counts(s)) == 1 and local_day_counts(s).iloc[0] == 25
    assert s[utc("2024-10-27 00:00")] == pytest.approx(20.0)
    assert s[utc("2024-10-27 01:00")] == pytest.approx(30.0)


def test_csv_columns_that_disagree_are_refused(tmp_path: Path) -> None:
    rows = [("2024-06-01 12:00:00", "2024-06-01 10:00:00", 0.1), ("2024-06-01 13:00:00", "2024-06-01 12:00:00", 0.1)]
    with pytest.raises(DataError, match="2024-06-01 13:00:00"):
        load_prices_csv(write_csv(tmp_path / "bad.csv", rows))


# ---------------------------------------------------------------- API layout and bad input


def test_api_layout_converts_eur_per_kwh(tmp_path: Path) -> None:
    doc = {"Prices": [{"price": 0.1234, "readingDate": "2023-12-31T23:00:00Z"},
                      {"price": -0.005, "readingDate": "2024-01-01T00:00:00Z"},
                      {"price": 0, "readingDate": "2024-01-01T02:00:00+01:00"}],
           "intervalType": 4, "average": 0.04}
    path = tmp_path / "api.json"
    path.write_text(json.dumps(doc))
    s = load_prices(path)
    assert list(s.index) == [utc("2023-12-31 23:00"), utc("2024-01-01 00:00"), utc("2024-01-01 01:00")]
    np.testing.assert_allclose(s.to_numpy(), [123.4, -5.0, 0.0])
    assert s.name == "price_eur_per_mwh"


def test_api_layout_without_offset_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "api.json"
    path.write_text(json.dumps({"Prices": [{"price": 0.1, "readingDate": "2024-01-01T00:00:00"}]}))
    with pytest.raises(DataError, match="2024-01-01T00:00:00"):
        load_prices_json(path)


def test_unknown_layout_names_the_keys(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"data": [], "tariffs": {}}))
    with pytest.raises(DataError) as err:
        load_prices_json(path)
    assert "data" in str(err.value) and "tariffs" in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("bad", ["abc", None, True, "NaN", math.inf, math.nan])
def test_bad_price_names_timestamp_and_value(tmp_path: Path, bad: object) -> None:
    rows = [("2024-06-01T00:00:00", 10.0), ("2024-06-01T01:00:00", bad)]
    path = write_json(tmp_path / "bad.json", rows, 2024)
    with pytest.raises(DataError) as err:
        load_prices_json(path)
    assert "2024-06-01T01:00:00" in str(err.value)  # as written in the file
    assert repr(bad) in str(err.value)
    assert str(path) in str(err.value)


def test_bad_csv_price_names_timestamp_and_value(tmp_path: Path) -> None:
    rows = [("2024-06-01 00:00:00", "2024-05-31 22:00:00", 0.1), ("2024-06-01 00:15:00", "2024-05-31 22:15:00", "n/a")]
    with pytest.raises(DataError) as err:
        load_prices_csv(write_csv(tmp_path / "bad.csv", rows))
    assert "2024-05-31 22:15:00" in str(err.value) and "n/a" in str(err.value)


def test_hidden_spring_hour_is_refused(tmp_path: Path) -> None:
    # 02:00 does not exist on 2024-03-31 in Amsterdam: a file showing it is misread or corrupt.
    rows = [(f"2024-03-31T{h:02d}:00:00", 1.0) for h in range(24)]
    with pytest.raises(DataError) as err:
        load_prices_json(write_json(tmp_path / "hidden.json", rows, 2024))
    assert "2024-03-31 02:00:00" in str(err.value)
    assert "does not exist" in str(err.value)


def test_three_times_0200_is_refused(tmp_path: Path) -> None:
    rows = [("2024-10-27T01:00:00", 1.0)] + [("2024-10-27T02:00:00", 2.0)] * 3
    with pytest.raises(DataError, match="more than once"):
        load_prices_json(write_json(tmp_path / "triple.json", rows, 2024))


def test_bad_timestamp_and_suffix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="2024-13-01T00:00:00"):
        load_prices_json(write_json(tmp_path / "t.json", [("2024-13-01T00:00:00", 1.0)], 2024))
    other = tmp_path / "prices.xlsx"
    other.write_text("")
    with pytest.raises(DataError, match="xlsx"):
        load_prices(other)


# ---------------------------------------------------------------- round trip, any days


DST_STARTS = ["2023-03-25", "2023-10-28", "2024-03-30", "2024-10-26", "2025-03-29", "2025-10-25", "2026-03-28"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=st.one_of(st.sampled_from(DST_STARTS),
                    st.dates(pd.Timestamp("2020-01-01").date(), pd.Timestamp("2030-12-01").date()).map(str)),
    n_days=st.integers(1, 4),
    minutes=st.sampled_from([15, 60]),
    data=st.data(),
)
def test_round_trip_original_formats(tmp_path: Path, start: str, n_days: int, minutes: int, data) -> None:
    """A file written in local time as the originals are (02:00 twice in autumn) reads back as the UTC grid."""
    end = str((pd.Timestamp(start) + pd.Timedelta(days=n_days)).date())
    grid = local_days_index(start, end, minutes)
    cents = data.draw(st.lists(st.integers(-50_000, 500_000), min_size=len(grid), max_size=len(grid)))
    eur_per_mwh = np.array(cents) / 100  # 0.01 EUR/MWh steps, as in EUR/kWh with 5 decimals
    local = naive_local_rows(grid, "%Y-%m-%dT%H:%M:%S")
    s = load_prices_json(write_json(tmp_path / "p.json", list(zip(local, eur_per_mwh.tolist(), strict=True))))
    assert s.index.equals(grid)
    np.testing.assert_array_equal(s.to_numpy(), eur_per_mwh)
    csv_rows = [(t.replace("T", " "), None, p) for t, p in zip(local, (eur_per_mwh / 1000).tolist(), strict=True)]
    c = load_prices_csv(write_csv(tmp_path / "p.csv", csv_rows, with_utc=False))
    assert c.index.equals(grid)
    np.testing.assert_allclose(c.to_numpy(), eur_per_mwh, rtol=0, atol=1e-9)
    assert check_regular(c.index, minutes, "prices").ok
