"""Benchmark: build a one-year 15-minute scenario from the bundled real 2024 data; prints JSON figures.

    .venv/bin/python bench/bench_scenario_build.py [--repeat 3] [--config examples/home.toml]

Figures: wall time of the whole build (median and best of the repeats), with and without modelling PV
into the file, the time of each stage measured separately, and the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dwars.config import load_config
from dwars.data.io import sample_path
from dwars.data.scenario import Scenario, build_scenario, load_price_files
from dwars.data.weather import load_knmi_hourly
from dwars.env.irradiance import disaggregate_ghi
from dwars.env.load import profile_load_kw
from dwars.env.pv import pv_ac_kw
from dwars.timegrid import local_day_bounds, local_days_index

ROOT = Path(__file__).resolve().parents[1]


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--config", default=str(ROOT / "examples" / "home.toml"))
    args = parser.parse_args()

    inst = load_config(args.config)
    prices = [sample_path("prices_2024.json.gz")]
    weather = sample_path("knmi_debilt_260_2024_T_Q.csv.gz")
    start, end, minutes = "2024-01-01", "2025-01-01", 15

    def build(model_pv: bool) -> Scenario:
        return build_scenario(inst, prices, start, end, minutes, weather=weather, model_pv=model_pv)

    full, scn = timed(lambda: build(False), args.repeat)
    full_pv, _ = timed(lambda: build(True), args.repeat)

    index = local_days_index(start, end, minutes)
    lo, hi = local_day_bounds(start, end)
    raw = load_knmi_hourly(weather)
    stages = {
        "prices_s": timed(lambda: load_price_files(prices, lo, hi, minutes), args.repeat)[0],
        "load_profile_s": timed(lambda: profile_load_kw(index, inst.load.annual_kwh), args.repeat)[0],
        "weather_read_s": timed(lambda: load_knmi_hourly(weather), args.repeat)[0],
        "ghi_disaggregate_s": timed(lambda: disaggregate_ghi(raw["ghi_w_per_m2"], inst.site, 15), args.repeat)[0],
        "pv_model_s": timed(lambda: pv_ac_kw(scn.index, scn.frame["ghi_w_per_m2"], scn.frame["temp_air_c"],
                                              inst.site, inst.pv, minutes), args.repeat)[0],
    }
    figures = {
        "benchmark": "scenario_build_one_year_15min",
        "intervals": len(scn.frame),
        "repeat": args.repeat,
        "build_s_median": statistics.median(full),
        "build_s_best": min(full),
        "build_with_model_pv_s_median": statistics.median(full_pv),
        "stages_s_median": {k: statistics.median(v) for k, v in stages.items()},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
