"""Supplier monitoring: a month's electricity bill rebuilt from the P1 meter's counters and the EPEX prices, and
compared with the supplier's invoice, with the difference and its most likely cause in plain words.

The reconstruction
------------------
Readings are the meter's CUMULATIVE counters (``import_kwh_total``, ``export_kwh_total``, kWh) at interval
boundaries on a UTC index, every 15 or 60 minutes (the runtime's :mod:`~dwars.runtime.meter_log`, or a CSV,
:func:`load_readings_csv`). The energy between two readings is the difference of the counters. Each interval is
priced with :meth:`Tariff.import_price <dwars.env.tariff.Tariff.import_price>` / ``export_price`` at the EPEX
price of that interval (15-minute or hourly prices, EUR/MWh); the invoice lines (market price, purchase fee,
energy tax, feed-in fee, VAT) are read off the same methods with parts of the tariff set to zero, so no tariff
formula is written twice. Fixed lines are added for the calendar month (local time): the supplier's fee
(``monthly_fee_eur`` of the preset, excl. VAT), the grid operator's fixed costs (netbeheerkosten, EUR a month
excl. VAT, a user input: they depend on the grid operator and the connection) and the energy tax reduction
(vermindering energiebelasting, EUR a year excl. VAT, settled per day), all with VAT.

What the readings cannot say is reported, never papered over:

- a gap (readings missing inside the month): its energy is known from the counters on either side, its timing
  is not. It is priced at the gap's mean price, and the bill says how many kWh that concerns and how far the
  cost could be off (all of it at the gap's cheapest or dearest interval).
- the month's first or last hours without any reading: their energy is not in the bill (the invoice has it).
- a counter that goes down (meter replaced or reset): the energy of that interval is unknown and left out.
- hourly readings with 15-minute prices: each hour is priced at the mean of its quarters (as if the power was
  steady over the hour).
- missing prices for measured intervals are an error that names the times.

The invoice (TOML)
------------------
::

    month = "2024-05"             # required: the calendar month, local time
    supplier = "frank-energie"    # required: a preset id (dwars/env/suppliers.toml), or "home" (your [tariff])
    total_eur = 61.23             # required: the electricity total incl. VAT
    import_kwh = 301.2            # optional, kWh delivered (levering)
    export_kwh = 120.4            # optional, kWh fed in (teruglevering)
    energy_eur = 80.10            # optional, the delivered kWh: market price + purchase fee + energy tax, incl. VAT
    export_eur = 10.20            # optional, compensation for fed-in kWh (positive = you received it), incl. VAT
    fixed_eur = 7.00              # optional, the supplier's fixed fee (vaste leveringskosten), incl. VAT
    grid_eur = 39.12              # optional, the grid operator's costs (netbeheerkosten), incl. VAT
    tax_reduction_eur = 52.61     # optional, vermindering energiebelasting (positive), incl. VAT
    vat_eur = 10.00               # optional, the VAT (btw) in the total

All amounts are incl. VAT, as the invoice's totals are. ``total = energy - export + fixed + grid -
tax_reduction``.

The cause of a difference
-------------------------
:func:`compare_invoice` tries one cause at a time: more or less import or export than the meter measured, a
different purchase fee or feed-in fee, a different supplier fee, grid costs or tax reduction, another VAT rate,
or (with quarter-hour readings and prices) pricing per hour instead of per quarter hour. Each cause changes the
invoice's figures in its own pattern (found by pricing the month again with that one thing changed); its size is
read from the invoice line it alone moves when the invoice gives that line (``import_kwh`` for the import
volume, ``fixed_eur`` for the supplier fee, ...), else fitted by least squares to the figures the invoice gives.
The cause that leaves the smallest mismatch over those figures (kWh weighted by the mean price) explains the
difference best; what it does not explain is reported as unexplained. When the invoice gives only its total,
several causes fit exactly and the comparison says so: give the invoice's lines to tell them apart.
"""

from __future__ import annotations

import calendar
import io
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dwars.config import TariffConfig
from dwars.data.io import read_text
from dwars.env.tariff import Tariff, supplier_presets
from dwars.errors import DataError
from dwars.timegrid import GapReport, format_time, infer_resolution, to_utc

#: Energy tax reduction per electricity connection of a dwelling (vermindering energiebelasting), EUR per year
#: EXCLUDING VAT. 2023: 493.27 and 2024: 521.81 (Engie, "Wijzigingen energiebelasting 2024",
#: engie.nl/zakelijk/klantenservice/energiebelasting/wijzigingen; 521.81 x 1.21 = 631.39 incl. VAT, the figure
#: jeroen.nl/blog/wijzigingen-energie-belastingen-2024 quotes: 631.39 is INCLUDING VAT); 2024 raised
#: retroactively from 521.78 to 521.81 (Deloitte, Belastingplan 2025 overview). 2025: 524.95 (letter of the
#: State Secretary of Finance to the Tweede Kamer, 2025-06-27, 2025D30581). Other years: give it yourself.
ENERGY_TAX_REDUCTION_EUR_PER_YEAR: dict[int, float] = {2023: 493.27, 2024: 521.81, 2025: 524.95}

#: The bill's lines, EUR excl. VAT (positive = you pay), then the VAT; their sum is the total.
LINES: dict[str, str] = {
    "import_epex": "Electricity used: market price (EPEX)",
    "purchase_fee": "Supplier purchase fee (inkoopvergoeding)",
    "energy_tax": "Energy tax (energiebelasting)",
    "export_epex": "Electricity fed in: market price",
    "feed_in_fee": "Feed-in fee or cost (terugleververgoeding)",
    "supplier_fee": "Supplier fixed fee (vaste leveringskosten)",
    "grid_fee": "Grid operator fixed costs (netbeheerkosten)",
    "tax_reduction": "Energy tax reduction (vermindering energiebelasting)",
    "vat": "VAT (btw)",
}

