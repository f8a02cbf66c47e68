"""Training and validation scenarios from the shared real data (never from the held-out years)."""

from __future__ import annotations

from pathlib import Path

from dwars.config import Installation
from dwars.data.scenario import Scenario, build_scenario
from dwars.errors import DataError

HELD_OUT_FROM_YEAR = 2025  # 2025 and later is the held-out test period


def year_scenarios(inst: Installation, data_dir: str | Path, years: list[int], minutes: int,
                   annual_loads_kwh: list[float]) -> list[Scenario]:
    """One scenario per (year, annual load): real NL prices and KNMI De Bilt weather, NEDU profile load.

    The first local day of a year is skipped: the KNMI file of that year starts at 00:00 UTC, an hour after
    local midnight.

    Raises
    ------
    DataError
        for a held-out year or missing files.
    """
    folder = Path(data_dir)
    out = []
    for year in years:
        if year >= HELD_OUT_FROM_YEAR:
            raise DataError(f"train_years: {year} is in the held-out test period (2025 and later); never train on it")
        prices = folder / "prices_nl_hourly" / f"prices_{year}.json"
        weather = folder / "knmi_debilt" / "knmi_debilt_260_2023-2024_T_Q.csv"
        for path in (prices, weather):
            if not path.exists():
                raise DataError(f"{path}: not found (data_dir = {folder})")
        for load in annual_loads_kwh:
            out.append(build_scenario(inst, [prices], f"{year}-01-02", f"{year + 1}-01-01", minutes,
                                      weather=weather, annual_load_kwh=load, fill="hold"))
    return out
