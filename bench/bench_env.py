"""Benchmark: environment steps per second on one core, single env and batched; prints JSON.

    .venv/bin/python bench/bench_env.py [--steps 20000] [--n-envs 64]

The scenario is a real year (2024, bundled samples) at 15 minutes for examples/home.toml. The one-time
precomputation of the episode tables (forecasts and observation rows for the whole year) is timed apart.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from dwars.config import load_config
from dwars.data.io import sample_path
from dwars.data.scenario import build_scenario
from dwars.env.home_env import HomeEnergyEnv
from dwars.env.vec_env import HomeEnergyVecEnv

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--n-envs", type=int, default=64)
    parser.add_argument("--minutes", type=int, default=15)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    inst = load_config(ROOT / "examples" / "home.toml")
    scn = build_scenario(inst, [sample_path("prices_2024.json.gz")], "2024-01-01", "2025-01-01", args.minutes,
                         weather=sample_path("knmi_debilt_260_2024_T_Q.csv.gz"), model_pv=True)
    env = HomeEnergyEnv(scn, inst, episode_days=7)
    t0 = time.perf_counter()
    env.reset(seed=0)
    precompute_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 10, args.steps)
    t0 = time.perf_counter()
    for a in actions:
        _, _, _, truncated, _ = env.step(int(a))
        if truncated:
            env.reset()
    single = args.steps / (time.perf_counter() - t0)

    vec = HomeEnergyVecEnv(scn, inst, n_envs=args.n_envs, episode_days=7)
    vec.envs[0]._cache = env._cache
    for e in vec.envs[1:]:
        e._cache = env._cache
    vec.reset()
    batches = max(args.steps // args.n_envs, 50)
    acts = rng.integers(0, 10, (batches, args.n_envs))
    t0 = time.perf_counter()
    for a in acts:
        vec.step(a)
    batched = batches * args.n_envs / (time.perf_counter() - t0)
    print(json.dumps({
        "benchmark": "env_steps_per_second",
        "scenario": f"2024 at {args.minutes} min, {len(scn.frame)} intervals",
        "precompute_year_s": precompute_s,
        "single_env_steps_per_s": single,
        "batched_env_steps_per_s": batched,
        "n_envs": args.n_envs,
    }, indent=2))


if __name__ == "__main__":
    main()