#: The figures an invoice may give (all incl. VAT); ``total_eur`` is required.
INVOICE_FIGURES: dict[str, str] = {
    "total_eur": "Total, EUR incl. VAT",
    "import_kwh": "Import (levering), kWh",
    "export_kwh": "Export (teruglevering), kWh",
    "energy_eur": "Import costs, EUR incl. tax and VAT",
    "export_eur": "Export compensation, EUR",
    "fixed_eur": "Supplier fixed fee, EUR",
    "grid_eur": "Grid operator costs, EUR",
    "tax_reduction_eur": "Energy tax reduction, EUR",
    "vat_eur": "VAT, EUR",
}
_KWH_FIGURES = ("import_kwh", "export_kwh")
_QUARTER = pd.Timedelta(minutes=15)


# ================================================================================================= readings


def month_bounds(month: str, tz: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """UTC instants of local midnight on the first of ``month`` (``YYYY-MM``) and of the month after."""
    try:
        first = pd.Timestamp(f"{month}-01")
    except ValueError:
        first = None
    if first is None or len(month) != 7 or first.strftime("%Y-%m") != month:
        raise DataError(f"month = {month!r}: write it as YYYY-MM, e.g. 2024-05")
    start = first.tz_localize(tz)
    return start.tz_convert("UTC"), (start + pd.offsets.MonthBegin(1)).tz_convert("UTC")


def load_readings_csv(path: str | Path) -> pd.DataFrame:
    """Meter counters from a CSV with columns ``time`` (ISO 8601 with offset, the interval boundary),
    ``import_kwh_total`` and ``export_kwh_total`` (kWh, cumulative), e.g.
    ``2024-05-01T00:00:00+02:00,12034.512,8120.004``.

    Raises
    ------
    DataError
        for a missing column or a time without offset (naming it); the values are checked by the bill.
    """
    text = read_text(path)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{path}: not a readings CSV ({err})") from None
    need = ("time", "import_kwh_total", "export_kwh_total")
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: column {', '.join(missing)} missing; a readings CSV has {', '.join(need)} "
                        f"(found {', '.join(frame.columns)})")
    times = []
    for text_time in frame["time"]:
        try:
            ts = pd.Timestamp(text_time.strip())
        except ValueError:
            raise DataError(f"{path}: time = {text_time!r}: not an ISO 8601 time") from None
        if ts.tzinfo is None:
            raise DataError(f"{path}: time = {text_time!r}: has no UTC offset (write 2024-05-01T00:00:00+02:00)")
        times.append(ts.tz_convert("UTC"))
    out = pd.DataFrame(index=pd.DatetimeIndex(times, name="time").as_unit("ns"))
    for col in need[1:]:
        values = pd.to_numeric(frame[col].str.strip().replace("", np.nan), errors="coerce")
        bad = values.isna() & (frame[col].str.strip() != "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{path}: {col} = {frame[col].iloc[i]!r} at {frame['time'].iloc[i]}: not a number (kWh)")
        out[col] = values.to_numpy(dtype=float)
    return out


def _clean_readings(readings: pd.DataFrame) -> pd.DataFrame:
    """The two counters on a sorted UTC index, blank rows dropped; refuses what cannot be a meter log."""
    for col in ("import_kwh_total", "export_kwh_total"):
        if col not in readings.columns:
            raise DataError(f"readings: column {col} missing (found {', '.join(map(str, readings.columns))})")
    index = to_utc(pd.DatetimeIndex(readings.index), "readings: time")
    frame = pd.DataFrame({c: readings[c].to_numpy(dtype=float) for c in ("import_kwh_total", "export_kwh_total")},
                         index=index).dropna()  # a blank reading is a missing one: the gap shows it
    frame = frame.sort_index()
    if frame.index.has_duplicates:
        dup = frame.index[frame.index.duplicated()][0]
        raise DataError(f"readings: time {format_time(dup)} occurs more than once")
    off = frame.index[frame.index.asi8 % _QUARTER.value != 0]
    if len(off):
        raise DataError(f"readings: time {format_time(off[0])} is not an interval boundary (readings are the counters "
                        f"at whole quarter hours; {len(off)} such rows)")
    values = frame.to_numpy()
    if not np.isfinite(values).all() or (values < 0).any():
        row = int(np.flatnonzero(~(np.isfinite(values) & (values >= 0)).all(axis=1))[0])
        raise DataError(f"readings: counters {values[row].tolist()} at {format_time(frame.index[row])}: must be "
                        "numbers >= 0 (kWh)")
    return frame


@dataclass(frozen=True)
class Gap:
    """A stretch of the month whose energy, or its timing, the readings do not give.

    Attributes
    ----------
    start, end : UTC.
    kind : ``gap`` (no readings inside: energy known, timing not, priced at the mean price), ``unmeasured`` (no
        reading before or after it in the month: energy unknown, not in the bill), ``reset`` (a counter went
        down: the energy of the interval is unknown, not in the bill).
    import_kwh, export_kwh : the energy in it where known (0 where not).
    uncertainty_eur : how far the cost of a gap could be off: all of its energy at its dearest or cheapest
        interval instead of at the mean price (NaN: the energy itself is unknown).
    """

    start: pd.Timestamp
    end: pd.Timestamp
    kind: str
    import_kwh: float
    export_kwh: float
    uncertainty_eur: float

    @property
    def hours(self) -> float:
        return (self.end - self.start) / pd.Timedelta(hours=1)

    def describe(self, tz: str) -> str:
        """One sentence for the home owner."""
        lo, hi = self.start.tz_convert(tz), self.end.tz_convert(tz)
        when = f"{lo:%d %b %H:%M} to {hi:%d %b %H:%M}"
        if self.kind == "gap":
            return (f"no readings from {when} ({self.hours:g} h): the {self.import_kwh:.1f} kWh imported and "
                    f"{self.export_kwh:.1f} kWh exported then are known from the counters, but not when; priced at "
                    f"the mean price of those hours, which could be up to EUR {self.uncertainty_eur:.2f} off")
        if self.kind == "reset":
            return (f"a meter counter went down between {when} (meter replaced or reset): the energy of those "
                    f"{self.hours:g} h is unknown and not in this bill")
        return f"no readings from {when} ({self.hours:g} h): the energy used then is not in this bill"


