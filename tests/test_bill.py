"""Supplier monitoring end to end on real data: a month's bill rebuilt from real meter counters and real EPEX prices,
checked by hand, and invoices that differ in one known way attributed to that cause with its size.

The meter readings are REAL cumulative counters (``grid_import`` / ``grid_export``, kWh) of the OPSD household
``DE_KN_residential4`` (bundled slice, 2016; see dwars/data/samples/PROVENANCE.md), moved onto 2024 (or 2025) by a
whole number of weeks so that weekdays stay aligned: 2016-03-14 and 2024-03-11 are both Mondays, 417 weeks apart
(469 weeks to 2025-10-13). Each slice holds three weeks; a month needs more, so a second copy of the same three
weeks is laid end to end BEFORE the aligned one, its counters continued so that they meet (the copy ends where the
aligned slice begins; as the slices are 503 h and 505 h long around the DST days, that copy sits one hour off
whole weeks). No hour is invented: every interval's energy is a difference of two real readings, and the blank
readings of 2016-10-21 stay a real 13-hour gap (it lands on 2024-10-18). The prices are the bundled real 2024
hourly NL day-ahead prices and the October 2025 quarter-hour prices.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dwars.cli import main
from dwars.config import TariffConfig
from dwars.data.io import read_text, sample_path
from dwars.data.prices import load_prices
from dwars.env.tariff import Tariff
from dwars.errors import DataError
from dwars.runtime.bill import (
    Bill,
    Invoice,
    compare_invoice,
    compare_presets,
    load_invoice,
    load_readings_csv,
    month_bounds,
    parse_invoice,
    preset_tariff,
    prices_from_cache,
    reconstruct_bill,
)
from dwars.runtime.meter_log import MeterLog, meter_log_path
from dwars.timegrid import fill_gaps

TZ = "Europe/Amsterdam"
SLICE = sample_path("household_opsd_de_4_2016_slices.csv.gz")
HOUR = pd.Timedelta(hours=1)
# Frank Energie as in dwars/env/suppliers.toml, and the statutory 2024 figures, typed here from their sources:
# the hand computations below use these, not the tariff code.
FRANK_FEE, FRANK_FEED_IN, FRANK_MONTHLY = 0.015, -0.0105, 5.785124
TAX_2024, REDUCTION_2024, VAT = 0.10880, 521.81, 0.21


def opsd_counters(season: str, weeks: int = 417, copies_before: int = 1) -> pd.DataFrame:
    """Real hourly counters of the ``spring`` or ``autumn`` slice, moved ``weeks`` on (see the module text)."""
    raw = pd.read_csv(SLICE)
    time = pd.DatetimeIndex(pd.to_datetime(raw["utc_timestamp"], utc=True), name="time").as_unit("ns")
    block = pd.DataFrame({"import_kwh_total": raw["DE_KN_residential4_grid_import"].to_numpy(float),
                          "export_kwh_total": raw["DE_KN_residential4_grid_export"].to_numpy(float)}, index=time)
    block = block[(time.month >= 10) == (season == "autumn")]
    block.index = block.index + pd.Timedelta(weeks=weeks)
    assert block.index[0].tz_convert(TZ).day_name() == "Monday"  # weekdays aligned
    parts = [block]
    for _ in range(copies_before):
        ahead = parts[0]
        copy = block.copy()
        copy.index = ahead.index[0] - (block.index[-1] - block.index)  # ends where the next one begins
        copy += ahead.iloc[0] - copy.iloc[-1]  # the counters run on into the next copy
        parts.insert(0, copy.iloc[:-1])
    return pd.concat(parts)


def quarter_counters(hourly: pd.DataFrame, shape: str = "flat") -> pd.DataFrame:
    """Quarter-hour counters from hourly ones, only inside measured hours (never across a gap): ``flat`` spreads an
    hour's energy evenly over its quarters (what the hourly readings say); ``first`` puts it all in the first
    quarter (a synthetic load shape on the real hourly totals)."""
    h = hourly.dropna()
    whole = h.index[:-1][np.diff(h.index.asi8) == HOUR.value]  # hours with readings at both ends
    rows = {}
    for start in whole:
        a, b = h.loc[start].to_numpy(), h.loc[start + HOUR].to_numpy()
        for k in range(4):
            weight = k / 4 if shape == "flat" else float(k > 0)
            rows[start + pd.Timedelta(minutes=15 * k)] = a + weight * (b - a)
        rows[start + HOUR] = b
    out = pd.DataFrame.from_dict(rows, orient="index", columns=list(hourly.columns)).sort_index()
    out.index.name = "time"
    return out


@pytest.fixture(scope="module")
def prices_2024() -> pd.Series:
    return load_prices(sample_path("prices_2024.json.gz"))


@pytest.fixture(scope="module")
def prices_2025_10() -> pd.Series:
    """The October 2025 quarter-hour prices with the repeated autumn hour (missing in the file, see PROVENANCE.md)
    filled by holding the quarter before it: an explicit rule, for the tests that need a complete month."""
    prices = load_prices(sample_path("prices_nl_15min_2025-10.csv.gz"))
    start, end = month_bounds("2025-10", TZ)
    filled, report = fill_gaps(prices, 15, "hold", start=start, end=end)
    assert len(report.missing) == 4
    return filled


@pytest.fixture(scope="module")
def frank() -> Tariff:
    return Tariff.from_config(TariffConfig(supplier="frank-energie"), TZ)


@pytest.fixture(scope="module")
def october(prices_2024: pd.Series, frank: Tariff) -> tuple[pd.DataFrame, Bill]:
    readings = opsd_counters("autumn")
    return readings, reconstruct_bill(readings, prices_2024, frank, "2024-10")


@pytest.fixture(scope="module")
def march(prices_2024: pd.Series, frank: Tariff) -> tuple[pd.DataFrame, Bill]:
    readings = opsd_counters("spring")
    return readings, reconstruct_bill(readings, prices_2024, frank, "2024-03")


def full_invoice(bill: Bill, supplier: str = "frank-energie") -> Invoice:
    """An invoice giving every figure a Dutch dynamic-contract invoice shows, as ``bill`` has them."""
    return Invoice(bill.month, supplier, dict(bill.figures))


# ---------------------------------------------------------------------------------------------- reconstruction


def test_the_bill_equals_a_hand_computation_on_real_readings_and_prices(
        october: tuple[pd.DataFrame, Bill], prices_2024: pd.Series) -> None:
    readings, bill = october
    start, end = month_bounds("2024-10", TZ)
    assert (start, end) == (pd.Timestamp("2024-09-30 22:00", tz="UTC"), pd.Timestamp("2024-10-31 23:00", tz="UTC"))
    # One evening hour by hand, its price read from the raw JSON (naive local time: 19:00 CEST = 17:00 UTC).
    raw = json.loads(read_text(sample_path("prices_2024.json.gz")))["prices"]
    epex = next(p["price"] for p in raw if p["timestamp"] == "2024-10-08T19:00:00")
    t = pd.Timestamp("2024-10-08 17:00", tz="UTC")
    row = bill.intervals.loc[t]
    imported = readings.loc[t + HOUR, "import_kwh_total"] - readings.loc[t, "import_kwh_total"]
    assert row["import_kwh"] == pytest.approx(imported, abs=1e-9)
    assert row["import_eur_per_kwh"] == pytest.approx((epex / 1000 + FRANK_FEE + TAX_2024) * (1 + VAT), abs=1e-12)
    assert row["export_eur_per_kwh"] == pytest.approx((epex / 1000 + FRANK_FEED_IN) * (1 + VAT), abs=1e-12)

    # The whole month by hand: every pair of consecutive readings; the gap at the mean price of its hours.
    r = readings.dropna()
    r = r[(r.index >= start) & (r.index <= end)]
    price = prices_2024.to_dict()
    energy = export = 0.0
    for (a, ca), (b, cb) in zip(r.iloc[:-1].iterrows(), r.iloc[1:].iterrows(), strict=True):
        mean_epex = np.mean([price[a + k * HOUR] for k in range(int((b - a) / HOUR))])
        energy += (cb["import_kwh_total"] - ca["import_kwh_total"]) * (mean_epex / 1000 + FRANK_FEE + TAX_2024) * 1.21
        export += (cb["export_kwh_total"] - ca["export_kwh_total"]) * (mean_epex / 1000 + FRANK_FEED_IN) * 1.21
    fixed = FRANK_MONTHLY * 1.21
    reduction = REDUCTION_2024 * 31 / 366 * 1.21  # per day of a leap year
    assert bill.figures["energy_eur"] == pytest.approx(energy, abs=1e-9)
    assert bill.figures["export_eur"] == pytest.approx(export, abs=1e-9)
    assert bill.total_eur == pytest.approx(energy - export + fixed - reduction, abs=1e-9)
    assert sum(bill.lines.values()) == pytest.approx(bill.total_eur, abs=1e-9)
    # Frank pays VAT on export, so the VAT is 21 % of every line.
    assert bill.lines["vat"] == pytest.approx(VAT * sum(v for k, v in bill.lines.items() if k != "vat"), abs=1e-9)
    assert bill.lines["purchase_fee"] == pytest.approx(FRANK_FEE * bill.figures["import_kwh"], abs=1e-9)
    assert bill.lines["energy_tax"] == pytest.approx(TAX_2024 * bill.figures["import_kwh"], abs=1e-9)


def test_the_real_gap_is_billed_at_its_mean_price_and_reported(october: tuple[pd.DataFrame, Bill]) -> None:
    readings, bill = october
    gaps = [g for g in bill.gaps if g.kind == "gap"]
    assert len(gaps) == 1
    gap = gaps[0]
    # The blank readings of 2016-10-21 10:00Z..21:00Z, 417 weeks on: no reading between 09:00Z and 22:00Z.
    utc = pd.Timestamp("2024-10-18", tz="UTC")
    assert (gap.start, gap.end) == (utc + 9 * HOUR, utc + 22 * HOUR)
    counters = readings.loc[gap.end] - readings.loc[gap.start]
    assert gap.import_kwh == pytest.approx(counters["import_kwh_total"])
    assert gap.export_kwh == pytest.approx(counters["export_kwh_total"])
    assert gap.uncertainty_eur > 0
    text = gap.describe(TZ)
    assert "13 h" in text and f"{gap.import_kwh:.1f} kWh imported" in text and "could be up to EUR" in text
    assert bill.measured_intervals == 745 - 13 and len(bill.intervals) == 745 - 13 + 1


@pytest.mark.parametrize(("month", "season", "hours"), [("2024-03", "spring", 743), ("2024-10", "autumn", 745)])
def test_a_dst_month_has_its_real_number_of_intervals(month: str, season: str, hours: int,
                                                      prices_2024: pd.Series, frank: Tariff) -> None:
    hourly = opsd_counters(season)
    start, end = month_bounds(month, TZ)
    quarterly = quarter_counters(hourly)
    for readings, minutes, expected in ((hourly, 60, hours), (quarterly, 15, 4 * hours)):
        bill = reconstruct_bill(readings, prices_2024, frank, month)
        assert bill.minutes == minutes and bill.expected_intervals == expected
        kwh = readings.loc[end, "import_kwh_total"] - readings.loc[start, "import_kwh_total"]
        assert bill.figures["import_kwh"] == pytest.approx(kwh, abs=1e-9)  # every kWh between the month's edges
        if season == "spring":  # no blank readings in the spring slice
            assert bill.measured_intervals == expected and not bill.gaps


@pytest.mark.parametrize("prices_name", ["prices_2024", "prices_2025_10"])
def test_quarter_hour_and_hourly_readings_give_the_same_bill(prices_name: str, request: pytest.FixtureRequest,
                                                             frank: Tariff) -> None:
    # A home that logs every quarter hour and one that logs every hour, same meter: the same kWh; and with the
    # power steady within each hour (what hourly readings say), the same money at hourly and at 15-minute prices.
    prices = request.getfixturevalue(prices_name)
    month, season, weeks = ("2024-03", "spring", 417) if prices_name == "prices_2024" else ("2025-10", "autumn", 469)
    hourly = opsd_counters(season, weeks)
    by_hour = reconstruct_bill(hourly, prices, frank, month)
    by_quarter = reconstruct_bill(quarter_counters(hourly), prices, frank, month)
    for key in ("import_kwh", "export_kwh", "energy_eur", "export_eur", "total_eur"):
        assert by_quarter.figures[key] == pytest.approx(by_hour.figures[key], abs=1e-6), key
    assert by_hour.price_minutes == (60 if prices_name == "prices_2024" else 15)
    assert any("hourly" in note for note in by_hour.notes) == (by_hour.price_minutes == 15)


def test_a_meter_replacement_is_reported_and_the_rest_billed(march: tuple[pd.DataFrame, Bill],
                                                             prices_2024: pd.Series, frank: Tariff) -> None:
    readings, full = march
    swap = pd.Timestamp("2024-03-15 12:00", tz="UTC")
    replaced = readings.copy()
    after = replaced.index >= swap
    # The new meter starts at 0.000 kWh: its first reading is lower than the old meter's last.
    replaced.loc[after] = replaced.loc[after] - replaced.loc[swap]
    bill = reconstruct_bill(replaced, prices_2024, frank, "2024-03")
    lost = readings.loc[swap] - readings.loc[swap - HOUR]
    assert bill.figures["import_kwh"] == pytest.approx(full.figures["import_kwh"] - lost["import_kwh_total"])
    assert bill.figures["export_kwh"] == pytest.approx(full.figures["export_kwh"] - lost["export_kwh_total"])
    resets = [g for g in bill.gaps if g.kind == "reset"]
    assert [(g.start, g.end) for g in resets] == [(swap - HOUR, swap)]
    assert "meter replaced or reset" in resets[0].describe(TZ)


def test_readings_missing_at_the_start_of_the_month_are_named_in_the_cause(
        march: tuple[pd.DataFrame, Bill], prices_2024: pd.Series, frank: Tariff) -> None:
    readings, full = march
    first = pd.Timestamp("2024-03-03", tz=TZ).tz_convert("UTC")  # the log began on 3 March
    bill = reconstruct_bill(readings[readings.index >= first], prices_2024, frank, "2024-03")
    start, _ = month_bounds("2024-03", TZ)
    assert [(g.kind, g.start, g.end) for g in bill.gaps] == [("unmeasured", start, first)]
    missing_kwh = readings.loc[first, "import_kwh_total"] - readings.loc[start, "import_kwh_total"]
    # The supplier had the meter's whole month: its invoice is the complete bill.
    comparison = compare_invoice(bill, full_invoice(full))
    assert comparison.best is not None and comparison.best.key == "import_volume"
    assert comparison.best.size == pytest.approx(missing_kwh, abs=1e-9)
    assert "your readings miss 48 h of this month" in comparison.summary


def test_missing_prices_are_refused_naming_the_times(frank: Tariff) -> None:
    # The bundled October 2025 file lacks the repeated hour of 26 October (01:00-01:45 UTC).
    prices = load_prices(sample_path("prices_nl_15min_2025-10.csv.gz"))
    with pytest.raises(DataError, match=r"prices: 4 missing intervals \(2025-10-26 01:00 UTC \(02:00 local\)"):
        reconstruct_bill(opsd_counters("autumn", 469), prices, frank, "2025-10")


def test_bad_readings_are_refused_naming_the_time_and_value(prices_2024: pd.Series, frank: Tariff) -> None:
    readings = opsd_counters("spring")
    off_grid = readings.copy()
    off_grid.index = off_grid.index.where(off_grid.index != pd.Timestamp("2024-03-12 05:00", tz="UTC"),
                                          pd.Timestamp("2024-03-12 05:07", tz="UTC"))
    with pytest.raises(DataError, match="2024-03-12 05:07 UTC .* not an interval boundary"):
        reconstruct_bill(off_grid, prices_2024, frank, "2024-03")
    naive = readings.tz_convert(None)
    with pytest.raises(DataError, match="no UTC offset"):
        reconstruct_bill(naive, prices_2024, frank, "2024-03")
    with pytest.raises(DataError, match="month = '2024-3'"):
        reconstruct_bill(readings, prices_2024, frank, "2024-3")
    with pytest.raises(DataError, match="tax reduction of 2026 is not known"):
        reconstruct_bill(readings, prices_2024, frank, "2026-03")


# ---------------------------------------------------------------------------------------------- invoices


def _invoice_from(bill: Bill, keys: tuple[str, ...] | None = None) -> Invoice:
    figures = dict(bill.figures) if keys is None else {k: bill.figures[k] for k in keys}
    return Invoice(bill.month, "frank-energie", figures)


@pytest.mark.parametrize("change", ["purchase_fee", "supplier_fee", "grid_fee", "tax_reduction", "vat_rate",
                                    "feed_in_fee"])
def test_an_invoice_that_differs_in_one_thing_is_attributed_to_it(change: str, october: tuple[pd.DataFrame, Bill],
                                                                 frank: Tariff) -> None:
    _, bill = october
    # The supplier's invoice, made with one thing different from the preset (the size expected below).
    if change == "purchase_fee":
        theirs, expected = bill.repriced(dataclasses.replace(frank, purchase_fee_eur_per_kwh=0.025)), 0.01
    elif change == "feed_in_fee":
        theirs, expected = bill.repriced(dataclasses.replace(frank, feed_in_fee_eur_per_kwh=-0.02)), -0.0095
    elif change == "supplier_fee":
        theirs, expected = bill.repriced(frank, FRANK_MONTHLY + 2.0), 2.0 * 1.21
    elif change == "grid_fee":
        theirs, expected = bill.repriced(frank, fixed=dataclasses.replace(bill.fixed, grid_fee_eur=32.5)), 32.5 * 1.21
    elif change == "tax_reduction":  # settled in the yearly statement, not monthly
        theirs = bill.repriced(frank, fixed=dataclasses.replace(bill.fixed, tax_reduction_eur=0.0))
        expected = -REDUCTION_2024 * 31 / 366 * 1.21
    else:
        theirs, expected = bill.repriced(dataclasses.replace(frank, vat_pct=9.0)), -12.0
    comparison = compare_invoice(bill, _invoice_from(theirs))
    assert comparison.best is not None and comparison.best.key == change and not comparison.ambiguous
    assert comparison.best.size == pytest.approx(expected, abs=1e-9)
    assert comparison.difference_eur == pytest.approx(theirs.total_eur - bill.total_eur, abs=1e-9)
    assert abs(comparison.unexplained_eur) < 1e-9 and "Nothing is left unexplained" in comparison.summary
    # With the total alone the same cause fits, among others, and the comparison says it cannot tell.
    alone = compare_invoice(bill, _invoice_from(theirs, ("total_eur",)))
    assert alone.ambiguous and "cannot tell" in alone.summary
    assert any(c.key == change and c.mismatch_eur < 1e-9 for c in alone.causes)


def test_a_fee_one_cent_higher_is_named_in_cents(october: tuple[pd.DataFrame, Bill], frank: Tariff) -> None:
    _, bill = october
    theirs = bill.repriced(dataclasses.replace(frank, purchase_fee_eur_per_kwh=FRANK_FEE + 0.01))
    comparison = compare_invoice(bill, _invoice_from(theirs, ("total_eur", "import_kwh", "energy_eur", "fixed_eur")))
    assert comparison.best is not None and comparison.best.key == "purchase_fee"
    assert "a purchase fee of 2.50 ct/kWh instead of the 1.50 ct/kWh of Frank Energie" in comparison.summary
    # One cent on every imported kWh, plus 21 % VAT: the difference by hand.
    assert comparison.difference_eur == pytest.approx(0.01 * 1.21 * bill.figures["import_kwh"], abs=1e-9)


@pytest.mark.parametrize("where", ["spread", "one_hour"])
def test_ten_kwh_more_on_the_invoice_is_a_volume_mismatch(where: str, october: tuple[pd.DataFrame, Bill],
                                                          prices_2024: pd.Series, frank: Tariff) -> None:
    readings, bill = october
    start, _ = month_bounds("2024-10", TZ)
    theirs_readings = readings.copy()
    if where == "spread":  # the supplier's meter data has 10 kWh more, in the same pattern as yours
        base = readings.loc[start, "import_kwh_total"]
        theirs_readings["import_kwh_total"] = base + (readings["import_kwh_total"] - base) * (
            1 + 10.0 / bill.figures["import_kwh"])
    else:  # 10 kWh more in one evening hour
        hour = pd.Timestamp("2024-10-08 17:00", tz="UTC")
        theirs_readings.loc[theirs_readings.index > hour, "import_kwh_total"] += 10.0
    theirs = reconstruct_bill(theirs_readings, prices_2024, frank, "2024-10")
    comparison = compare_invoice(bill, _invoice_from(theirs))
    assert comparison.best is not None and comparison.best.key == "import_volume"
    assert comparison.best.size == pytest.approx(10.0, abs=1e-6)
    assert "the invoice counts 10.0 kWh more import than your meter" in comparison.summary
    mean_price = bill.figures["energy_eur"] / bill.figures["import_kwh"]
    if where == "spread":
        assert abs(comparison.unexplained_eur) < 1e-6
    else:  # that hour's price instead of the month's mean price is what is left
        price = bill.intervals.loc[hour, "import_eur_per_kwh"]
        assert comparison.unexplained_eur == pytest.approx(10.0 * (price - mean_price), abs=1e-6)


def test_hourly_pricing_of_quarter_hour_use_is_named(prices_2025_10: pd.Series, frank: Tariff) -> None:
    # Quarter-hour readings (all of each hour's import in its first quarter: a synthetic shape on the real
    # hourly energy) at the real quarter-hour prices of October 2025, against an invoice priced per hour.
    readings = quarter_counters(opsd_counters("autumn", 469), shape="first")
    bill = reconstruct_bill(readings, prices_2025_10, frank, "2025-10")
    hourly = prices_2025_10.groupby(prices_2025_10.index.floor("h")).transform("mean")
    theirs = reconstruct_bill(readings, hourly, frank, "2025-10")
    assert abs(theirs.total_eur - bill.total_eur) > 0.05  # the shape matters at quarter-hour prices
    comparison = compare_invoice(bill, _invoice_from(theirs))
    assert comparison.best is not None and comparison.best.key == "price_resolution"
    assert abs(comparison.unexplained_eur) < 1e-6 and "per hour" in comparison.summary


def test_an_invoice_that_matches_says_so(october: tuple[pd.DataFrame, Bill]) -> None:
    _, bill = october
    rounded = {k: round(v, 2) for k, v in bill.figures.items()}  # invoices print cents
    comparison = compare_invoice(bill, Invoice("2024-10", "frank-energie", rounded))
    assert comparison.best is None and "they agree" in comparison.summary


def test_the_same_month_at_every_preset(october: tuple[pd.DataFrame, Bill]) -> None:
    _, bill = october
    table = compare_presets(bill, TariffConfig(supplier="frank-energie"))
    assert "frank-energie" in table.index and "home" not in table.index and len(table) == 8
    assert table.loc["frank-energie", "vs_bill_eur"] == pytest.approx(0.0, abs=1e-9)
    assert list(table["total_eur"]) == sorted(table["total_eur"])
    # ANWB: fee 1.4876 ct excl. VAT, no feed-in fee, no VAT on export, no fixed fee (none in its preset).
    anwb = table.loc["anwb-energie"]
    imp = bill.figures["import_kwh"]
    epex_imp = bill.lines["import_epex"]  # market price of the imported kWh, the same at every supplier
    assert anwb["energy_eur"] == pytest.approx((epex_imp + (0.014876 + TAX_2024) * imp) * 1.21, abs=1e-9)
    assert anwb["export_eur"] == pytest.approx(-bill.lines["export_epex"], abs=1e-9)
    assert anwb["fixed_eur"] == 0.0
    # The home's own tariff when it is no preset; its explicit keys hold there, not at the presets.
    home = TariffConfig(supplier="custom", purchase_fee_eur_per_kwh=0.03)
    own = compare_presets(bill, home, home_monthly_fee_eur=4.0)
    assert own.loc["home", "fixed_eur"] == pytest.approx(4.0 * 1.21)
    assert preset_tariff(home, "tibber", TZ).purchase_fee_eur_per_kwh == pytest.approx(0.014876)


# ---------------------------------------------------------------------------------------------- invariants


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra_fee=st.floats(-0.03, 0.06, allow_nan=False))
def test_the_bill_is_linear_in_the_fee_and_the_attribution_recovers_it(
        extra_fee: float, march: tuple[pd.DataFrame, Bill], frank: Tariff) -> None:
    _, bill = march
    theirs = bill.repriced(dataclasses.replace(frank, purchase_fee_eur_per_kwh=FRANK_FEE + extra_fee))
    # Each imported kWh costs the extra fee plus 21 % VAT: nothing else moves.
    assert theirs.total_eur - bill.total_eur == pytest.approx(extra_fee * 1.21 * bill.figures["import_kwh"], abs=1e-9)
    comparison = compare_invoice(bill, full_invoice(theirs))
    if abs(comparison.difference_eur) >= 0.02:
        assert comparison.best is not None and comparison.best.key == "purchase_fee"
        assert comparison.best.size == pytest.approx(extra_fee, abs=1e-9)
        assert abs(comparison.unexplained_eur) < 1e-9
    else:
        assert comparison.best is None  # below a cent or two: the invoice agrees


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.integers(0, 700), hours=st.integers(2, 60))
def test_a_gap_keeps_every_kwh_and_moves_the_cost_within_its_stated_uncertainty(
        first: int, hours: int, march: tuple[pd.DataFrame, Bill], prices_2024: pd.Series, frank: Tariff) -> None:
    assume(first + hours <= 743)  # inside the month (a hole across its end leaves energy unmeasured: other test)
    readings, full = march
    start, _ = month_bounds("2024-03", TZ)
    lo = start + first * HOUR
    holed = readings[(readings.index <= lo) | (readings.index >= lo + hours * HOUR)]
    bill = reconstruct_bill(holed, prices_2024, frank, "2024-03")
    for key in ("import_kwh", "export_kwh"):
        assert bill.figures[key] == pytest.approx(full.figures[key], abs=1e-9)
    uncertainty = sum(g.uncertainty_eur for g in bill.gaps)
    assert abs(bill.total_eur - full.total_eur) <= uncertainty + 1e-9


# ---------------------------------------------------------------------------------------------- files and CLI


def test_the_invoice_file_is_checked_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "invoice.toml"
    path.write_text('month = "2024-10"\nsupplier = "frank-energie"\ntotal_eur = 61.23\nimport_kwh = 330\n')
    invoice = load_invoice(path)
    assert invoice.figures == {"total_eur": 61.23, "import_kwh": 330.0} and invoice.supplier == "frank-energie"
    base = {"month": "2024-10", "supplier": "frank-energie", "total_eur": 10.0}
    for doc, message in (({**base, "totaal": 1}, "unknown key totaal"),
                         ({k: v for k, v in base.items() if k != "total_eur"}, "total_eur is missing"),
                         ({**base, "supplier": "vattenfall"}, "supplier = 'vattenfall'"),
                         ({**base, "month": "oktober"}, "month = 'oktober'"),
                         ({**base, "import_kwh": "330"}, "import_kwh = '330': must be a number"),
                         ({**base, "export_kwh": -1.0}, "export_kwh = -1.0: must be >= 0")):
        with pytest.raises(DataError, match=message):
            parse_invoice(doc, "invoice.toml")


def _home(tmp_path: Path) -> Path:
    config = tmp_path / "home.toml"
    text = (Path(__file__).resolve().parents[1] / "examples" / "home.toml").read_text()
    config.write_text(text.replace('supplier = "custom"', 'supplier = "frank-energie"')
                      .replace("vat_pct = 21\n", "").replace("purchase_fee_eur_per_kwh = 0.02 ", "# ")
                      .replace("feed_in_fee_eur_per_kwh = 0.0 ", "# ").replace("export_vat = false ", "# ")
                      + '\n[runtime]\ndata_dir = "data"\n')
    return config


def test_dwars_bill_prints_the_bill_the_cause_and_the_presets(tmp_path: Path, october: tuple[pd.DataFrame, Bill],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    readings, bill = october
    config = _home(tmp_path)
    csv = tmp_path / "readings.csv"
    out = readings.dropna().copy()
    out.index = out.index.tz_convert(TZ)  # local times with their offset, as a home owner's export has them
    out.to_csv(csv, index_label="time", float_format="%.3f")
    assert load_readings_csv(csv).index[0] == readings.index[0]
    fixed = round(bill.figures["fixed_eur"] + 3.0, 2)  # the supplier charged EUR 3 more fixed fee
    invoice = tmp_path / "invoice.toml"
    invoice.write_text(f'month = "2024-10"\nsupplier = "frank-energie"\ntotal_eur = {bill.total_eur + 3.0:.2f}\n'
                       f'import_kwh = {bill.figures["import_kwh"]:.0f}\nfixed_eur = {fixed:.2f}\n')
    code = main(["bill", "--config", str(config), "--readings", str(csv), "--prices", "sample:prices_2024.json.gz",
                 "--invoice", str(invoice)])
    text = capsys.readouterr().out
    assert code == 0
    for expected in ("Bill for 2024-10 at frank-energie", "Energy tax (energiebelasting)", f"{bill.total_eur:,.2f}",
                     "732 of 745 measured", "Possible causes", "supplier fee", "Most likely cause (it explains EUR "
                     "+3.00): the supplier's fixed fee: EUR", "at each supplier preset", "ANWB Energie (anwb-energie)"):
        assert expected in " ".join(text.split()), expected


def test_dwars_bill_reads_the_meter_log_and_the_price_cache(tmp_path: Path, march: tuple[pd.DataFrame, Bill],
                                                            prices_2024: pd.Series,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    readings, bill = march
    config = _home(tmp_path)
    with MeterLog(meter_log_path(tmp_path / "data")) as meter_log:
        for when, row in readings.iterrows():
            meter_log.record(when, row["import_kwh_total"], row["export_kwh_total"])
    # The runtime's EnergyZero cache: one file per local day, {"Prices": [{"readingDate": UTC, "price": EUR/kWh}]}.
    cache = tmp_path / "data" / "prices"
    cache.mkdir()
    start, end = month_bounds("2024-03", TZ)
    for day in pd.date_range("2024-03-01", "2024-03-31", freq="D"):
        lo, hi = day.tz_localize(TZ).tz_convert("UTC"), (day + pd.Timedelta(days=1)).tz_localize(TZ).tz_convert("UTC")
        rows = prices_2024[(prices_2024.index >= lo) & (prices_2024.index < hi)]
        (cache / f"prices_{day.date()}.json").write_text(json.dumps(
            {"Prices": [{"readingDate": t.isoformat(), "price": v / 1000} for t, v in rows.items()]}))
    cached = prices_from_cache(cache, "2024-03", TZ)
    assert len(cached) == 743 and cached.index[0] == start and cached.index[-1] == end - HOUR
    assert main(["bill", "--config", str(config), "--month", "2024-03", "--supplier", "frank-energie"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"Total incl. VAT │ {bill.total_eur:,.2f}" in text and "743 of 743 measured" in text
    assert "at each supplier preset" not in text  # one supplier asked for
    (cache / "prices_2024-03-05.json").unlink()
    assert main(["bill", "--config", str(config), "--month", "2024-03"]) == 2
    assert "have no EPEX price" in capsys.readouterr().err
    assert main(["bill", "--config", str(config)]) == 2
    assert "--month: give the month" in capsys.readouterr().err


def test_energy_tax_reduction_default_is_the_2024_statutory_figure(october: tuple[pd.DataFrame, Bill]) -> None:
    _, bill = october
    assert bill.fixed.tax_reduction_eur == pytest.approx(521.81 * 31 / 366)
    assert math.isclose(bill.figures["tax_reduction_eur"], bill.fixed.tax_reduction_eur * 1.21)
