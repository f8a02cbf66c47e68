"""``dwars sweep``: a hyper-parameter sweep of ``dwars train`` on Ray Tune, judged by ``dwars evaluate``.

Each trial trains with one recipe of the search space (:mod:`dwars.scale.space`): the very trainer of
``dwars train`` (:func:`dwars.training.train.train`), on data built once by the driver and shared through Ray's
object store. After behaviour cloning and then every ``validate_every`` PPO steps the trial exports its policy to
ONNX (:func:`dwars.training.export.export_policy`, the shipped format) and scores it with
:func:`dwars.policy.evaluate.evaluate` (the ``rl`` controller through the shield, as on the Pi) on the validation
homes and periods. It reports that objective to Tune with the model as a checkpoint; ASHA stops trials whose
objective trails the others at the same point. At the end the best checkpoint is exported through
``dwars export``'s pipeline (parity check included) to ``OUT/best_policy.onnx``, with its recipe
(``best_recipe.toml``, for ``dwars train --hyper``), a table of all trials (``trials.csv``, ``sweep.json``) and their
learning curves (``curves.png``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dwars.config import Installation
from dwars.data.scenario import Scenario, build_scenario
from dwars.errors import DwarsError
from dwars.scale.space import Period, SweepSpec, expected_reports

#: Controllers scored once on the validation set, to put the trials' objective in context.
BASELINES = ("rule", "mpc")


@dataclass
class SweepData:
    """What every trial shares (put in Ray's object store once): training and validation data."""

    scenarios: list[Scenario]
    installations: list[Installation]
    validation: list[tuple[Installation, Scenario]]


@dataclass
class SweepResult:
    """What :func:`run_sweep` found."""

    trials: pd.DataFrame
    best: dict[str, Any]
    baselines: dict[str, float]
    out: Path
    figures: dict[str, Any] = field(default_factory=dict)


def period_scenario(inst: Installation, period: Period, annual_load_kwh: float | None = None) -> Scenario:
    """Real prices and weather of ``period`` for ``inst`` (its PV is modelled from the weather when scored)."""
    return build_scenario(inst, [period.prices], str(period.start.date()), str(period.end.date()), period.minutes,
                          weather=period.weather, annual_load_kwh=annual_load_kwh, fill="hold")


def build_data(spec: SweepSpec) -> SweepData:
    """The training scenarios and homes, and the validation pairs of a sweep file."""
    from dwars.training.data import recipe_installations, recipe_scenarios

    if spec.data_period is None:
        scenarios = recipe_scenarios(spec.base, spec.recipe["data"])
    else:
        scenarios = [period_scenario(spec.base, spec.data_period, load) for load in spec.annual_load_kwh]
    homes = recipe_installations(spec.base, spec.recipe["randomize"])
    validation = [(home, period_scenario(home, p)) for home in spec.validation_homes for p in spec.validation_periods]
    return SweepData(scenarios, homes, validation)


def validation_figures(policy: str | Path | None, validation: list[tuple[Installation, Scenario]],
                       controller: str = "rl") -> dict[str, float]:
    """``dwars evaluate``'s figures of ``controller`` (``policy``: the ONNX file of ``rl``) summed over the
    validation pairs: objective_eur (the sweep's objective), energy cost, violations, shield interventions."""
    from dwars.policy.evaluate import evaluate

    total = {"objective_eur": 0.0, "energy_cost_eur": 0.0, "violations": 0.0, "shield_interventions": 0.0}
    for inst, scenario in validation:
        result = evaluate(inst, scenario, [controller], policy_path=None if policy is None else str(policy))
        figures = result.results[controller]
        for key in total:
            value = figures[key]
            total[key] += float(sum(value.values()) if isinstance(value, dict) else value)  # violations: per goal
    return total


def _baseline(name: str, validation: list[tuple[Installation, Scenario]]) -> float:
    return validation_figures(None, validation, name)["objective_eur"]


def dwars_trial(config: dict[str, Any], spec: SweepSpec, data: SweepData, baselines: dict[str, float]) -> None:
    """One Tune trial: train with ``config`` drawn from the space, reporting the validation objective."""
    import torch
    from ray import tune

    from dwars.training.export import export_policy
    from dwars.training.train import train

    hyper = spec.trial_recipe(config)
    hyper["bc"]["workers"] = 1  # the trial is the unit of parallelism: no process pool inside a Ray worker
    cpus = int(spec.options["cpus_per_trial"])
    torch.set_num_threads(cpus)
    folder = Path(tune.get_context().get_trial_dir()) / "run"
    started = time.perf_counter()

    def validate(model: Any, stats: Any, timesteps: int) -> bool:
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = Path(tmp)
            model.save(checkpoint / "model.zip")
            stats.save(checkpoint / "obs_stats.npz")
            (checkpoint / "train.json").write_text(json.dumps({"seed": hyper["train"]["seed"], "observation":
                                                               hyper["env"].get("observation", "full"),
                                                               "ppo": {"timesteps": timesteps}}), encoding="utf-8")
            policy = export_policy(model, checkpoint / "policy.onnx", obs_mean=stats.mean, obs_var=stats.var,
                                   clip_obs=stats.clip)
            figures = validation_figures(policy, data.validation)
            metrics = {**figures, "ppo_timesteps": timesteps, "wall_s": time.perf_counter() - started,
                       **{f"vs_{name}_eur": figures["objective_eur"] - value for name, value in baselines.items()}}
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(checkpoint)))
        return True

    train(data.scenarios, data.installations, folder, hyper, validate=validate,
          validate_every=int(spec.options["validate_every"]))


