"""NL day-ahead electricity prices (EPEX, bidding zone NL) from EnergyZero-style JSON and jeroen.nl-style CSV files.

Every loader returns the rows that exist as one series ``price_eur_per_mwh`` (float, EUR/MWh excluding taxes
and VAT), indexed by the UTC start of each interval (index name ``time``), sorted. Loaders never fill
missing intervals: use :func:`dwars.timegrid.check_regular` to see them and :func:`dwars.timegrid.fill_gaps`
to fill them by an explicit rule.

Formats read:

- JSON as bundled (``prices_2024.json``): ``{"year": Y, "count": N, "prices": [{"timestamp":
  "YYYY-MM-DDTHH:MM:SS", "price": P}, ...]}``, P in EUR/MWh, timestamps in NAIVE local time
  (Europe/Amsterdam). The repeated autumn hour appears twice; file order tells summer from winter time.
- JSON from the live EnergyZero API: ``{"Prices": [{"price": 0.1234, "readingDate":
  "2024-01-01T00:00:00Z"}, ...], ...}``, price in EUR/kWh, readingDate in UTC.
- CSV (``prices_nl_15min_2025-10.csv``): ``;`` separated, decimal comma, quoted timestamps, columns
  ``datum_nl`` (naive local), ``datum_utc`` (naive UTC, optional) and ``prijs_excl_belastingen``
  (EUR/kWh); 15-minute or hourly rows.
"""

from __future__ import annotations

import io
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dwars.data.io import read_text
from dwars.errors import DataError
from dwars.timegrid import LOCAL_TZ, localize_naive_local

log = logging.getLogger(__name__)

NAME = "price_eur_per_mwh"
EUR_PER_KWH_TO_EUR_PER_MWH = 1000.0
_NAIVE_FORMAT = "%Y-%m-%dT%H:%M:%S"
_CSV_NAIVE_FORMAT = "%Y-%m-%d %H:%M:%S"


def load_prices(path: str | Path, tz: str = LOCAL_TZ) -> pd.Series:
    """Prices from a JSON or CSV file, chosen by the file name (``.json``, ``.csv``, each optionally ``.gz``).

    Parameters
    ----------
    path : price file.
    tz : time zone of naive local timestamps in the file.

    Returns
    -------
    Series ``price_eur_per_mwh`` (EUR/MWh) indexed by UTC interval start (see the module text).

    Raises
    ------
    DataError
        for an unknown suffix, or anything :func:`load_prices_json` / :func:`load_prices_csv` refuses.
    """
    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    kind = suffixes[-1] if suffixes else ""
    if kind == ".json":
        return load_prices_json(path, tz)
    if kind == ".csv":
        return load_prices_csv(path, tz)
    raise DataError(f"{path}: file type {kind or '(none)'!r} not known; price files must end in .json, .csv, "
                    ".json.gz or .csv.gz")


