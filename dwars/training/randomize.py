"""Domain randomisation: a pool of plausible Dutch installations so that one policy serves any home."""

from __future__ import annotations

import numpy as np

from dwars.config import (
    BatteryConfig,
    GoalsConfig,
    Installation,
    PvArray,
    PvConfig,
    StrategyConfig,
    TariffConfig,
)
from dwars.env.tariff import supplier_presets

PROFILES = ("rustig", "gemiddeld", "maximaal", "inkoop-only")


def random_installation(rng: np.random.Generator, name: str = "random") -> Installation:
    """One installation drawn from the ranges of issue #5.

    PV 2-10 kWp on a south, south-east/west or east/west roof (tilt 10-45 degrees), inverter 0.8-1.1 x kWp;
    battery 5-20 kWh, 2.5-10 kW, round trip 0.85-0.95, reserve 0-30 %; endpoint hour and target, night-end
    target; strategy profile; tariff preset or custom fees. (The household load comes with the scenario.)
    """
    kwp = float(rng.uniform(2.0, 10.0))
    layout = rng.choice(["south", "skewed", "east-west"])
    tilt = float(rng.uniform(10, 45))
    if layout == "east-west":
        arrays = (PvArray(kwp / 2, 90.0, tilt), PvArray(kwp / 2, 270.0, tilt))
    else:
        azimuth = 180.0 if layout == "south" else float(rng.choice([135.0, 225.0]))
        arrays = (PvArray(kwp, azimuth, tilt),)
    capacity = float(rng.choice([5.0, 7.5, 10.0, 13.5, 15.0, 20.0]))
    power = float(min(rng.choice([2.5, 3.68, 5.0, 7.5, 10.0]), capacity))
    reserve = float(rng.choice([0.0, 10.0, 20.0, 30.0]))
    endpoint_on = rng.random() < 0.8
    night_on = rng.random() < 0.8
    goals = GoalsConfig(
        endpoint_hour=int(rng.choice([7, 16, 17, 18, 21])) if endpoint_on else None,
        endpoint_soc_pct=float(max(reserve, rng.choice([50.0, 70.0, 90.0]))),
        night_end_offset_min=float(rng.choice([30.0, 60.0, 90.0])),
        night_end_soc_pct=float(max(reserve, rng.choice([20.0, 30.0, 40.0]))) if night_on else None,
    )
    supplier = str(rng.choice(["custom", *sorted(supplier_presets())]))
    tariff = TariffConfig(supplier=supplier) if supplier != "custom" else TariffConfig(
        purchase_fee_eur_per_kwh=float(rng.uniform(0.0, 0.03)),
        feed_in_fee_eur_per_kwh=float(rng.uniform(-0.02, 0.01)),
        export_vat=bool(rng.random() < 0.3),
        base_margin_eur_per_kwh=float(rng.choice([0.03, 0.05, 0.07])),
    )
    return Installation(
        pv=PvConfig(arrays=arrays, inverter_kw=round(kwp * float(rng.uniform(0.8, 1.1)), 2)),
        battery=BatteryConfig(capacity_kwh=capacity, max_charge_kw=power, max_discharge_kw=power,
                              round_trip_efficiency=float(rng.uniform(0.85, 0.95)), reserve_pct=reserve,
                              initial_soc_pct=float(max(reserve, 50.0)),
                              wear_eur_per_kwh=float(rng.uniform(0.01, 0.04))),
        goals=goals,
        tariff=tariff,
        strategy=StrategyConfig(profile=str(rng.choice(PROFILES))),  # type: ignore[arg-type]
        name=name,
    ).replace()


def installation_pool(size: int, seed: int) -> list[Installation]:
    """``size`` installations, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return [random_installation(rng, name=f"pool-{k:02d}") for k in range(size)]
