"""Benchmark: a fleet evaluation on a local Ray with 1 and then 2 worker CPUs; prints JSON figures.

    .venv/bin/python bench/bench_fleet.py [--homes 8] [--minutes 15] [--controllers none,rule,mpc,oracle]

The fleet: examples/home.toml, east_west.toml and large_battery.toml plus drawn homes (8 in all), each on two 2024
weeks (spring and summer) built from the bundled prices and De Bilt weather: 16 tasks of a few seconds each, so the
work dominates Ray's per-task costs. Each CPU count gets a fresh local Ray (its start is timed apart) and runs the
same fleet through :func:`dwars.scale.fleet.evaluate_fleet`.

Figures per CPU count: Ray's start, the wall time of the run (homes written, scenarios built, every task; and with
the aggregation, files and plots), the seconds inside each task (mean, max, sum = the work), and the time not
explained by the work spread over the CPUs. Then the speed-up from 1 to 2 CPUs, the efficiency, and the serial
fraction of Amdahl's law from the two runs (Karp-Flatt: f = 2/S - 1), with the fixed part T0 and the parallel work
W of wall(N) = T0 + W/N; the projection for more CPUs is T0 plus the rounds of whole tasks, ceil(tasks/N) x the mean
task. Last, what Ray costs per task: a no-op task's round trip, and one built scenario through the object store.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from dwars.data.scenario import Scenario
from dwars.scale import cluster_cpus, ray_session
from dwars.scale.fleet import evaluate_fleet, load_fleet

ROOT = Path(__file__).resolve().parents[1]
WEEKS = (("spring week", "2024-04-08", "2024-04-15"), ("summer week", "2024-07-08", "2024-07-15"))


def fleet_toml(homes: int, minutes: int, controllers: list[str]) -> str:
    files = [str(ROOT / "examples" / f) for f in ("home.toml", "east_west.toml", "large_battery.toml")][:homes]
    text = (f"[fleet]\nhomes = {json.dumps(files)}\nrandom_homes = {homes - len(files)}\nseed = 7\n"
            f"controllers = {json.dumps(controllers)}\n")
    for name, start, end in WEEKS:
        text += (f'\n[[scenario]]\nname = "{name}"\nprices = "sample:prices_2024.json.gz"\n'
                 f'weather = "sample:knmi_debilt_260_2024_T_Q.csv.gz"\nstart = "{start}"\nend = "{end}"\n'
                 f"minutes = {minutes}\n")
    return text


def _noop() -> int:
    return 0


def _size(scn: Scenario) -> int:
    return len(scn.frame)


def ray_costs(ray: Any, scenario_csv: Path, n: int = 200) -> dict[str, float]:
    """Per-task round trip of a no-op task, and a scenario through the object store (put, and a task reading it)."""
    from dwars.data.scenario import read_scenario

    noop = ray.remote(_noop).options(num_cpus=1)
    ray.get([noop.remote() for _ in range(10)])  # workers up
    t0 = time.perf_counter()
    ray.get([noop.remote() for _ in range(n)])
    per_task = (time.perf_counter() - t0) / n
    scn = read_scenario(scenario_csv)
    t0 = time.perf_counter()
    ref = ray.put(scn)
    put_s = time.perf_counter() - t0
    reader = ray.remote(_size).options(num_cpus=1)
    t0 = time.perf_counter()
    ray.get(reader.remote(ref))
    return {"noop_task_roundtrip_ms": 1000 * per_task, "scenario_intervals": len(scn.frame),
            "scenario_put_ms": 1000 * put_s, "scenario_task_read_ms": 1000 * (time.perf_counter() - t0)}


def run(cpus: int, fleet_file: Path, out: Path, measure_costs: bool) -> dict[str, Any]:
    fleet = load_fleet(fleet_file)
    t0 = time.perf_counter()
    with ray_session(num_cpus=cpus) as ray:
        start_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        report = evaluate_fleet(ray, fleet, out, ray_start_s=start_s)
        total_s = time.perf_counter() - t1
        costs = ray_costs(ray, out / report.rows["scenario_file"].iloc[0]) if measure_costs else {}
        assert cluster_cpus(ray) == cpus
    seconds = [t.seconds for t in report.run.tasks]
    work = sum(seconds)
    return {
        "cpus": cpus,
        "ray_start_s": start_s,
        "wall_s": report.run.wall_s,
        "wall_with_outputs_s": total_s,
        "scenario_build_s": report.run.build_s,
        "tasks": len(seconds),
        "errors": len(report.run.errors),
        "task_s_mean": statistics.mean(seconds),
        "task_s_max": max(seconds),
        "work_s": work,
        "unexplained_s": report.run.wall_s - work / cpus,  # dispatch, worker start-up, builds, the driver's files
        **({"ray_costs": costs} if costs else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", type=int, default=8)
    parser.add_argument("--minutes", type=int, default=15, choices=(15, 60))
    parser.add_argument("--controllers", default="none,rule,mpc,oracle")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as folder:
        fleet_file = Path(folder) / "fleet.toml"
        fleet_file.write_text(fleet_toml(args.homes, args.minutes, args.controllers.split(",")), encoding="utf-8")
        one = run(1, fleet_file, Path(folder) / "one", measure_costs=False)
        two = run(2, fleet_file, Path(folder) / "two", measure_costs=True)
    speedup = one["wall_s"] / two["wall_s"]
    serial = 2 / speedup - 1  # Karp-Flatt for 2 CPUs
    parallel_work = 2 * (one["wall_s"] - two["wall_s"])  # W of wall(N) = T0 + W/N from the two runs
    fixed = one["wall_s"] - parallel_work
    figures = {
        "benchmark": "fleet_evaluate_local_ray_1_vs_2_cpus",
        "fleet": {"homes": args.homes, "scenarios": [w[0] for w in WEEKS], "minutes": args.minutes,
                  "intervals_per_task": 7 * 24 * 60 // args.minutes, "controllers": args.controllers.split(",")},
        "one_cpu": one,
        "two_cpus": two,
        "speedup": speedup,
        "efficiency": speedup / 2,
        "serial_fraction_karp_flatt": serial,
        "fixed_s_T0": fixed,
        "parallel_work_s_W": parallel_work,
        # N CPUs: T0 plus the rounds of whole tasks (no task is split: 16 tasks on 16+ CPUs take one task's time).
        "projected_wall_s": {str(n): fixed + math.ceil(two["tasks"] / n) * two["task_s_mean"] for n in (4, 8, 16)},
        "machine_cores": os.cpu_count(),
        "ray": importlib.metadata.version("ray"),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
