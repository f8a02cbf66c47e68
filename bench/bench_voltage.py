"""Benchmark: what high-voltage mode costs the Pi per P1 reading; prints JSON.

    .venv/bin/python bench/bench_voltage.py [--readings 200000] [--phases 3]

A DSMR 5 meter sends a telegram every second; the voltage watch (:class:`dwars.runtime.voltage.VoltageWatch`)
feeds each one's per-phase voltage into the rolling 10-minute mean (:class:`dwars.env.voltage.VoltageGuard`) and
checks the boiler's export timer. Measured here: microseconds per reading through the whole watch (two guards:
as measured and as without the mode), the guard alone, and the Python heap the watch holds with a full window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

import numpy as np

from dwars.config import VoltageConfig
from dwars.env.voltage import VoltageGuard
from dwars.runtime.meter import MeterReading
from dwars.runtime.voltage import VoltageWatch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--phases", type=int, default=3, choices=(1, 3))
    args = parser.parse_args()
    logging.getLogger("dwars").setLevel(logging.ERROR)  # the mode's switches are logged as warnings
    n, phases = args.readings, args.phases
    t0 = datetime(2024, 6, 26, 10, tzinfo=UTC)
    rng = np.random.default_rng(0)
    volts = 245.0 + 6.0 * np.sin(np.arange(n) / 3600.0)[:, None] + rng.normal(0.0, 0.5, (n, phases))
    times = [t0 + timedelta(seconds=k) for k in range(n)]
    readings = [MeterReading(t, 0.0, 2.0, 1.0, 1.0, phase_voltage_v=tuple(v)) for t, v in zip(times, volts.tolist(),
                                                                                                 strict=True)]
    cfg = VoltageConfig()

    guard = VoltageGuard(cfg)
    start = time.perf_counter()
    for t, v in zip(times, volts.tolist(), strict=True):
        guard.update(t, v)
    guard_us = (time.perf_counter() - start) / n * 1e6

    watch = VoltageWatch(cfg, max_charge_kw=5.0, now=lambda: times[-1])

    async def feed() -> int:
        switches = 0
        for r in readings:
            await watch.on_reading(r)
            switches += watch.guard.changed
        return switches

    start = time.perf_counter()
    switches = asyncio.run(feed())
    watch_us = (time.perf_counter() - start) / n * 1e6
    # The heap a watch holds with a full window: a fresh one fed twenty minutes, traced (tracing slows the feed).
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    held = VoltageWatch(cfg, max_charge_kw=5.0, now=lambda: times[-1])
    for r in readings[:1200]:
        asyncio.run(held.on_reading(r))
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(json.dumps({"readings": n, "phases": phases, "guard_us_per_reading": round(guard_us, 2),
                      "watch_us_per_reading": round(watch_us, 2), "mode_switches": int(switches),
                      "window_samples": len(held.guard._samples),
                      "heap_kib_full_window": round((current - base) / 1024, 1)}, indent=2))


if __name__ == "__main__":
    main()