def tune_space(spec: SweepSpec) -> dict[str, Any]:
    """The sweep file's space in Ray Tune's terms (fixed values stay plain)."""
    from ray import tune

    kinds: dict[str, Callable[..., Any]] = {
        "choice": tune.choice, "grid": tune.grid_search, "uniform": lambda a: tune.uniform(*a),
        "loguniform": lambda a: tune.loguniform(*a), "randint": lambda a: tune.randint(*a),
    }
    out: dict[str, Any] = {}
    for key, value in spec.space.items():
        if isinstance(value, dict):
            kind, args = next(iter(value.items()))
            out[key] = kinds[kind](args)
        else:
            out[key] = value
    return out


def max_reports(spec: SweepSpec) -> int:
    """The most validation reports a trial can make (ASHA's ``max_t``)."""
    steps = spec.space.get("train.total_timesteps", spec.recipe["train"]["total_timesteps"])
    if isinstance(steps, dict):  # drawn: the largest value it can take
        steps = max(next(iter(steps.values())))
    return expected_reports(int(steps), int(spec.options["validate_every"])) + 1


def run_sweep(spec: SweepSpec, out: str | Path, address: str | None = None, workers: int | None = None,
              num_samples: int | None = None, storage: str | None = None, export: bool = True,
              status: Callable[[str], None] | None = None) -> SweepResult:
    """Run the sweep of ``spec`` on Ray (local with ``workers`` CPUs, or the cluster at ``address``) and write
    its results to ``out``. ``storage``: where Tune keeps trials and checkpoints (default ``out/tune``; on a
    cluster a folder every node sees, or ``s3://...``). ``export``: write the best policy to
    ``out/best_policy.onnx``."""
    from dwars.scale import cluster_cpus, ray_session

    # Tune warns when a trial checkpoints more often than every 5 s: ours are small and say which model was best.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    say = status or (lambda _: None)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    say("building the training and validation data ...")
    data = build_data(spec)
    with ray_session(address, workers) as ray:
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search import BasicVariantGenerator

        say(f"scoring {', '.join(BASELINES)} on the validation set ...")
        shared = ray.put(data.validation)
        remote = ray.remote(_baseline)
        baselines = dict(zip(BASELINES, ray.get([remote.remote(n, shared) for n in BASELINES]), strict=True))
        options = spec.options
        metric = str(options["metric"])
        scheduler = None
        if options["early_stopping"] == "asha":
            scheduler = ASHAScheduler(time_attr="training_iteration", max_t=max_reports(spec),
                                      grace_period=int(options["grace_period"]),
                                      reduction_factor=int(options["reduction_factor"]))
        trainable = tune.with_resources(
            tune.with_parameters(dwars_trial, spec=spec, data=data, baselines=baselines),
            {"cpu": int(options["cpus_per_trial"]),
             # Ray starts no more trials on a node than its memory holds (the recipe's episode tables are GBs)
             **({"memory": float(options["memory_gb_per_trial"]) * 2**30} if options["memory_gb_per_trial"] else {})})
        tuner = tune.Tuner(
            trainable, param_space=tune_space(spec),
            tune_config=tune.TuneConfig(metric=metric, mode="min", scheduler=scheduler,
                                        # the draws of the space are reproducible from the file's seed
                                        search_alg=BasicVariantGenerator(random_state=int(options["seed"])),
                                        num_samples=int(num_samples or options["num_samples"]),
                                        max_concurrent_trials=int(options["max_concurrent"]) or None),
            run_config=tune.RunConfig(
                name="tune", storage_path=storage or str(out / "tune"), verbose=1,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=metric,
                                                        checkpoint_score_order="min")))
        cpus = cluster_cpus(ray)
        say(f"running the trials on {cpus} CPUs ...")
        grid = tuner.fit()
    table = trials_table(grid, spec, metric)
    if table.empty or table[metric].isna().all():
        errors = "; ".join(str(e) for e in table.get("error", pd.Series(dtype=str)).dropna())
        raise DwarsError(f"no trial reported a validation objective{': ' + errors if errors else ''}")
    best_row = table.iloc[0]
    best = {k: _plain(best_row[k]) for k in table.columns}
    figures = {"wall_s": time.perf_counter() - started, "cpus": cpus, "trials": len(table),
               "stopped_early": int((table["status"] == "stopped early").sum()),
               "errors": int((table["status"] == "error").sum())}
    if export:
        best_result = grid.get_best_result(metric=metric, mode="min", scope="all")
        checkpoint = best_result.get_best_checkpoint(metric, "min")
        with checkpoint.as_directory() as folder:
            from dwars.training.export import export_run

            check = export_run(folder, out / "best_policy.onnx", extra_metadata={
                "sweep": spec.path.name, "trial": best["trial"], "validation_objective_eur": best[metric]})
        best["parity"] = check
        best["policy"] = str(out / "best_policy.onnx")
        import tomlkit

        recipe = spec.trial_recipe(best_result.config)
        trained_on = (f"# The sweep trained on {spec.data_period.label}; dwars train trains on [data] below.\n"
                      if spec.data_period is not None else "")
        (out / "best_recipe.toml").write_text(
            f"# The best trial of {spec.path.name} ({best['trial']}): dwars train --hyper best_recipe.toml\n"
            + trained_on + tomlkit.dumps(recipe), encoding="utf-8")
    table.to_csv(out / "trials.csv", index=False)
    (out / "sweep.json").write_text(json.dumps({
        "dwars_sweep": 1, "sweep_file": str(spec.path), "metric": metric, "baselines": baselines, "best": best,
        "figures": figures, "trials": [{k: _plain(v) for k, v in row.items()} for row in table.to_dict("records")],
    }, indent=2, default=str) + "\n", encoding="utf-8")
    with contextlib.suppress(DwarsError):  # matplotlib missing: the figures are in trials.csv
        plot_curves(grid, metric, baselines, out / "curves.png", tuple(spec.distributions))
    return SweepResult(table, best, baselines, out, figures)