# ================================================================================================= the bill


@dataclass(frozen=True)
class FixedCosts:
    """The month's fixed amounts, EUR excl. VAT."""

    supplier_fee_eur: float
    grid_fee_eur: float
    tax_reduction_eur: float  # positive: what is taken off


@dataclass(frozen=True)
class Bill:
    """A month's electricity bill as rebuilt from the meter (see the module text).

    Attributes
    ----------
    month, tariff : what was billed and at which tariff (``tariff.supplier`` names the preset).
    start, end : the month in UTC (local midnights).
    minutes : the readings' interval length; ``price_minutes`` the prices'.
    intervals : one row per stretch between two readings inside the month (index ``time`` = UTC start): ``end``,
        ``kind`` (measured / gap), ``import_kwh``, ``export_kwh``, ``epex_eur_per_mwh`` (the mean over the
        stretch), ``import_eur_per_kwh``, ``export_eur_per_kwh`` (incl. VAT where due).
    lines : EUR per line of :data:`LINES` (excl. VAT; ``vat`` the VAT), positive = you pay.
    figures : the invoice figures of :data:`INVOICE_FIGURES` as this bill has them (incl. VAT).
    expected_intervals : how many intervals of ``minutes`` the month has (fewer or more on DST months).
    gaps : what the readings do not give (see :class:`Gap`).
    notes : other things a home owner should know about this reconstruction.
    """

    month: str
    tariff: Tariff
    start: pd.Timestamp
    end: pd.Timestamp
    minutes: int
    price_minutes: int
    intervals: pd.DataFrame
    lines: dict[str, float]
    figures: dict[str, float]
    fixed: FixedCosts
    expected_intervals: int
    gaps: tuple[Gap, ...]
    notes: tuple[str, ...]
    epex_15: pd.Series = field(repr=False)  # EPEX on the month's quarter-hour grid (NaN where not needed)

    @property
    def total_eur(self) -> float:
        return self.figures["total_eur"]

    @property
    def measured_intervals(self) -> int:
        return int((self.intervals["kind"] == "measured").sum())

    def repriced(self, tariff: Tariff, monthly_fee_eur: float | None = None, *, epex_15: pd.Series | None = None,
                 import_scale: float = 1.0, export_scale: float = 1.0, fixed: FixedCosts | None = None) -> Bill:
        """The same month and readings at another tariff (``monthly_fee_eur`` None: that supplier's preset fee),
        other prices or scaled volumes; the grid costs and tax reduction stay unless ``fixed`` is given."""
        fee = tariff.monthly_fee_eur() if monthly_fee_eur is None else float(monthly_fee_eur)
        fixed = fixed or replace(self.fixed, supplier_fee_eur=fee)
        spans = self.intervals[["end", "kind", "import_kwh", "export_kwh"]].copy()
        spans["import_kwh"] *= import_scale
        spans["export_kwh"] *= export_scale
        return _priced(self.month, spans, self.epex_15 if epex_15 is None else epex_15, tariff, fixed, self.start,
                       self.end, self.minutes, self.price_minutes, self.expected_intervals,
                       tuple(g for g in self.gaps if g.kind != "gap"), self.notes)


def _tax_reduction_eur(start_local: pd.Timestamp, days: int, per_year: float | None) -> float:
    year = start_local.year
    if per_year is None:
        if year not in ENERGY_TAX_REDUCTION_EUR_PER_YEAR:
            raise DataError(f"tax_reduction_eur_per_year: the energy tax reduction of {year} is not known to dwars; "
                            "give it (EUR a year excl. VAT, from your supplier's tariff sheet; 0 when your supplier "
                            "settles it in the yearly statement)")
        per_year = ENERGY_TAX_REDUCTION_EUR_PER_YEAR[year]
    if not (math.isfinite(per_year) and per_year >= 0):
        raise DataError(f"tax_reduction_eur_per_year = {per_year}: must be a number >= 0 (EUR a year excl. VAT)")
    # Settled per day of supply, as suppliers do: a month's share is its days over the year's days.
    return per_year * days / (366 if calendar.isleap(year) else 365)


def reconstruct_bill(readings: pd.DataFrame, prices: pd.Series, tariff: Tariff, month: str, *,
                     monthly_fee_eur: float | None = None, grid_fee_eur_per_month: float = 0.0,
                     tax_reduction_eur_per_year: float | None = None) -> Bill:
    """A month's bill from meter counters and EPEX prices.

    Parameters
    ----------
    readings : cumulative ``import_kwh_total`` and ``export_kwh_total`` (kWh) at interval boundaries, UTC index
        (15-minute or hourly; :meth:`MeterLog.readings <dwars.runtime.meter_log.MeterLog.readings>`,
        :func:`load_readings_csv`). Readings outside the month are used only to split a gap across its edge.
    prices : EPEX EUR/MWh per interval start (UTC), 15-minute or hourly (:func:`dwars.data.prices.load_prices`).
    tariff : the supplier preset or the home's tariff (:meth:`Tariff.from_config`).
    month : ``YYYY-MM``, a calendar month on ``tariff.timezone``.
    monthly_fee_eur : the supplier's fixed fee, EUR a month excl. VAT; None: the preset's
        (:meth:`Tariff.monthly_fee_eur`).
    grid_fee_eur_per_month : the grid operator's fixed costs (netbeheerkosten), EUR a month excl. VAT.
    tax_reduction_eur_per_year : vermindering energiebelasting, EUR a year excl. VAT; None: the statutory
        figure of the year (:data:`ENERGY_TAX_REDUCTION_EUR_PER_YEAR`); 0: not on this invoice.

    Raises
    ------
    DataError
        for unusable readings (naming the time and value), fewer than two readings around the month, or prices
        missing for measured intervals (naming the times).
    """
    tz = tariff.timezone
    start, end = month_bounds(month, tz)
    if not (math.isfinite(grid_fee_eur_per_month) and grid_fee_eur_per_month >= 0):
        raise DataError(f"grid_fee_eur_per_month = {grid_fee_eur_per_month}: must be a number >= 0 (EUR excl. VAT)")
    fee = tariff.monthly_fee_eur() if monthly_fee_eur is None else float(monthly_fee_eur)
    if not math.isfinite(fee):
        raise DataError(f"monthly_fee_eur = {monthly_fee_eur}: must be a number (EUR a month excl. VAT)")
    local = start.tz_convert(tz)
    days = calendar.monthrange(local.year, local.month)[1]
    fixed = FixedCosts(fee, float(grid_fee_eur_per_month), _tax_reduction_eur(local, days, tax_reduction_eur_per_year))
    counters = _clean_readings(readings)
    spans, minutes, gaps = _spans(counters, start, end, month)
    epex_15, price_minutes = _quarter_prices(prices, spans, start, end, tz)
    notes = []
    if minutes == 60 and price_minutes == 15:
        notes.append("your readings are hourly and the prices per quarter hour: each hour is priced at the mean of "
                     "its four quarter-hour prices, as if you used the same power all hour; your supplier uses the "
                     "meter's quarter-hour values, so expect a small difference")
    if monthly_fee_eur is None and tariff.supplier == "custom":
        notes.append("tariff 'custom' has no supplier fixed fee; give your contract's monthly fee to include it")
    return _priced(month, spans, epex_15, tariff, fixed, start, end, minutes, price_minutes,
                   int((end - start) / pd.Timedelta(minutes=minutes)), tuple(gaps), tuple(notes))


