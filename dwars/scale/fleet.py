"""Fleet backtests on Ray: many homes x scenarios, each pair scored by the one scorer, summed up per controller.

A fleet file (TOML, e.g. ``examples/fleet.toml``) names the homes (installation files or globs, plus homes drawn by
:func:`dwars.training.randomize.installation_pool`), the controllers, the baseline the savings are counted against,
and the scenarios: built per home from price and weather files (each home its own PV from the weather and its own
household load from ``[load]``), or a prebuilt scenario file used as it is for every home::

    [fleet]
    homes = ["home.toml", "east_west.toml"]      # paths or globs, relative to this file
    random_homes = 18                            # plus this many drawn homes (random-01 ...)
    seed = 7                                     # the draw and the forecast errors
    controllers = ["none", "rule", "mpc", "rl", "oracle"]
    baseline = "none"                            # savings are against this one (always evaluated)
    [[scenario]]
    name = "winter week"
    prices = "sample:prices_2024.json.gz"        # one file or a list
    weather = "sample:knmi_debilt_260_2024_T_Q.csv.gz"
    start = "2024-01-08"                         # first local day
    end = "2024-01-15"                           # first local day NOT included
    minutes = 60
    [[scenario]]
    file = "scenarios/june.csv"                  # a dwars scenario CSV

One Ray task evaluates one (home, scenario) pair with :func:`dwars.policy.evaluate.evaluate` and returns only the
figures (no traces), so results stay small however long the scenario is. Scenarios are built by Ray tasks too, once
per distinct ``([site], [load])`` of the homes (the only parts of a home a build reads), and reach the evaluation
tasks through the object store. What the workers need: dwars installed (``dwars[scale]``), nothing of the driver's
files: input files other than the bundled ``sample:`` ones, a prebuilt scenario and a ``--policy`` file are read on
the driver and shipped through the object store once.

Outputs (:func:`evaluate_fleet`): ``homes/NAME.toml`` (every home, re-runnable alone), ``scenarios/*.csv`` (every
built scenario, as the tasks saw it), ``fleet.csv`` (home x scenario x controller), ``homes.csv`` (home x controller,
summed over the scenarios), ``fleet.json`` (run metadata, per-controller distributions, errors) and ``plots/``.
A row of ``fleet.csv`` is reproduced exactly by ``dwars evaluate --config homes/NAME.toml --scenario
scenarios/X.csv --seed SEED`` (the columns ``config`` and ``scenario_file``; ``rerun`` in fleet.json).

Capture = (baseline - controller) / (baseline - oracle) objective: the share of what perfect foresight could save
that a controller saves. It is defined only with ``oracle`` among the controllers and only where the oracle saves at
least :data:`CAPTURE_MIN_SAVING_EUR` (a home or week where even perfect foresight saves nothing has no share to
capture, and a ratio of two near-zero sums is noise); otherwise it is empty (NaN in the CSV, null in the JSON).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dwars import __version__
from dwars.config import Installation, LoadConfig, SiteConfig
from dwars.data.scenario import Scenario, build_scenario, read_scenario, write_scenario
from dwars.errors import DwarsError
from dwars.scale import cluster_cpus
from dwars.scale.fleet_file import Fleet, FleetHome, ScenarioSpec, load_fleet, slug
from dwars.scale.fleet_report import (
    CAPTURE_MIN_SAVING_EUR,
    distribution,
    fleet_table,
    homes_table,
    jsonable,
    plot_fleet,
    summary,
)
from dwars.scale.homes import write_installation

__all__ = ["CAPTURE_MIN_SAVING_EUR", "Fleet", "FleetHome", "FleetReport", "FleetRun", "TaskResult", "evaluate_fleet",
           "fleet_table", "homes_table", "load_fleet", "run_fleet"]


# --------------------------------------------------------------------------------------------------
# The Ray tasks. Plain functions, made remote when a run starts: importing this module needs no Ray.
# --------------------------------------------------------------------------------------------------


def _materialise(label: str, content: bytes) -> Path:
    """A shipped file on this worker: written once per content (keeping its name, which tells its format)."""
    digest = hashlib.sha256(content).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"dwars-fleet-{digest}" / Path(label).name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent)
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.replace(tmp, path)  # atomic: two workers of one node may write it at once
    return path


def build_task(spec: ScenarioSpec, inst: Installation, labels: tuple[str, ...], *contents: bytes) -> Scenario:
    """Build ``spec`` for a home (its ``[site]`` and ``[load]``), as a Ray task.

    ``labels`` are the driver's input files and ``contents`` their bytes (resolved from the object store); samples
    are read from this worker's dwars. The scenario is returned as it reads back from its CSV, so that the file the
    run writes reproduces the figures exactly.
    """
    from dwars.data.io import sample_path

    local = {label: _materialise(label, data) for label, data in zip(labels, contents, strict=True)}

    def resolve(name: str) -> Path:
        return sample_path(name.removeprefix("sample:")) if name.startswith("sample:") else local[name]

    scn = build_scenario(
        inst, [resolve(p) for p in spec.prices], spec.start, spec.end, spec.minutes,
        weather=resolve(spec.weather) if spec.weather else None,
        load=spec.load if spec.load == "profile" else resolve(spec.load),
        annual_load_kwh=spec.annual_load_kwh,
        pv=None if spec.pv is None else "none" if spec.pv == "none" else resolve(spec.pv),
        fill=spec.fill,  # type: ignore[arg-type]
    )
    names = {str(path): label for label, path in local.items()}
    sources = [{**s, "path": names.get(s["path"], s["path"])} for s in scn.meta.get("sources", [])]
    meta = {**scn.meta, "sources": sources, "installation": f"homes with the [site] and [load] of {inst.name}",
            "fleet_scenario": spec.name}
    with tempfile.TemporaryDirectory(prefix="dwars-fleet-") as folder:
        path = write_scenario(Scenario(scn.frame, scn.minutes, meta), Path(folder) / "scenario.csv")
        return read_scenario(path)


def evaluate_task(inst: Installation, scenario: Scenario, controllers: tuple[str, ...], seed: int,
                  policy_label: str | None, policy: bytes | None) -> dict[str, Any]:
    """Evaluate one home on one scenario, as a Ray task; returns the figures per controller, never the traces.

    An error of the evaluation is returned (not raised), with its traceback, so the driver records it and the other
    homes carry on.
    """
    from dwars.policy.evaluate import evaluate

    t0 = time.perf_counter()
    out: dict[str, Any] = {"worker": f"{socket.gethostname()}:{os.getpid()}"}
    try:
        policy_path = str(_materialise(policy_label, policy)) if policy is not None and policy_label else None
        result = evaluate(inst, scenario, controllers, seed=seed, policy_path=policy_path)
        # The deadline records can run to hundreds per controller over a year: dwars evaluate on the row shows them.
        out["results"] = {c: {k: v for k, v in r.items() if k != "missed_deadlines"}
                          for c, r in result.to_json()["controllers"].items()}
    except Exception as err:  # any failure of one home is reported, the fleet goes on
        out["error"] = str(err) if isinstance(err, DwarsError) else f"{type(err).__name__}: {err}"
        out["traceback"] = traceback.format_exc()
    out["seconds"] = time.perf_counter() - t0
    return out


# --------------------------------------------------------------------------------------------------
# The driver.
# --------------------------------------------------------------------------------------------------


@dataclass
class TaskResult:
    """What one (home, scenario) task gave: figures per controller, or the error; seconds inside the task."""

    home: str
    scenario: str
    results: dict[str, dict[str, Any]] | None
    seconds: float
    worker: str = ""
    error: str | None = None
    traceback: str | None = None


@dataclass
class FleetRun:
    """The tasks of a run and how it went."""

    fleet: Fleet
    tasks: list[TaskResult]
    scenario_files: dict[tuple[str, str], str]  # (home, scenario) -> the scenario CSV (relative to out when built)
    wall_s: float
    build_s: float
    ray: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[TaskResult]:
        return [t for t in self.tasks if t.error is not None]


def _cause(err: BaseException) -> str:
    """The message of a task's own exception behind Ray's wrapper."""
    cause = getattr(err, "cause", None)
    return str(cause) if cause is not None else f"{type(err).__name__}: {err}"


def _measured_pv_warning(scn: Scenario, spec: ScenarioSpec, homes: Sequence[FleetHome]) -> str | None:
    if not scn.has_measured_pv:
        return None
    with_pv = [h.name for h in homes if h.installation.pv is not None]
    if not with_pv:
        return None
    return (f"scenario {spec.name!r} carries measured PV (pv_kw): every home gets that PV, whatever its [pv] says "
            f"({len(with_pv)} homes have their own [pv], e.g. {with_pv[0]})")


def run_fleet(ray: Any, fleet: Fleet, out: str | Path,
              on_task: Callable[[TaskResult, int, int], None] | None = None) -> FleetRun:
    """Evaluate every home on every scenario as Ray tasks; writes ``homes/`` and ``scenarios/`` under ``out``.

    Parameters
    ----------
    ray : the connected ``ray`` module (see :func:`dwars.scale.ray_session`).
    fleet : from :func:`load_fleet`.
    out : the run folder.
    on_task : called on the driver as each task finishes, with (result, done, total): a progress bar.

    Raises
    ------
    DwarsError
        when a scenario cannot be built or read (bad or short input data: no home could be evaluated on it).
    """
    out = Path(out)
    t0 = time.perf_counter()
    warnings = list(fleet.warnings)
    for home in fleet.homes:
        write_installation(home.installation, out / "homes" / home.file_name,
                           f"{home.name}: a home of the fleet {fleet.source.name} ({home.origin})")
    remote_build = ray.remote(build_task).options(num_cpus=1)
    remote_eval = ray.remote(evaluate_task).options(num_cpus=1)

    # The driver's files go through the object store once, whatever the number of tasks that read them.
    file_refs: dict[str, Any] = {}
    for spec in fleet.scenarios:
        for name in spec.input_files():
            if name not in file_refs:
                file_refs[name] = ray.put(Path(name).read_bytes())

    scenario_refs: dict[tuple[str, str], Any] = {}  # (home, scenario) -> ref
    scenario_files: dict[tuple[str, str], str] = {}
    builds: list[tuple[ScenarioSpec, list[FleetHome], Any]] = []
    for spec in fleet.scenarios:
        if spec.file is not None:
            try:
                scn = read_scenario(spec.file)
            except DwarsError as err:
                raise DwarsError(f"scenario {spec.name!r}: {err}") from None
            ref = ray.put(scn)
            if (warning := _measured_pv_warning(scn, spec, fleet.homes)) is not None:
                warnings.append(warning)
            for home in fleet.homes:
                scenario_refs[home.name, spec.name] = ref
                scenario_files[home.name, spec.name] = str(spec.file)
            continue
        # A build reads a home's [site] (time zone, location) and [load] only: homes that share them share it.
        groups: dict[tuple[SiteConfig, LoadConfig], list[FleetHome]] = {}
        for home in fleet.homes:
            groups.setdefault((home.installation.site, home.installation.load), []).append(home)
        labels = tuple(spec.input_files())
        for members in groups.values():
            ref = remote_build.remote(spec, members[0].installation, labels, *(file_refs[n] for n in labels))
            builds.append((spec, members, ref))

    t_build = time.perf_counter()
    count = {spec.name: sum(1 for s, _, _ in builds if s is spec) for spec in fleet.scenarios}
    done: dict[str, int] = {}
    for spec, members, ref in builds:
        try:
            scn = ray.get(ref)
        except ray.exceptions.RayError as err:
            raise DwarsError(f"scenario {spec.name!r} (for {members[0].name}): {_cause(err)}") from None
        done[spec.name] = done.get(spec.name, 0) + 1
        # One file per scenario; several (named after a home of each group) when the homes' [site] or [load] differ.
        rel = f"scenarios/{slug(spec.name)}" + (f"_{slug(members[0].name)}" if count[spec.name] > 1 else "") + ".csv"
        write_scenario(scn, out / rel)
        if done[spec.name] == 1 and (warning := _measured_pv_warning(scn, spec, fleet.homes)) is not None:
            warnings.append(warning)
        for home in members:
            scenario_refs[home.name, spec.name] = ref
            scenario_files[home.name, spec.name] = rel
    build_s = time.perf_counter() - t_build

    policy_label = fleet.policy.name if fleet.policy is not None else None
    policy_ref = ray.put(fleet.policy.read_bytes()) if fleet.policy is not None else None
    pending: dict[Any, tuple[str, str]] = {}
    for home in fleet.homes:
        for spec in fleet.scenarios:
            ref = remote_eval.remote(home.installation, scenario_refs[home.name, spec.name], fleet.controllers,
                                     fleet.seed, policy_label, policy_ref)
            pending[ref] = (home.name, spec.name)
    total = len(pending)
    tasks: list[TaskResult] = []
    waiting = list(pending)
    try:
        while waiting:
            # What is ready within a second, up to a batch: the bar moves, and a fleet of thousands of tasks is not
            # scanned once per finished task.
            ready, waiting = ray.wait(waiting, num_returns=min(len(waiting), 256), timeout=1.0)
            for ref in ready:
                home_name, scenario_name = pending[ref]
                try:
                    got = ray.get(ref)
                    task = TaskResult(home_name, scenario_name, got.get("results"), got["seconds"], got["worker"],
                                      got.get("error"), got.get("traceback"))
                except ray.exceptions.RayError as err:  # the worker died (memory, a lost node): this task only
                    task = TaskResult(home_name, scenario_name, None, float("nan"), "", _cause(err))
                tasks.append(task)
                if on_task is not None:
                    on_task(task, len(tasks), total)
    except KeyboardInterrupt:
        for ref in waiting:  # a cluster would go on with them otherwise
            ray.cancel(ref)
        raise
    return FleetRun(fleet, tasks, scenario_files, time.perf_counter() - t0, build_s, _cluster(ray), warnings)


def _cluster(ray: Any) -> dict[str, Any]:
    """Where the run ran: the cluster's address, CPUs, live nodes and Ray's version."""
    try:
        address = ray.get_runtime_context().gcs_address
    except Exception:  # a Ray Client connection (ray://) may not tell it; the figures below it does
        address = None
    return {"address": address, "cpus": cluster_cpus(ray),
            "nodes": sum(1 for n in ray.nodes() if n.get("Alive")), "version": ray.__version__}


@dataclass
class FleetReport:
    """A finished fleet run: the tables, the summary per controller, the metadata and the files written."""

    run: FleetRun
    rows: pd.DataFrame
    homes: pd.DataFrame
    controllers: dict[str, Any]
    meta: dict[str, Any]
    paths: list[Path]


def evaluate_fleet(ray: Any, fleet: Fleet, out: str | Path, *, ray_start_s: float | None = None,
                   on_task: Callable[[TaskResult, int, int], None] | None = None, plots: bool = True) -> FleetReport:
    """Run the fleet (:func:`run_fleet`) and write ``fleet.csv``, ``homes.csv``, ``fleet.json`` and the plots.

    ``ray_start_s`` (how long connecting to Ray took) goes into the metadata with the run's wall time and the
    time of every task, so the fixed costs of a run can be told from its work.
    """
    out = Path(out)
    run = run_fleet(ray, fleet, out, on_task)
    rows = fleet_table(run)
    homes = homes_table(run, rows)
    controllers = summary(run, rows, homes)
    seconds = pd.Series([t.seconds for t in run.tasks], dtype=float)
    policy = f" --policy {fleet.policy}" if fleet.policy is not None and "rl" in fleet.controllers else ""
    meta = {
        "dwars_fleet": 1,
        "dwars": __version__,
        "fleet": str(fleet.source),
        "controllers": list(fleet.controllers),
        "baseline": fleet.baseline,
        "seed": fleet.seed,
        "policy": str(fleet.policy) if fleet.policy is not None else None,
        "capture_min_saving_eur": CAPTURE_MIN_SAVING_EUR,
        "homes": [{"name": h.name, "origin": h.origin, "config": f"homes/{h.file_name}"} for h in fleet.homes],
        "scenarios": [{k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(s).items()
                       if v is not None and v != () and v != ""} for s in fleet.scenarios],
        "ray": {**run.ray, "start_s": ray_start_s},
        "wall_s": run.wall_s,
        "scenario_build_s": run.build_s,
        "task_seconds": {"count": int(seconds.count()), "sum": float(seconds.sum()), **distribution(seconds)},
        "tasks": [{"home": t.home, "scenario": t.scenario, "seconds": t.seconds, "worker": t.worker}
                  for t in run.tasks],
        "errors": [{"home": t.home, "scenario": t.scenario, "error": t.error, "traceback": t.traceback}
                   for t in run.errors],
        "warnings": run.warnings,
        "rerun": f"cd {out.resolve()} && dwars evaluate --config CONFIG --scenario SCENARIO_FILE "
                 f"--controllers {','.join(fleet.controllers)} --seed {fleet.seed}{policy}  "
                 "(CONFIG, SCENARIO_FILE: the row's config and scenario_file in fleet.csv)",
    }
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "fleet.csv", out / "homes.csv", out / "fleet.json"]
    rows.to_csv(paths[0], index=False)
    homes.to_csv(paths[1], index=False)
    paths[2].write_text(json.dumps(jsonable({**meta, "by_controller": controllers}), indent=2, default=str) + "\n",
                        encoding="utf-8")
    if plots and not rows.empty:
        paths += plot_fleet(rows, homes, fleet.controllers, fleet.baseline, out / "plots")
    return FleetReport(run, rows, homes, controllers, meta, paths)
