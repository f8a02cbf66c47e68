"""Benchmark: the money effect of the flexible loads over the 2024 validation year; prints JSON.

    .venv/bin/python bench/bench_flex_year.py [--config examples/home.toml] [--controllers none,rule,rl]
        [--start 2024-01-01 --end 2025-01-01] [--minutes 60]

Runs ``dwars evaluate``'s measuring stick on the bundled 2024 prices and De Bilt weather (PV modelled), for the
home as configured plus, one at a time:

- ``ev``: the default ``[ev]`` (60 kWh car, 11 kW charger, home 18:00-07:00, 8 kWh a day), charged plainly
  (``now``: full power from arrival) and smartly (``smart``); the battery's own saving (none - controller) with and
  without the car shows whether the battery policy is affected by it;
- ``boiler``: the default ``[boiler]`` (2 kW, 120 l) on its thermostat alone and with the surplus diverter, for each
  priority (``battery``, ``boiler``, ``auto``);
- ``peak``: the car charged plainly with a peak limit of 7 kW: the highest interval import and what it costs.

Figures are objective EUR (energy cost + wear - value of energy left), per controller.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from dwars.config import BoilerConfig, EvConfig, Installation, load_config
from dwars.data.io import sample_path
from dwars.data.scenario import build_scenario
from dwars.policy.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("objective_eur", "energy_cost_eur", "import_kwh", "export_kwh", "peak_import_kw", "intervals_over_peak",
        "ev_charged_kwh", "ev_missed_departures", "ev_short_kwh", "boiler_kwh", "boiler_boost_kwh",
        "hot_water_unmet_kwh")


def _figures(inst: Installation, scenario: Any, controllers: list[str], **options: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    ev = evaluate(inst, scenario, controllers, **options)
    out: dict[str, Any] = {name: {k: round(v, 2) if isinstance(v, float) else v for k, v in r.items() if k in KEYS}
                           | {"violations": r["violations"]} for name, r in ev.results.items()}
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "examples" / "home.toml"))
    parser.add_argument("--controllers", default="none,rule,rl")
    parser.add_argument("--start", default="2024-01-01")
    parser.add_argument("--end", default="2025-01-01")
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--parts", default="ev,boiler,peak")
    args = parser.parse_args()
    inst = load_config(args.config)
    controllers = args.controllers.split(",")
    scenario = build_scenario(inst, [sample_path("prices_2024.json.gz")], args.start, args.end, args.minutes,
                              weather=sample_path("knmi_debilt_260_2024_T_Q.csv.gz"), model_pv=True)
    parts = args.parts.split(",")
    out: dict[str, Any] = {"config": Path(args.config).name, "start": args.start, "end": args.end,
                           "minutes": args.minutes, "home": _figures(inst, scenario, controllers)}
    if "ev" in parts:
        with_ev = dataclasses.replace(inst, ev=EvConfig())
        out["ev_now"] = _figures(with_ev, scenario, controllers, ev_strategy="now")
        out["ev_smart"] = _figures(with_ev, scenario, controllers, ev_strategy="smart")
        out["ev_effect"] = {
            name: {"smart_minus_now_eur": round(out["ev_smart"][name]["objective_eur"]
                                                - out["ev_now"][name]["objective_eur"], 2),
                   "battery_saving_without_ev_eur": round(out["home"]["none"]["objective_eur"]
                                                          - out["home"][name]["objective_eur"], 2),
                   "battery_saving_with_smart_ev_eur": round(out["ev_smart"]["none"]["objective_eur"]
                                                             - out["ev_smart"][name]["objective_eur"], 2)}
            for name in controllers if name != "none" or "none" in controllers}
    if "boiler" in parts:
        with_boiler = dataclasses.replace(inst, boiler=BoilerConfig())
        out["boiler_thermostat"] = _figures(with_boiler, scenario, controllers, divert=False)
        for priority in ("battery", "boiler", "auto"):
            cfg = dataclasses.replace(inst, boiler=BoilerConfig(priority=priority))
            out[f"boiler_divert_{priority}"] = _figures(cfg, scenario, controllers, divert=True)
    if "peak" in parts:
        site = dataclasses.replace(inst.site, import_peak_kw=7.0)
        out["peak_7kw_ev_now"] = _figures(dataclasses.replace(inst, site=site, ev=EvConfig(strategy="now")),
                                          scenario, controllers)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