def _spans(counters: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp,
           month: str) -> tuple[pd.DataFrame, int, list[Gap]]:
    """The stretches between readings clipped to [start, end), their energy, the readings' interval length and
    what is unmeasured or reset (see :class:`Gap`)."""
    t = counters.index
    inside = (t >= start) & (t <= end)
    before = np.flatnonzero(t < start)[-1:]
    after = np.flatnonzero(t > end)[:1]
    use = counters.iloc[np.concatenate([before, np.flatnonzero(inside), after])]
    if len(use) < 2:
        raise DataError(f"readings: {len(use)} meter reading(s) in and around {month}; a bill needs the counters at "
                        "two moments at least")
    ns = use.index.as_unit("ns").asi8
    a, b = ns[:-1], ns[1:]
    counts = use.to_numpy()
    d_import, d_export = np.diff(counts[:, 0]), np.diff(counts[:, 1])
    in_month = (b > start.value) & (a < end.value)
    steps_min = (b - a) // 60_000_000_000
    values, n = np.unique(steps_min[in_month], return_counts=True)
    common = int(values[np.argmax(n)]) if len(values) else 60
    # Only two readings, or a log with more gaps than readings: the coarsest grid the readings fit.
    minutes = common if common in (15, 60) else (60 if np.all(steps_min % 60 == 0) else 15)
    lo, hi = np.maximum(a, start.value), np.minimum(b, end.value)
    share = (hi - lo) / (b - a)  # < 1 where a gap crosses the month's edge: its energy is split by time
    reset = (d_import < 0) | (d_export < 0)
    kind = np.where((steps_min > minutes) | (share < 1.0), "gap", "measured")

    def utc(x: np.ndarray) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(pd.to_datetime(x, unit="ns", utc=True), name="time")

    gaps = [Gap(utc(lo)[i], utc(hi)[i], "reset", 0.0, 0.0, math.nan) for i in np.flatnonzero(in_month & reset)]
    keep = in_month & ~reset
    spans = pd.DataFrame({"end": utc(hi[keep]), "kind": kind[keep], "import_kwh": (d_import * share)[keep],
                          "export_kwh": (d_export * share)[keep]}, index=utc(lo[keep]))
    first, last = use.index[0], use.index[-1]
    if first > start:
        gaps.append(Gap(start, min(first, end), "unmeasured", 0.0, 0.0, math.nan))
    if last < end:
        gaps.append(Gap(max(last, start), end, "unmeasured", 0.0, 0.0, math.nan))
    if not len(spans):
        raise DataError(f"readings: none of the readings around {month} gives energy inside the month")
    return spans, minutes, gaps


def _quarter_prices(prices: pd.Series, spans: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp,
                    tz: str) -> tuple[pd.Series, int]:
    """EPEX (EUR/MWh) on the month's quarter-hour grid (an hour's price held over its quarters), and the prices'
    interval length; refuses, naming them, prices missing where energy was measured."""
    series = pd.Series(np.asarray(prices, dtype=float), index=to_utc(pd.DatetimeIndex(prices.index), "prices: time"))
    series = series[(series.index >= start - pd.Timedelta(hours=1)) & (series.index < end)].sort_index()
    if series.index.has_duplicates:
        raise DataError(f"prices: time {format_time(series.index[series.index.duplicated()][0], tz)} occurs twice")
    price_minutes = infer_resolution(series.index) if len(series) >= 2 else 60
    grid = pd.date_range(start, end, freq=_QUARTER, inclusive="left", name="time")
    # An interval's price covers its quarters: ffill within one price interval, never across a missing one.
    epex = series.reindex(grid, method="ffill", tolerance=pd.Timedelta(minutes=price_minutes) - pd.Timedelta(1))
    needed = np.zeros(len(grid), dtype=bool)
    first = grid.get_indexer(spans.index)
    last = grid.get_indexer(pd.DatetimeIndex(spans["end"]) - _QUARTER)
    for i, j in zip(first, last, strict=True):
        needed[i:j + 1] = True
    missing = grid[needed & epex.isna().to_numpy()]
    if len(missing):
        shown = pd.DatetimeIndex(missing.floor(f"{price_minutes}min").unique())
        empty = pd.DatetimeIndex([], tz="UTC")
        raise DataError(GapReport("prices", price_minutes, shown, empty, empty).describe(tz) +
                        " have no EPEX price; the bill needs a price for every interval with readings")
    return epex, price_minutes


