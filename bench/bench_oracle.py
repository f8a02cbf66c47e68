"""Benchmark: the oracle LP over one year (15 and 60 minutes) and the MPC's time per decision; prints JSON.

    .venv/bin/python bench/bench_oracle.py [--repeat 3] [--config examples/home.toml] [--mpc-days 2]

Figures per resolution: LP size (columns, rows, non-zeros), build and solve time (median and best of the
repeats; the solve includes pass 2 when the year has negative import prices, see dwars.policy.lp), the objective
parts and the LP lower bound. Scenario: examples/home.toml on the bundled 2024 prices and De Bilt weather, PV
modelled once into the scenario. The MPC part replays ``--mpc-days`` days at 15 minutes with perfect PV/load
forecasts and the real price publication (until the next local midnight before 13:00, one day more after) and
reports milliseconds per decide (p50, p99, max), the LP sizes and the objective next to the oracle's.
HiGHS runs on one thread.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dwars.config import load_config
from dwars.data.io import sample_path
from dwars.data.scenario import Scenario, build_scenario
from dwars.env.dispatch import simulate_interval
from dwars.policy.base import Forecasts, Home, State
from dwars.policy.mpc import MpcController
from dwars.policy.oracle import OracleProblem, oracle_problem, solve_problem

ROOT = Path(__file__).resolve().parents[1]


def oracle_figures(home: Home, scn: Scenario, repeat: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    problem = oracle_problem(home, scn)
    prep_s = time.perf_counter() - t0
    walls, solves, builds, schedule = [], [], [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        schedule = solve_problem(home, problem)
        walls.append(time.perf_counter() - t0)
        solves.append(schedule.solve_s)
        builds.append(schedule.build_s)
    assert schedule is not None
    s = schedule.summary()
    return {
        "intervals": len(scn.frame),
        "n_vars": s["n_vars"],
        "n_rows": s["n_rows"],
        "n_nonzeros": s["n_nonzeros"],
        "deadlines": len(problem.deadline_steps),
        "problem_prep_s": prep_s,
        "build_s_median": statistics.median(builds),
        "solve_s_median": statistics.median(solves),
        "solve_s_best": min(solves),
        "total_s_median": statistics.median(walls),
        "passes": s["passes"],
        "trick_prone_intervals": schedule.info["trick_prone_intervals"],
        "objective_eur": s["objective_eur"],
        "energy_cost_eur": s["energy_cost_eur"],
        "wear_eur": s["wear_eur"],
        "final_energy_value_eur": s["final_energy_value_eur"],
        "lower_bound_eur": s["lower_bound_eur"],
        "total_slack_kwh": s["total_slack_kwh"],
        "status": s["status"],
    }


def price_known_end(p: OracleProblem, tz: str) -> np.ndarray:
    local = p.times.tz_convert(tz)
    days = np.where(local.hour >= 13, 2, 1)
    ends = [(t.normalize().tz_localize(None) + pd.Timedelta(days=int(d))).tz_localize(tz)
            for t, d in zip(local, days, strict=True)]
    return np.searchsorted(p.times.as_unit("ns").asi8, pd.DatetimeIndex(ends).tz_convert("UTC").as_unit("ns").asi8)


def mpc_figures(home: Home, scn: Scenario) -> dict[str, Any]:
    p = oracle_problem(home, scn)
    best = solve_problem(home, p)
    known = price_known_end(p, home.timezone)
    n, horizon = len(p.pv_kw), 36 * 60 // p.minutes
    step = pd.Timedelta(minutes=p.minutes)
    ctrl = MpcController(home)
    b = home.battery
    e, total, sizes = p.energy0_kwh, 0.0, []
    for i in range(n):
        end = min(n, i + horizon)
        k_end = min(int(known[i]), end)
        goals = tuple(g for g in p.goals if p.times[i] < g.time <= p.times[i] + (end - i) * step)
        fc = Forecasts(p.times[i:end], p.pv_kw[i:end], p.load_kw[i:end], np.zeros(k_end - i),
                       p.import_price[i:k_end], p.export_price[i:k_end], goals)
        sizes.append(k_end - i)
        d = ctrl.decide(State(p.times[i], p.minutes, e, 100 * e / b.capacity_kwh), fc)
        r = simulate_interval(e, int(d.mode), d.power_kw, p.pv_kw[i], p.load_kw[i], p.import_price[i],
                              p.export_price[i], p.dt_h, b, home.grid_limit_kw, d.curtail_pv)
        e = float(r.energy_kwh)
        total += float(r.energy_cost_eur + r.wear_eur)
    return {
        "intervals": n,
        "minutes": p.minutes,
        **ctrl.timing(),
        "lp_intervals_min": int(min(sizes)),
        "lp_intervals_max": int(max(sizes)),
        "objective_eur": total - p.terminal_value_eur_per_kwh * (e - p.energy0_kwh),
        "oracle_objective_eur": best.objective_eur,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--config", default=str(ROOT / "examples" / "home.toml"))
    parser.add_argument("--mpc-days", type=int, default=2)
    args = parser.parse_args()

    inst = load_config(args.config)
    home = Home.from_installation(inst)
    prices = [sample_path("prices_2024.json.gz")]
    weather = sample_path("knmi_debilt_260_2024_T_Q.csv.gz")
    figures: dict[str, Any] = {"benchmark": "oracle_lp_one_year_and_mpc", "config": Path(args.config).name,
                               "repeat": args.repeat}
    for minutes in (15, 60):
        t0 = time.perf_counter()
        scn = build_scenario(inst, prices, "2024-01-01", "2025-01-01", minutes, weather=weather, model_pv=True)
        build_s = time.perf_counter() - t0
        figures[f"oracle_{minutes}min"] = {"scenario_build_s": build_s, **oracle_figures(home, scn, args.repeat)}
    start = pd.Timestamp("2024-05-10")
    end = start + pd.Timedelta(days=args.mpc_days)
    mpc_scn = build_scenario(inst, prices, f"{start:%Y-%m-%d}", f"{end:%Y-%m-%d}", 15, weather=weather,
                             model_pv=True)
    figures["mpc_15min"] = {"start": f"{start:%Y-%m-%d}", "days": args.mpc_days, **mpc_figures(home, mpc_scn)}
    figures["highspy"] = importlib.metadata.version("highspy")
    figures["python"] = platform.python_version()
    figures["machine"] = platform.machine()
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
