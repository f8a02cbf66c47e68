"""Benchmark: forecasts for a one-year 15-minute scenario of the bundled 2024 data; prints JSON figures.

    .venv/bin/python bench/bench_forecast.py [--repeat 3] [--config examples/home.toml] [--skill]

Figures, per PV mode: construction time of a :class:`dwars.env.forecast.Forecaster` (median of the
repeats), microseconds per ``.at(i)`` call (p50/p99 over every interval of the year, each call timed on
its own), per ``pv_forecast(i)`` call, and per (B=64, H) batch look-up; with ``--skill`` also the PV
nRMSE by lead-time bucket.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from dwars.config import load_config
from dwars.data.io import sample_path
from dwars.data.scenario import build_scenario
from dwars.env.forecast import Forecaster, pv_skill_by_lead
from dwars.policy.base import Home

ROOT = Path(__file__).resolve().parents[1]


def per_call_us(fn: Any, args: np.ndarray) -> dict[str, float]:
    """p50/p99/mean microseconds of ``fn(a)`` for every ``a`` in ``args``, each call timed on its own."""
    ns = np.empty(len(args))
    clock = time.perf_counter_ns
    for k, a in enumerate(args.tolist()):
        t0 = clock()
        fn(a)
        ns[k] = clock() - t0
    return {"p50": float(np.percentile(ns, 50) / 1e3), "p99": float(np.percentile(ns, 99) / 1e3),
            "mean": float(ns.mean() / 1e3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--config", default=str(ROOT / "examples" / "home.toml"))
    parser.add_argument("--skill", action="store_true", help="also measure the PV nRMSE by lead time")
    args = parser.parse_args()

    inst = load_config(args.config)
    home = Home.from_installation(inst)
    scn = build_scenario(inst, [sample_path("prices_2024.json.gz")], "2024-01-01", "2025-01-01", 15,
                         weather=sample_path("knmi_debilt_260_2024_T_Q.csv.gz"))
    modes: dict[str, Any] = {}
    for mode in ("weather", "clearsky_index", "perfect"):
        build_s = []
        fc: Forecaster | None = None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            fc = Forecaster(scn, home, pv_mode=mode)  # type: ignore[arg-type]
            build_s.append(time.perf_counter() - t0)
        assert fc is not None
        every = np.arange(fc.n)
        batch = np.random.default_rng(0).integers(0, fc.n, (200, 64))
        leads = np.arange(fc.horizon)[None, :]
        figures: dict[str, Any] = {
            "construct_s_median": statistics.median(build_s),
            "at_us": per_call_us(fc.at, every),
            "pv_forecast_us": per_call_us(fc.pv_forecast, every),
            "pv_forecast_batch_64xH_us": per_call_us(
                lambda rows, f=fc, lead=leads: f.pv_forecast_batch(np.asarray(rows)[:, None], lead), batch),
        }
        if args.skill:
            figures["pv_skill_by_lead"] = pv_skill_by_lead(fc)
        modes[mode] = figures
    out = {
        "benchmark": "forecaster_one_year_15min",
        "intervals": len(scn.frame),
        "horizon": Forecaster(scn, home, pv_mode="perfect").horizon,
        "repeat": args.repeat,
        "modes": modes,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