def _span_mean(epex_15: pd.Series, spans: pd.DataFrame) -> np.ndarray:
    """Mean EPEX over each stretch's quarters (a gap's energy is priced at the gap's mean price)."""
    values = np.nan_to_num(epex_15.to_numpy())  # NaN only where no stretch needs a price
    cum = np.concatenate([[0.0], np.cumsum(values)])
    i = epex_15.index.get_indexer(spans.index)
    j = epex_15.index.get_indexer(pd.DatetimeIndex(spans["end"]) - _QUARTER) + 1
    return (cum[j] - cum[i]) / (j - i)


def _zeroed(tariff: Tariff) -> tuple[Tariff, Tariff, Tariff]:
    """The tariff without VAT; also without energy tax; also without the supplier's fees: the differences of
    their prices are the invoice lines, so each line comes from :class:`Tariff` itself."""
    no_vat = replace(tariff, vat_pct=0.0)
    no_tax = replace(no_vat, energy_tax_eur_per_kwh=0.0)
    bare = replace(no_tax, purchase_fee_eur_per_kwh=0.0, feed_in_fee_eur_per_kwh=0.0)
    return no_vat, no_tax, bare


def _priced(month: str, spans: pd.DataFrame, epex_15: pd.Series, tariff: Tariff, fixed: FixedCosts,
            start: pd.Timestamp, end: pd.Timestamp, minutes: int, price_minutes: int, expected: int,
            unknown: tuple[Gap, ...], notes: tuple[str, ...]) -> Bill:
    times = pd.DatetimeIndex(spans.index)
    epex = _span_mean(epex_15, spans)
    imp, exp = spans["import_kwh"].to_numpy(), spans["export_kwh"].to_numpy()
    no_vat, no_tax, bare = _zeroed(tariff)
    parts = {"full": tariff, "no_vat": no_vat, "no_tax": no_tax, "bare": bare}
    ip = {k: tf.import_price(epex, times) for k, tf in parts.items()}  # EUR/kWh per stretch
    ep = {k: tf.export_price(epex, times) for k, tf in parts.items()}
    vat_fixed = float(tariff.vat_factor(pd.DatetimeIndex([start]))[0]) - 1.0
    fixed_net = fixed.supplier_fee_eur + fixed.grid_fee_eur - fixed.tax_reduction_eur
    lines = {
        "import_epex": float(imp @ ip["bare"]),
        "purchase_fee": float(imp @ (ip["no_tax"] - ip["bare"])),
        "energy_tax": float(imp @ (ip["no_vat"] - ip["no_tax"]) - exp @ (ep["no_vat"] - ep["no_tax"])),
        "export_epex": -float(exp @ ep["bare"]),
        "feed_in_fee": -float(exp @ (ep["no_tax"] - ep["bare"])),
        "supplier_fee": fixed.supplier_fee_eur,
        "grid_fee": fixed.grid_fee_eur,
        "tax_reduction": -fixed.tax_reduction_eur,
        "vat": float(imp @ (ip["full"] - ip["no_vat"]) - exp @ (ep["full"] - ep["no_vat"]) + fixed_net * vat_fixed),
    }
    figures = {
        "import_kwh": float(imp.sum()),
        "export_kwh": float(exp.sum()),
        "energy_eur": float(imp @ ip["full"]),
        "export_eur": float(exp @ ep["full"]),
        "fixed_eur": fixed.supplier_fee_eur * (1 + vat_fixed),
        "grid_eur": fixed.grid_fee_eur * (1 + vat_fixed),
        "tax_reduction_eur": fixed.tax_reduction_eur * (1 + vat_fixed),
        "vat_eur": lines["vat"],
    }
    figures["total_eur"] = (figures["energy_eur"] - figures["export_eur"] + figures["fixed_eur"] + figures["grid_eur"]
                            - figures["tax_reduction_eur"])
    intervals = spans.assign(epex_eur_per_mwh=epex, import_eur_per_kwh=ip["full"], export_eur_per_kwh=ep["full"])
    # The unknown stretches (unmeasured, reset) stay as they are; a gap's cost range depends on the tariff.
    gaps = tuple(sorted((*unknown, *_stretch_gaps(intervals, epex_15, tariff)), key=lambda g: g.start))
    return Bill(month, tariff, start, end, minutes, price_minutes, intervals, lines, figures, fixed, expected, gaps,
                notes, epex_15)


def _stretch_gaps(intervals: pd.DataFrame, epex_15: pd.Series, tariff: Tariff) -> tuple[Gap, ...]:
    """A :class:`Gap` per stretch of kind ``gap``, with the cost range of its energy over its own prices."""
    out = []
    for start, row in intervals[intervals["kind"] == "gap"].iterrows():
        quarters = epex_15[(epex_15.index >= start) & (epex_15.index < row["end"])]
        times = pd.DatetimeIndex(quarters.index)
        imp_p = tariff.import_price(quarters.to_numpy(), times)
        exp_p = tariff.export_price(quarters.to_numpy(), times)
        at_imp, at_exp = row["import_eur_per_kwh"], row["export_eur_per_kwh"]
        spread = (row["import_kwh"] * max(imp_p.max() - at_imp, at_imp - imp_p.min())
                  + row["export_kwh"] * max(exp_p.max() - at_exp, at_exp - exp_p.min()))
        out.append(Gap(pd.Timestamp(start), pd.Timestamp(row["end"]), "gap", float(row["import_kwh"]),
                       float(row["export_kwh"]), float(spread)))
    return tuple(out)


