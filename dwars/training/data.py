"""Training and validation scenarios from the shared real data (never from the held-out years)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dwars.config import Installation
from dwars.data.scenario import Scenario, build_scenario
from dwars.errors import DataError

HELD_OUT_FROM_YEAR = 2025  # 2025 and later is the held-out test period


#: Years the shared KNMI De Bilt file covers. A price year without its own weather gets the weather of
#: WEATHER_STAND_IN_YEAR, day by day (weather is weather; 2024, the validation year, is never lent out).
WEATHER_YEARS = (2023, 2024)
WEATHER_STAND_IN_YEAR = 2023


def year_scenarios(inst: Installation, data_dir: str | Path, years: list[int], minutes: int,
                   annual_loads_kwh: list[float]) -> list[Scenario]:
    """One scenario per (year, annual load): real NL prices and KNMI De Bilt weather, NEDU profile load.

    The first local day of a year is skipped: the KNMI file of that year starts at 00:00 UTC, an hour after
    local midnight. For a price year before the weather file (2022) the load follows that year's calendar and
    the weather is 2023's, interval by interval (both years run from 2 January to 1 January: 8736 hours).

    Raises
    ------
    DataError
        for a held-out year or missing files.
    """
    folder = Path(data_dir)
    weather = folder / "knmi_debilt" / "knmi_debilt_260_2023-2024_T_Q.csv"
    out = []
    for year in years:
        if year >= HELD_OUT_FROM_YEAR:
            raise DataError(f"train_years: {year} is in the held-out test period (2025 and later); never train on it")
        prices = _prices_file(folder, year)
        if not weather.exists():
            raise DataError(f"{weather}: not found (data_dir = {folder})")
        stand_in = WEATHER_STAND_IN_YEAR
        sky = None if year in WEATHER_YEARS else build_scenario(  # only its weather is used: once per year
            inst, [_prices_file(folder, stand_in)], f"{stand_in}-01-02", f"{stand_in + 1}-01-01", minutes,
            weather=weather, fill="hold")
        for load in annual_loads_kwh:
            if sky is None:
                out.append(build_scenario(inst, [prices], f"{year}-01-02", f"{year + 1}-01-01", minutes,
                                          weather=weather, annual_load_kwh=load, fill="hold"))
                continue
            own = build_scenario(inst, [prices], f"{year}-01-02", f"{year + 1}-01-01", minutes, pv="none",
                                 annual_load_kwh=load, fill="hold")
            if len(own.frame) != len(sky.frame):
                raise DataError(f"train_years: {year} has {len(own.frame)} intervals, the stand-in weather year "
                                f"{stand_in} {len(sky.frame)}; cannot lend the weather")
            frame = own.frame.drop(columns=["pv_kw"])
            for column in ("ghi_w_per_m2", "temp_air_c"):
                frame[column] = sky.frame[column].to_numpy()
            meta = {**own.meta, "weather_year": stand_in}
            out.append(Scenario(frame, minutes, meta))
    return out


def recipe_scenarios(base: Installation, data_h: dict[str, Any], data_dir: str | Path | None = None) -> list[Scenario]:
    """The training scenarios of a recipe's ``[data]`` section (``dwars/training/ppo.toml``): every train year
    at ``minutes`` for each annual load, plus the ``[data.quarter_hour]`` years at 15 minutes. ``data_dir``
    overrides the recipe's folder."""
    folder = data_dir or data_h["data_dir"]
    out = year_scenarios(base, folder, list(data_h["train_years"]), int(data_h["minutes"]),
                         list(data_h["annual_load_kwh"]))
    quarter = data_h.get("quarter_hour")  # 15-minute versions of some years, so the policy knows that grid too
    if quarter:
        out += year_scenarios(base, folder, list(quarter["years"]), 15, list(quarter["annual_load_kwh"]))
    return out


def recipe_installations(base: Installation, rand_h: dict[str, Any]) -> list[Installation]:
    """The training homes of a recipe's ``[randomize]`` section: ``base`` plus the drawn pool."""
    from dwars.training.randomize import installation_pool

    return [base, *installation_pool(int(rand_h["pool_size"]), int(rand_h["seed"]))]


def _prices_file(folder: Path, year: int) -> Path:
    path = folder / "prices_nl_hourly" / f"prices_{year}.json"
    if not path.exists():
        raise DataError(f"{path}: not found (data_dir = {folder})")
    return path