def trials_table(grid: Any, spec: SweepSpec, metric: str) -> pd.DataFrame:
    """One row per trial, best first: its drawn values, reports, best and last objective, status."""
    limit = max_reports(spec) - 1
    rows = []
    for result in grid:
        history = result.metrics_dataframe
        row: dict[str, Any] = {"trial": _trial_id(result)}
        row.update({f"config/{k}": result.config.get(k) for k in spec.distributions})
        has = history is not None and metric in getattr(history, "columns", [])
        best_at = int(history[metric].idxmin()) if has and history[metric].notna().any() else None
        row["reports"] = len(history) if has else 0
        row[metric] = float(history[metric].min()) if best_at is not None else math.nan
        row["last_" + metric] = float(history[metric].iloc[-1]) if best_at is not None else math.nan
        for key in ("violations", "shield_interventions", "ppo_timesteps", *(f"vs_{b}_eur" for b in BASELINES)):
            if key != metric:
                row[key] = float(history[key].iloc[best_at]) if best_at is not None and key in history else math.nan
        row["status"] = ("error" if result.error is not None else
                         "stopped early" if row["reports"] < limit else "finished")
        row["error"] = str(result.error).splitlines()[0][:200] if result.error is not None else None
        rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty:
        table = table.sort_values(metric, na_position="last").reset_index(drop=True)
    return table


def plot_curves(grid: Any, metric: str, baselines: dict[str, float], path: Path,
                keys: tuple[str, ...] = ()) -> Path:
    """The validation objective of every trial against its PPO steps (labelled with its drawn ``keys``), with the
    baselines as lines."""
    from dwars.policy.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5))
    for result in grid:
        history = result.metrics_dataframe
        if history is None or metric not in history:
            continue
        drawn = ", ".join(f"{k}={_short(result.config.get(k))}" for k in keys)
        ax.plot(history["ppo_timesteps"], history[metric], marker="o",
                label=f"{_trial_id(result)}: {drawn}" if drawn else _trial_id(result))
    if metric == "objective_eur":
        for name, value in baselines.items():
            ax.axhline(value, linestyle="--", color="grey")
            ax.text(1.0, value, f" {name}", transform=ax.get_yaxis_transform(), va="center", fontsize=8,
                    color="grey")
    ax.set_xlabel("PPO time steps (0: after behaviour cloning)")
    ax.set_ylabel(f"validation {metric} (EUR, lower is better)")
    ax.set_title("sweep: validation objective per trial")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _short(value: Any) -> str:
    return f"{value:.2g}" if isinstance(value, float) else str(value)


def _trial_id(result: Any) -> str:
    """Tune's id of the trial behind a result (also for a trial that failed before its first report)."""
    if result.metrics and "trial_id" in result.metrics:
        return str(result.metrics["trial_id"])
    parts = Path(str(result.path)).name.split("_") if result.path else []
    return "_".join(parts[2:4]) if len(parts) >= 4 else "?"  # dwars_trial_<experiment>_<number>_...


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar (numpy numbers to Python, NaN to None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