def prices_from_cache(cache_dir: str | Path, month: str, tz: str) -> pd.Series:
    """The month's EPEX prices (EUR/MWh, UTC index) from the runtime's price cache (``<data_dir>/prices``, one
    file per local day, written by ``dwars run``): the ENTSO-E copy of a day where there is one (it has the
    quarter hours since 2025-10-01), else the EnergyZero copy. Days without a copy are left out; the bill names
    the intervals that then lack a price. No network is used.
    """
    from dwars.runtime.prices import EnergyZeroFeed, EntsoeFeed, PriceFeedError

    start, end = month_bounds(month, tz)
    days = pd.date_range(start.tz_convert(tz), end.tz_convert(tz), freq="D", inclusive="left")
    feeds = (EntsoeFeed(""), EnergyZeroFeed())  # parsing a cached copy needs no token
    parts = []
    for day in days:
        for feed in feeds:
            path = feed.cache_file(Path(cache_dir), day.date())
            if not path.is_file():
                continue
            try:
                parts.append(feed.parse(path.read_bytes(), day.date(), tz))
                break
            except PriceFeedError as err:
                raise DataError(f"{path}: the cached prices are unusable ({err})") from None
    if not parts:
        raise DataError(f"no cached prices for {month} in {cache_dir}; give a price file (--prices)")
    series = pd.concat(parts).sort_index()
    return series[~series.index.duplicated(keep="first")]


# ================================================================================================= presets


def preset_tariff(home: TariffConfig, supplier: str, tz: str, source: str = "config") -> Tariff:
    """The tariff of preset ``supplier`` for this home: the preset's fees, the home's energy tax, VAT and net
    metering (those are law, not contract); ``supplier`` equal to the home's own gives the home's tariff."""
    if supplier in ("home", home.supplier):
        return Tariff.from_config(home, tz, source)
    cfg = replace(home, supplier=supplier, purchase_fee_eur_per_kwh=None, feed_in_fee_eur_per_kwh=None,
                  export_vat=None, base_margin_eur_per_kwh=None)
    return Tariff.from_config(cfg, tz, source)


def compare_presets(bill: Bill, home: TariffConfig, home_monthly_fee_eur: float | None = None,
                    source: str = "config") -> pd.DataFrame:
    """What the same month would have cost at every supplier preset (and at the home's tariff), cheapest first.

    Columns: ``name``, ``energy_eur``, ``export_eur``, ``fixed_eur`` (supplier fee incl. VAT), ``total_eur``
    (incl. the same grid costs and tax reduction for all), ``vs_bill_eur`` (minus this bill's total); index: the
    preset id (``home`` for the home's own tariff when it is not a preset, with ``home_monthly_fee_eur``, EUR a
    month excl. VAT, None: its preset's).
    """
    rows = {}
    presets = supplier_presets()
    tz = bill.tariff.timezone
    for supplier in ["home", *sorted(presets)]:
        if supplier == "home" and home.supplier in presets:
            continue
        fee = home_monthly_fee_eur if supplier in ("home", home.supplier) else None
        other = bill.repriced(preset_tariff(home, supplier, tz, source), fee)
        name = presets.get(supplier, {}).get("name", "your [tariff]")
        rows[supplier] = {"name": name, "energy_eur": other.figures["energy_eur"],
                          "export_eur": other.figures["export_eur"], "fixed_eur": other.figures["fixed_eur"],
                          "total_eur": other.total_eur, "vs_bill_eur": other.total_eur - bill.total_eur}
    return pd.DataFrame.from_dict(rows, orient="index").sort_values("total_eur")


# ================================================================================================= the invoice


@dataclass(frozen=True)
class Invoice:
    """A supplier's monthly invoice as the home owner typed it (see the module text for the TOML).

    ``figures`` holds ``total_eur`` and the optional figures given (keys of :data:`INVOICE_FIGURES`).
    """

    month: str
    supplier: str
    figures: dict[str, float]
    source: str = "invoice"

    @property
    def total_eur(self) -> float:
        return self.figures["total_eur"]


