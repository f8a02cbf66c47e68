"""Benchmark: the control loop against the simulated inverter over Modbus TCP on 127.0.0.1; prints JSON.

    .venv/bin/python bench/bench_runtime.py [--days 2] [--controller rl]

Two days of 2024 at 15 minutes (bundled samples, examples/home.toml) under the shipped policy: per interval
the loop reads the battery, decides (plan + policy + shield), writes and reads back four model-124 points and
appends a decision-log record; the simulated inverter then plays the interval. Reported: the whole decision
per interval (``decide_ms``, Modbus round trips on localhost included), the part without I/O (``compute_ms``:
controller + shield), and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dwars.config import load_config
from dwars.data.io import sample_path
from dwars.data.scenario import build_scenario
from dwars.policy.base import Home
from dwars.policy.decision_log import DecisionLog
from dwars.policy.registry import make_controller
from dwars.policy.shield import Shield
from dwars.runtime.driver import SunSpecDriver
from dwars.runtime.loop import ControlLoop, ReplayInputs
from dwars.runtime.sim_inverter import SimulatedInverter

ROOT = Path(__file__).resolve().parents[1]


class Timed:
    """Wraps a controller and the shield to time the compute part of each decision."""

    def __init__(self, inner: object) -> None:
        self.inner, self.ms = inner, []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def decide(self, state: object, forecasts: object) -> object:
        t0 = time.perf_counter()
        try:
            return self.inner.decide(state, forecasts)  # type: ignore[attr-defined]
        finally:
            self.ms.append(1e3 * (time.perf_counter() - t0))


async def main(days: int, controller_name: str) -> dict:
    inst = load_config(ROOT / "examples" / "home.toml")
    home = Home.from_installation(inst)
    scn = build_scenario(inst, [sample_path("prices_2024.json.gz")], "2024-06-01", f"2024-06-{1 + days + 1:02d}",
                         15, weather=sample_path("knmi_debilt_260_2024_T_Q.csv.gz"), model_pv=True)
    inputs = ReplayInputs(scn, home)
    inverter = SimulatedInverter(home.battery, inst.battery.initial_energy_kwh)
    port = await inverter.start()
    driver = SunSpecDriver("127.0.0.1", port)
    t0_sim = inverter.now
    driver.clock = lambda: (inverter.now - t0_sim).total_seconds()  # the write rate limit runs on simulated time
    await driver.connect()
    controller = Timed(make_controller(controller_name, home))
    with tempfile.TemporaryDirectory() as tmp:
        loop = ControlLoop(home, controller, driver, inputs, 15, Shield(home), DecisionLog(Path(tmp) / "d.jsonl"))
        decide_ms = []
        n = days * 96
        for i in range(n):
            t0 = time.perf_counter()
            await loop.decide(scn.index[i])
            decide_ms.append(1e3 * (time.perf_counter() - t0))
            inverter.advance(15, inputs.pv_kw[i], inputs.load_kw[i])
        loop.decision_log.close()
    driver.close()
    await inverter.stop()

    def pct(a: list[float]) -> dict:
        return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "max": float(np.max(a))}

    return {"benchmark": "runtime_loop", "controller": controller_name, "intervals": n, "minutes": 15,
            "decide_ms_incl_modbus_and_log": pct(decide_ms), "compute_ms_controller": pct(controller.ms),
            "failures": loop.failures, "register_writes": inverter.writes,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "when": pd.Timestamp.now(tz="UTC").isoformat()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--controller", default="rl")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.days, args.controller)), indent=2))
