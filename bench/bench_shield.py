"""Benchmark: latency of the safety shield's check and mask per decision; prints JSON.

    .venv/bin/python bench/bench_shield.py [--n 5000]

Real 2024 data at 15 minutes for examples/home.toml, forecasts with errors (a 36 h horizon, 144 intervals),
random states and random proposals, as the runtime and training would call it.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from dwars.config import load_config
from dwars.data.io import sample_path
from dwars.data.scenario import build_scenario
from dwars.env.forecast import Forecaster
from dwars.env.modes import N_ACTIONS, action_to_decision
from dwars.policy.base import Home, State
from dwars.policy.shield import Shield

ROOT = Path(__file__).resolve().parents[1]


def percentiles(samples: list[float]) -> dict[str, float]:
    us = np.asarray(samples) * 1e6
    return {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)),
            "max_us": float(us.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    # Random states often make a goal unreachable; the shield's once-per-deadline warnings are expected here.
    logging.getLogger("dwars.policy.shield").setLevel(logging.ERROR)
    inst = load_config(ROOT / "examples" / "home.toml")
    scn = build_scenario(inst, [sample_path("prices_2024.json.gz")], "2024-01-01", "2025-01-01", 15,
                         weather=sample_path("knmi_debilt_260_2024_T_Q.csv.gz"), model_pv=True)
    home = Home.from_installation(inst)
    forecaster = Forecaster(scn, home, seed=0)
    shield = Shield(home)
    rng = np.random.default_rng(0)
    b = home.battery
    check_s, mask_s, changed = [], [], 0
    for i in rng.integers(0, len(scn.frame) - 200, args.n):
        energy = float(rng.uniform(b.reserve_kwh, b.capacity_kwh))
        state = State(scn.index[i], 15, energy, 100 * energy / b.capacity_kwh)
        fc = forecaster.at(int(i))
        proposal = action_to_decision(int(rng.integers(N_ACTIONS)), b.max_charge_kw, b.max_discharge_kw)
        t0 = time.perf_counter()
        result = shield.check(state, fc, proposal)
        check_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        shield.mask(state, fc)
        mask_s.append(time.perf_counter() - t0)
        changed += result.changed
    print(json.dumps({"benchmark": "shield_latency", "decisions": args.n, "horizon_intervals": forecaster.horizon,
                      "check": percentiles(check_s), "mask": percentiles(mask_s),
                      "random_proposals_changed_share": changed / args.n}, indent=2))


if __name__ == "__main__":
    main()