def parse_invoice(doc: dict[str, Any], source: str = "invoice") -> Invoice:
    """An :class:`Invoice` from the parsed TOML; refuses unknown keys and non-numbers, naming them."""
    unknown = sorted(set(doc) - {"month", "supplier", *INVOICE_FIGURES})
    if unknown:
        raise DataError(f"{source}: unknown key {', '.join(unknown)}; an invoice has month, supplier and "
                        f"{', '.join(INVOICE_FIGURES)}")
    for key in ("month", "supplier", "total_eur"):
        if key not in doc:
            raise DataError(f"{source}: {key} is missing (required: month, supplier, total_eur)")
    month, supplier = doc["month"], doc["supplier"]
    if not isinstance(month, str):
        raise DataError(f"{source}: month = {month!r}: write it as a string, e.g. \"2024-05\"")
    month_bounds(month, "UTC")  # the format check
    presets = supplier_presets()
    if not isinstance(supplier, str) or supplier not in {"home", *presets}:
        raise DataError(f"{source}: supplier = {supplier!r}: must be 'home' (your [tariff]) or one of "
                        f"{', '.join(sorted(presets))}")
    figures: dict[str, float] = {}
    for key in INVOICE_FIGURES:
        if key not in doc:
            continue
        value = doc[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise DataError(f"{source}: {key} = {value!r}: must be a number")
        if key in _KWH_FIGURES and value < 0:
            raise DataError(f"{source}: {key} = {value!r}: must be >= 0 (kWh)")
        figures[key] = float(value)
    return Invoice(month, supplier, figures, source)


def load_invoice(path: str | Path) -> Invoice:
    """An :class:`Invoice` from a TOML file (format in the module text)."""
    try:
        doc = tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as err:
        raise DataError(f"{path}: not valid TOML ({err})") from None
    return parse_invoice(doc, str(path))


# ================================================================================================= causes


@dataclass(frozen=True)
class Cause:
    """One candidate explanation of the difference between invoice and reconstruction.

    Attributes
    ----------
    key : ``import_volume``, ``export_volume``, ``purchase_fee``, ``feed_in_fee``, ``supplier_fee``, ``grid_fee``,
        ``tax_reduction``, ``vat_rate`` or ``price_resolution``.
    size : how big the cause is, in ``unit`` (kWh; EUR/kWh excl. VAT; EUR incl. VAT; VAT %-points; 1 = yes).
    explained_eur : how much of the total's difference it accounts for.
    mismatch_eur : what it leaves unexplained over all the invoice's figures (root of the sum of squares, kWh
        counted at the mean price): the score; the smallest wins.
    plausible : whether its size is one a real invoice could have (a purchase fee of 40 ct/kWh is not).
    text : the explanation in words.
    """

    key: str
    size: float
    unit: str
    explained_eur: float
    mismatch_eur: float
    plausible: bool
    text: str


@dataclass(frozen=True)
class Comparison:
    """An invoice set against the reconstructed bill: differences per figure, the causes tried (best first), the
    most likely cause and what is left unexplained, and ``summary``: all of it in a few sentences."""

    bill: Bill
    invoice: Invoice
    difference_eur: float
    differences: dict[str, float]
    causes: tuple[Cause, ...]
    best: Cause | None
    ambiguous: bool
    unexplained_eur: float
    summary: str


@dataclass(frozen=True)
class _Candidate:
    key: str
    unit: str
    per_unit: dict[str, float]  # change of each figure per unit of size
    primary: str | None  # the figure only this cause moves: its size is read from it when the invoice gives it
    fixed_size: float | None  # a cause that is there or not (size 1), not fitted
    plausible: Callable[[float], bool]
    text: Callable[[float, Invoice], str]


def _per_unit(bill: Bill, other: Bill, unit: float) -> dict[str, float]:
    return {k: (other.figures[k] - bill.figures[k]) / unit for k in INVOICE_FIGURES}


def _ct(x: float) -> str:
    return f"{x * 100:.2f} ct/kWh"


def _candidates(bill: Bill) -> list[_Candidate]:
    t, f = bill.tariff, bill.figures
    vat_factor = float(t.vat_factor(pd.DatetimeIndex([bill.start]))[0])
    vat_pct = (vat_factor - 1.0) * 100.0
    name = supplier_presets().get(t.supplier, {}).get("name", "your tariff")
    unmeasured_h = sum(g.hours for g in bill.gaps if g.kind in ("unmeasured", "reset"))
    missing = (f"; your readings miss {unmeasured_h:g} h of this month, whose energy the invoice counts but this "
               "reconstruction cannot" if unmeasured_h else "")
    out: list[_Candidate] = []

    def more(x: float) -> str:
        return "more" if x >= 0 else "less"

    for direction, total in (("import", f["import_kwh"]), ("export", f["export_kwh"])):
        if total <= 1e-9:
            continue
        scaled = bill.repriced(t, bill.fixed.supplier_fee_eur, **{f"{direction}_scale": 1.01})
        kwh = f[f"{direction}_kwh"]

        def text(x: float, inv: Invoice, d: str = direction, kwh: float = kwh) -> str:
            given = inv.figures.get(f"{d}_kwh")
            fig = f" ({given:.1f} vs {kwh:.1f} kWh)" if given is not None else ""
            return f"the invoice counts {abs(x):.1f} kWh {more(x)} {d} than your meter{fig}{missing}"

        out.append(_Candidate(f"{direction}_volume", "kWh", _per_unit(bill, scaled, 0.01 * total), f"{direction}_kwh",
                              None, lambda x, kwh=kwh: abs(x) <= max(kwh, 50.0), text))
    step = 0.01  # EUR/kWh: the figures are linear in the fees, so any step gives the same change per unit
    fee, feed = t.purchase_fee_eur_per_kwh, t.feed_in_fee_eur_per_kwh
    if f["import_kwh"] > 1e-9:
        other = bill.repriced(replace(t, purchase_fee_eur_per_kwh=fee + step), bill.fixed.supplier_fee_eur)
        out.append(_Candidate(
            "purchase_fee", "EUR/kWh", _per_unit(bill, other, step), None, None,
            lambda x: -0.05 <= fee + x <= 0.15,
            lambda x, inv: (f"the invoice's energy costs imply a purchase fee of {_ct(fee + x)} instead of the "
                            f"{_ct(fee)} of {name} (excl. VAT), or another per-kWh charge that differs by {_ct(x)}")))
    if f["export_kwh"] > 1e-9:
        other = bill.repriced(replace(t, feed_in_fee_eur_per_kwh=feed + step), bill.fixed.supplier_fee_eur)
        out.append(_Candidate(
            "feed_in_fee", "EUR/kWh", _per_unit(bill, other, step), None, None,
            lambda x: -0.15 <= feed + x <= 0.10,
            lambda x, inv: (f"the export compensation implies a feed-in fee of {_ct(feed + x)} instead of the "
                            f"{_ct(feed)} of {name} (excl. VAT; negative = a feed-in cost)")))
    fx = bill.fixed
    for key, figure, attr, label, hint, sign, top in (
            ("supplier_fee", "fixed_eur", "supplier_fee_eur", "the supplier's fixed fee", "", 1.0, 60.0),
            ("grid_fee", "grid_eur", "grid_fee_eur", "the grid operator's costs (netbeheerkosten)",
             "; give your grid operator's monthly amount (--grid-fee, excl. VAT) to include them", 1.0, 150.0),
            ("tax_reduction", "tax_reduction_eur", "tax_reduction_eur", "the energy tax reduction",
             "; some suppliers settle it in the yearly statement instead (then use --tax-reduction 0)", -1.0, 150.0)):
        now = getattr(fx, attr) * vat_factor  # EUR incl. VAT
        other = bill.repriced(t, fixed=replace(fx, **{attr: getattr(fx, attr) + 1.0 / vat_factor}))
        out.append(_Candidate(
            key, "EUR", _per_unit(bill, other, 1.0), figure, None,
            lambda x, now=now, top=top: -0.5 <= now + x <= top,
            lambda x, inv, now=now, label=label, hint=hint, sign=sign: (
                f"{label}: EUR {now + x:.2f} on the invoice instead of EUR {now:.2f} (incl. VAT)"
                f"{hint if sign * x > 0 else ''}")))
    other = bill.repriced(replace(t, vat_pct=vat_pct + 1.0), bill.fixed.supplier_fee_eur)
    out.append(_Candidate(
        "vat_rate", "%-points", _per_unit(bill, other, 1.0), None, None,
        lambda x: min(abs(vat_pct + x - r) for r in (0.0, 9.0, 21.0)) <= 0.5,
        lambda x, inv: f"VAT of {vat_pct + x:.1f} % instead of {vat_pct:.0f} %"))
    if bill.price_minutes == 15 and bill.minutes == 15:
        hourly = bill.epex_15.groupby(bill.epex_15.index.floor("h")).transform("mean")
        other = bill.repriced(t, bill.fixed.supplier_fee_eur, epex_15=hourly)
        out.append(_Candidate(
            "price_resolution", "", _per_unit(bill, other, 1.0), None, 1.0, lambda x: True,
            lambda x, inv, d=other.total_eur - bill.total_eur: (
                f"the invoice prices your energy per hour (the hour's mean price) instead of per quarter hour; that "
                f"changes this month's total by EUR {d:+.2f}")))
    return out


def compare_invoice(bill: Bill, invoice: Invoice, tolerance_eur: float = 0.02) -> Comparison:
    """Set ``invoice`` against ``bill`` and name the most likely cause of the difference (see the module text).

    ``tolerance_eur``: differences below it count as none (invoices round every line to the cent), and causes
    whose mismatch is within it of the best are equally good.
    """
    given = [k for k in INVOICE_FIGURES if k in invoice.figures]
    diff = {k: invoice.figures[k] - bill.figures[k] for k in given}
    total_diff = diff["total_eur"]
    # kWh figures count at the month's mean price, so that a kWh mismatch weighs what it costs
    weights = {k: 1.0 for k in given}
    for k, money in (("import_kwh", "energy_eur"), ("export_kwh", "export_eur")):
        if k in weights:
            weights[k] = max(abs(bill.figures[money]) / bill.figures[k], 0.10) if bill.figures[k] > 1e-9 else 0.25
    w = np.array([weights[k] for k in given])
    d = np.array([diff[k] for k in given])
    causes = []
    for c in _candidates(bill):
        s = np.array([c.per_unit[k] for k in given])
        if c.fixed_size is not None:
            size = c.fixed_size
        elif c.primary is not None and c.primary in given and abs(c.per_unit[c.primary]) > 1e-12:
            size = diff[c.primary] / c.per_unit[c.primary]
        else:
            norm = float(np.sum((w * s) ** 2))
            if norm < 1e-18:
                continue  # the invoice gives no figure this cause would move
            size = float(np.sum(w * s * w * d)) / norm
        mismatch = float(np.sqrt(np.sum((w * (d - size * s)) ** 2)))
        explained = size * c.per_unit["total_eur"]
        causes.append(Cause(c.key, float(size), c.unit, float(explained), mismatch, bool(c.plausible(size)),
                            c.text(size, invoice)))
    # A cause that explains nothing is not an explanation; an implausible one only when nothing else is left.
    causes.sort(key=lambda c: (not c.plausible, abs(c.explained_eur) < tolerance_eur, round(c.mismatch_eur, 6)))
    money_agrees = all(abs(v) < tolerance_eur for k, v in diff.items() if k not in _KWH_FIGURES)
    if money_agrees:  # kWh on invoices are often whole numbers: a rounding there is no difference
        best, ambiguous = None, False
        unexplained = total_diff
    else:
        best = causes[0] if causes else None
        tied = [c for c in causes if c.plausible and best is not None and abs(c.explained_eur) >= tolerance_eur
                and c.mismatch_eur <= best.mismatch_eur + tolerance_eur]
        ambiguous = len(tied) > 1
        unexplained = total_diff - (best.explained_eur if best is not None else 0.0)
    summary = _summary(bill, invoice, total_diff, best, ambiguous, unexplained, causes, tolerance_eur)
    return Comparison(bill, invoice, total_diff, diff, tuple(causes), best, ambiguous, unexplained, summary)


def _summary(bill: Bill, invoice: Invoice, total_diff: float, best: Cause | None, ambiguous: bool,
             unexplained: float, causes: list[Cause], tolerance_eur: float) -> str:
    rec, inv = bill.total_eur, invoice.total_eur
    head = (f"The invoice for {bill.month} says EUR {inv:.2f}; from your meter and the day-ahead prices dwars "
            f"reconstructs EUR {rec:.2f}")
    if best is None:
        return head + ": they agree (within the cent rounding of the invoice's lines)."
    word = "higher" if total_diff > 0 else "lower"
    parts = [head + f". The invoice is EUR {abs(total_diff):.2f} {word}."]
    if ambiguous:
        options = [c for c in causes if c.plausible and abs(c.explained_eur) >= tolerance_eur
                   and c.mismatch_eur <= best.mismatch_eur + tolerance_eur]
        shown = "; or ".join(c.text for c in options[:3])
        more = f"; or {len(options) - 3} other causes (see the table)" if len(options) > 3 else ""
        parts.append("The invoice's figures fit several causes equally well, so dwars cannot tell which it is "
                     f"(give the invoice's kWh and its lines to tell them apart): {shown}{more}.")
    else:
        parts.append(f"Most likely cause (it explains EUR {best.explained_eur:+.2f}): {best.text}.")
        if not best.plausible:
            parts.append("That would be an unusual figure, so the real cause may be something dwars does not model.")
    uncertain = sum(g.uncertainty_eur for g in bill.gaps if g.kind == "gap")
    left = f"EUR {unexplained:+.2f} is left unexplained"
    if abs(unexplained) < tolerance_eur:
        parts.append("Nothing is left unexplained.")
    elif uncertain > 0 and abs(unexplained) <= uncertain:
        parts.append(f"{left}, within what the gaps in your readings leave uncertain (EUR {uncertain:.2f}).")
    else:
        parts.append(f"{left}.")
    return " ".join(parts)
