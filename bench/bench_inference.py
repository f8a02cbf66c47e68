"""Benchmark: latency of the ONNX policy per decision on one core, and the runtime's import set; prints JSON.

    .venv/bin/python bench/bench_inference.py [--n 5000] [--policy FILE] [--fresh]

The policy is ``dwars/policy/models/default.onnx`` when it exists (or ``--policy FILE``); otherwise, or with
``--fresh``, a freshly initialised MaskablePPO with net_arch [256, 256] exported by
:func:`dwars.training.export.export_policy` (with observation statistics, so normalisation is in the graph).
Timed, after a warm-up: ``OnnxPolicyController.logits`` on one observation (1, N_OBS), the MPC plan the policy
refines (``PlanAdvisor.advise``: one LP solve), ``build_observation``, and the full ``decide()`` (plan +
observation + onnxruntime + the Decision) on real 2024 forecasts at 15 minutes for
examples/home.toml, at random intervals and SoC. ``runtime_training_imports`` lists the torch /
stable-baselines3 / sb3-contrib / gymnasium modules that importing the runtime modules loads in a fresh
interpreter: it must be empty, since the Pi installs ``dwars[runtime]`` only.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dwars.config import Installation, load_config
from dwars.data.io import sample_path
from dwars.data.scenario import Scenario, build_scenario
from dwars.env.forecast import Forecaster
from dwars.env.observation import N_OBS, build_observation
from dwars.policy.advisor import PlanAdvisor
from dwars.policy.base import Home, State
from dwars.policy.rl import DEFAULT_POLICY, OnnxPolicyController

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_IMPORTS = ("dwars.policy.rl, dwars.policy.advisor, dwars.policy.shield, dwars.policy.rule, dwars.policy.mpc, "
                   "dwars.env.forecast, dwars.env.dispatch")
TRAINING_PACKAGES = ("torch", "stable_baselines3", "sb3_contrib", "gymnasium")


def percentiles(samples: list[float]) -> dict[str, float]:
    us = np.asarray(samples) * 1e6
    return {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)),
            "max_us": float(us.max())}


def runtime_training_imports() -> list[str]:
    code = (f"import sys; import {RUNTIME_IMPORTS}; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {TRAINING_PACKAGES!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


def fresh_policy(scenario: Scenario, inst: Installation, path: Path) -> dict[str, object]:
    """Export a freshly initialised MaskablePPO [256, 256] with random observation statistics."""
    from sb3_contrib import MaskablePPO

    from dwars.env.home_env import HomeEnergyEnv
    from dwars.training.export import export_policy

    env = HomeEnergyEnv(scenario, inst, episode_days=2)
    model = MaskablePPO("MlpPolicy", env, seed=0, policy_kwargs={"net_arch": [256, 256]}, device="cpu")
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    export_policy(model, path, obs_mean=rng.normal(0.0, 0.1, N_OBS), obs_var=rng.uniform(0.01, 1.0, N_OBS),
                  metadata={"note": "bench: freshly initialised"})
    return {"export_s": time.perf_counter() - t0, "net_arch": [256, 256]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--policy", type=Path, default=None, help="an exported .onnx (default: the shipped one)")
    parser.add_argument("--fresh", action="store_true", help="export a fresh [256, 256] policy even if one ships")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    inst = load_config(ROOT / "examples" / "home.toml")
    scn = build_scenario(inst, [sample_path("prices_2024.json.gz")], "2024-03-01", "2024-04-01", 15,
                         weather=sample_path("knmi_debilt_260_2024_T_Q.csv.gz"), model_pv=True)
    home = Home.from_installation(inst)
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.policy is not None:
            path = args.policy
        elif DEFAULT_POLICY.exists() and not args.fresh:
            path = DEFAULT_POLICY
        else:
            path = Path(tmp) / "fresh.onnx"
            report.update(fresh_policy(scn, inst, path))
        report["policy"] = str(path) if path != Path(tmp) / "fresh.onnx" else "fresh MaskablePPO (temp file)"
        report["model_bytes"] = path.stat().st_size
        t0 = time.perf_counter()
        controller = OnnxPolicyController(home, policy_path=path)
        report["load_s"] = time.perf_counter() - t0
        forecaster = Forecaster(scn, home, seed=0)
        rng = np.random.default_rng(0)
        b = home.battery
        advisor = PlanAdvisor(home)
        cases = []
        for i in rng.integers(0, len(scn.frame) - 200, 200):
            energy = float(rng.uniform(b.reserve_kwh, b.capacity_kwh))
            state = State(scn.index[i], 15, energy, 100 * energy / b.capacity_kwh)
            forecasts = forecaster.at(int(i))
            columns = advisor.advise(state, forecasts)[1]
            cases.append((state, forecasts, columns, build_observation(state, forecasts, home, columns)[None, :]))
        for state, forecasts, _, obs in cases[:50]:  # warm-up
            controller.logits(obs)
            controller.decide(state, forecasts)
        logits_s, plan_s, observation_s, decide_s = [], [], [], []
        for k in range(args.n):
            state, forecasts, columns, obs = cases[k % len(cases)]
            t0 = time.perf_counter()
            controller.logits(obs)
            logits_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            advisor.advise(state, forecasts)
            plan_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            build_observation(state, forecasts, home, columns)
            observation_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            controller.decide(state, forecasts)
            decide_s.append(time.perf_counter() - t0)
    imports = runtime_training_imports()
    report.update({
        "n": args.n,
        "minutes": 15,
        "onnx_logits_one_obs": percentiles(logits_s),
        "plan_lp_solve": percentiles(plan_s),
        "build_observation": percentiles(observation_s),
        "decide_incl_plan_and_observation": percentiles(decide_s),
        "runtime_training_imports": imports,
        "runtime_imports_ok": not imports,
    })
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