def load_prices_json(path: str | Path, tz: str = LOCAL_TZ) -> pd.Series:
    """Prices from a JSON file in the bundled (naive local, EUR/MWh) or the EnergyZero API (UTC, EUR/kWh) layout.

    Parameters
    ----------
    path : JSON file, optionally ``.gz``.
    tz : time zone of the naive local timestamps of the bundled layout.

    Returns
    -------
    Series ``price_eur_per_mwh`` (EUR/MWh) indexed by UTC interval start, sorted, gaps left as they are.

    Raises
    ------
    DataError
        for invalid JSON, an unknown layout (naming the keys found), a timestamp that is not a time or does not
        exist locally (the skipped spring hour), a non-numeric or non-finite price (naming timestamp and
        value), or an interval that occurs twice.
    """
    text = read_text(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if isinstance(doc, dict) and isinstance(doc.get("prices"), list):
        rows = doc["prices"]
        stamps = _field(path, rows, "prices", "timestamp")
        prices = _field(path, rows, "prices", "price")
        index = _naive_local(path, "prices[].timestamp", stamps, _NAIVE_FORMAT, tz)
        values = _numbers(path, "prices[].price", stamps, prices)
        if "count" in doc and doc["count"] != len(rows):
            # Not fatal: the rows are the data; a stale count only hints at an edited file.
            log.warning("%s: count = %r but the file has %d prices", path, doc["count"], len(rows))
    elif isinstance(doc, dict) and isinstance(doc.get("Prices"), list):
        rows = doc["Prices"]
        stamps = _field(path, rows, "Prices", "readingDate")
        prices = _field(path, rows, "Prices", "price")
        index = _aware_utc(path, "Prices[].readingDate", stamps)
        values = _numbers(path, "Prices[].price", stamps, prices) * EUR_PER_KWH_TO_EUR_PER_MWH
    else:
        found = ", ".join(map(str, doc)) if isinstance(doc, dict) else f"a JSON {type(doc).__name__}"
        raise DataError(f"{path}: unknown price layout; expected a 'prices' list (timestamp, price in EUR/MWh) "
                        f"or a 'Prices' list (readingDate, price in EUR/kWh); found keys: {found or '(none)'}")
    return _finish(path, index, values)


def load_prices_csv(path: str | Path, tz: str = LOCAL_TZ) -> pd.Series:
    """Prices from a ``;``-separated CSV with decimal commas (jeroen.nl layout), 15-minute or hourly rows.

    The UTC column ``datum_utc`` is used when present (and checked against ``datum_nl``); otherwise the
    naive local ``datum_nl`` is localised, the repeated autumn hour told apart by file order.

    Parameters
    ----------
    path : CSV file, optionally ``.gz``.
    tz : time zone of ``datum_nl``.

    Returns
    -------
    Series ``price_eur_per_mwh`` (EUR/MWh, from ``prijs_excl_belastingen`` in EUR/kWh) indexed by UTC
    interval start, sorted, gaps left as they are.

    Raises
    ------
    DataError
        for a missing column, a timestamp that is not a time or does not exist locally, ``datum_nl`` and
        ``datum_utc`` disagreeing, a non-numeric or non-finite price (naming timestamp and value), or an
        interval that occurs twice.
    """
    text = read_text(path)
    try:
        frame = pd.read_csv(io.StringIO(text), sep=";", dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{path}: not a ';'-separated price CSV ({err})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    price_col = "prijs_excl_belastingen"
    if price_col not in frame.columns or not ({"datum_utc", "datum_nl"} & set(frame.columns)):
        raise DataError(f"{path}: columns {price_col} and datum_utc or datum_nl needed; found "
                        f"{', '.join(frame.columns)}")
    if "datum_utc" in frame.columns:
        stamps = frame["datum_utc"].str.strip()
        naive_utc = _parse_naive(path, "datum_utc", stamps, _CSV_NAIVE_FORMAT)
        index = naive_utc.tz_localize("UTC")
        if "datum_nl" in frame.columns:
            _check_local_matches(path, frame["datum_nl"].str.strip(), index, tz)
    else:
        stamps = frame["datum_nl"].str.strip()
        index = _naive_local(path, "datum_nl", stamps.tolist(), _CSV_NAIVE_FORMAT, tz)
    # Decimal comma in the source; a dot is accepted as well (no thousands separators occur in prices).
    raw = frame[price_col].str.strip()
    values = _numbers(path, price_col, stamps.tolist(), raw.str.replace(",", ".", regex=False).tolist())
    return _finish(path, index, values * EUR_PER_KWH_TO_EUR_PER_MWH)


# --------------------------------------------------------------------------------------------------


def _field(path: str | Path, rows: list[Any], key: str, name: str) -> list[Any]:
    """Column ``name`` of a list of JSON objects; a missing entry names the row."""
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or name not in row:
            shown = json.dumps(row)[:80]
            raise DataError(f"{path}: {key}[{i}] = {shown}: has no {name!r}")
        out.append(row[name])
    return out


def _parse_naive(path: str | Path, field: str, stamps: pd.Series | list[Any], fmt: str) -> pd.DatetimeIndex:
    texts = pd.Series(stamps, dtype=object)
    parsed = pd.to_datetime(texts.where(texts.map(lambda s: isinstance(s, str)), None), format=fmt,
                            errors="coerce")
    if parsed.isna().any():
        bad = texts[parsed.isna()].iloc[0]
        raise DataError(f"{path}: {field} = {bad!r}: not a time of the form {fmt.replace('%', '')}")
    return pd.DatetimeIndex(parsed).as_unit("ns")


def _naive_local(path: str | Path, field: str, stamps: list[Any], fmt: str, tz: str) -> pd.DatetimeIndex:
    naive = _parse_naive(path, field, stamps, fmt)
    # localize_naive_local resolves the doubled autumn hour by order of appearance, i.e. file order.
    return localize_naive_local(naive, tz, field=f"{path}: {field}").as_unit("ns")


def _aware_utc(path: str | Path, field: str, stamps: list[Any]) -> pd.DatetimeIndex:
    """UTC instants from ISO 8601 text that carries an offset (``Z`` or ``+01:00``); naive text is refused."""
    out = []
    for s in stamps:
        try:
            ts = pd.Timestamp(s) if isinstance(s, str) else None
        except ValueError:
            ts = None
        if ts is None or ts is pd.NaT:
            raise DataError(f"{path}: {field} = {s!r}: not an ISO 8601 time")
        if ts.tzinfo is None:
            raise DataError(f"{path}: {field} = {s!r}: has no UTC offset; expected e.g. 2024-01-01T00:00:00Z")
        out.append(ts.tz_convert("UTC"))
    return pd.DatetimeIndex(out, tz="UTC").as_unit("ns")


def _numbers(path: str | Path, field: str, stamps: list[Any], values: list[Any]) -> np.ndarray:
    """Floats from JSON numbers or numeric text; anything else (null, text, bool, NaN, inf) names the row."""
    out = np.empty(len(values), dtype=float)
    for i, (stamp, v) in enumerate(zip(stamps, values, strict=True)):
        x: float | None
        if isinstance(v, bool) or v is None:
            x = None
        elif isinstance(v, int | float):
            x = float(v)
        else:
            try:
                x = float(str(v))
            except ValueError:
                x = None
        if x is None or not math.isfinite(x):
            raise DataError(f"{path}: {field} at {stamp} = {v!r}: not a finite number")
        out[i] = x
    return out


def _check_local_matches(path: str | Path, local_text: pd.Series, index_utc: pd.DatetimeIndex, tz: str) -> None:
    """Both time columns must name the same instant; a mismatch means the file is misread or edited."""
    expected = index_utc.tz_convert(tz).tz_localize(None).strftime(_CSV_NAIVE_FORMAT)
    bad = np.flatnonzero(local_text.to_numpy() != np.asarray(expected))
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{path}: datum_nl = {local_text.iloc[i]!r} does not match datum_utc "
                        f"{index_utc[i]:%Y-%m-%d %H:%M:%S} (= {expected[i]} in {tz}); {len(bad)} rows disagree")


def _finish(path: str | Path, index: pd.DatetimeIndex, values: np.ndarray) -> pd.Series:
    if index.has_duplicates:
        dup = index[index.duplicated()][0]
        raise DataError(f"{path}: time {dup:%Y-%m-%d %H:%M} UTC occurs more than once")
    if len(index) == 0:
        raise DataError(f"{path}: no prices in the file")
    series = pd.Series(values, index=pd.DatetimeIndex(index, name="time"), name=NAME, dtype=float)
    return series.sort_index()
