"""The sweep file of ``dwars sweep``: a base recipe, a search space over its keys, the data and the validation set.

A sweep file is TOML (``examples/sweep.toml`` is the documented example)::

    [sweep]
    recipe = ""                 # base hyper-parameters (default: dwars/training/ppo.toml); paths are relative to
    config = "home.toml"        # this file. config: the home that is always in the training pool
    num_samples = 4             # draws of the random part of the space (each combined with every grid value)
    validate_every = 20000      # PPO time steps between two validation reports
    early_stopping = "asha"     # stop trials whose validation objective trails (Ray Tune's ASHA), or "none"
    seed = 0                    # the draws of the space (each trial's training seed is train.seed)

    [data]                      # training data; left out: the recipe's [data] (years of real data in data_dir)
    prices = "sample:prices_2024.json.gz"
    weather = "sample:knmi_debilt_260_2024_T_Q.csv.gz"
    start = "2024-03-01"
    end = "2024-03-15"

    [validation]                # the objective: dwars evaluate's objective_eur of the exported policy, summed
    homes = ["home.toml"]
    periods = [["2024-06-03", "2024-06-10"]]

    [space]                     # dotted recipe keys: a table draws a value per trial, a plain value is fixed
    "ppo.learning_rate" = { loguniform = [1e-5, 3e-4] }
    "bc.enabled" = { choice = [true, false] }
    "env.observation" = { grid = ["full", "no_plan"] }
    "train.total_timesteps" = 60000

Distributions: ``choice`` (a list), ``grid`` (a list: every value is tried), ``uniform`` and ``loguniform``
([low, high]), ``randint`` ([low, high), integers). This module only reads and checks; :mod:`dwars.scale.sweep`
turns the space into Ray Tune's.
"""

from __future__ import annotations

import copy
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dwars.config import ConfigError, Installation, load_config, unknown_key
from dwars.data.io import sample_path
from dwars.errors import DataError

DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform", "randint")
#: Recipe keys a space may set although ``ppo.toml`` leaves them out (they have defaults in the trainer).
OPTIONAL_KEYS = ("bc.advantage_margin_eur", "bc.random_soc_share", "bc.workers", "ppo.critic_warmup_steps")
#: Keys whose values are names: checked before any trial starts.
NAMED_VALUES = {
    "env.shield": ("mask", "correct"),
    "bc.labels": ("oracle", "plan", "perfect_plan", "hindsight", "shield_aware", "advantage"),
    "dagger.expert": ("perfect_mpc", "mpc"),
}
#: Sections built once for all trials (the data), so the space may only fix them.
FIXED_SECTIONS = ("data", "randomize")
HELD_OUT_FROM = pd.Timestamp("2025-01-01")  # 2025 and later: the held-out test period (never train or tune on it)
SWEEP_DEFAULTS: dict[str, Any] = {
    "recipe": "", "config": "", "num_samples": 1, "metric": "objective_eur", "max_concurrent": 0,
    "cpus_per_trial": 1, "validate_every": 20000, "early_stopping": "asha", "grace_period": 1,
    "reduction_factor": 2, "seed": 0, "memory_gb_per_trial": 0,
}
PERIOD_KEYS = ("prices", "weather", "start", "end", "minutes", "annual_load_kwh")
VALIDATION_KEYS = ("homes", "prices", "weather", "periods", "minutes")
SECTIONS = ("sweep", "data", "validation", "space")


@dataclass(frozen=True)
class Period:
    """Real prices and weather over [start, end) (local dates), at ``minutes``."""

    prices: Path
    weather: Path
    start: pd.Timestamp
    end: pd.Timestamp
    minutes: int = 60

    @property
    def label(self) -> str:
        return f"{self.start.date()}..{self.end.date()}"

    def overlaps(self, other: Period) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass
class SweepSpec:
    """A checked sweep file (see the module docstring)."""

    path: Path
    recipe: dict[str, Any]
    space: dict[str, Any]
    options: dict[str, Any]
    base: Installation
    validation_homes: list[Installation]
    validation_periods: list[Period]
    data_period: Period | None = None
    annual_load_kwh: list[float] = field(default_factory=lambda: [3000.0])

    @property
    def distributions(self) -> dict[str, dict[str, Any]]:
        """The keys a trial draws (the rest of the space is fixed)."""
        return {k: v for k, v in self.space.items() if isinstance(v, dict)}

    def trial_recipe(self, drawn: dict[str, Any]) -> dict[str, Any]:
        """The recipe of one trial: the base recipe with the fixed keys and the ``drawn`` values set."""
        recipe = copy.deepcopy(self.recipe)
        for key, value in drawn.items():
            section, name = key.split(".", 1)
            recipe[section][name] = value
        return recipe


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a sweep file.

    Raises
    ------
    ConfigError
        naming every key and value that is wrong (unknown keys, distributions, names, held-out or overlapping
        periods, missing files).
    """
    from dwars.training.train import default_hyperparameters

    path = Path(path)
    source = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such sweep file"], source) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError([f"not valid TOML: {err}"], source) from None
    problems: list[str] = []
    for section in raw:
        if section not in SECTIONS:
            problems.append(unknown_key("", section, SECTIONS))
    options = {**SWEEP_DEFAULTS, **raw.get("sweep", {})}
    for key in raw.get("sweep", {}):
        if key not in SWEEP_DEFAULTS:
            problems.append(unknown_key("sweep.", key, tuple(SWEEP_DEFAULTS)))
    for key in ("num_samples", "cpus_per_trial", "validate_every", "grace_period", "reduction_factor"):
        if not isinstance(options[key], int) or isinstance(options[key], bool) or options[key] < 1:
            problems.append(f"sweep.{key} = {options[key]!r}: must be a whole number of at least 1")
    memory = options["memory_gb_per_trial"]
    if not isinstance(memory, int | float) or isinstance(memory, bool) or memory < 0:
        problems.append(f"sweep.memory_gb_per_trial = {memory!r}: must be 0 (not reserved) or more GB")
    if not isinstance(options["seed"], int) or isinstance(options["seed"], bool) or options["seed"] < 0:
        problems.append(f"sweep.seed = {options['seed']!r}: must be a whole number (the draws of the space)")
    if not isinstance(options["max_concurrent"], int) or options["max_concurrent"] < 0:
        problems.append(f"sweep.max_concurrent = {options['max_concurrent']!r}: must be 0 (as many as fit) or more")
    if options["early_stopping"] not in ("asha", "none"):
        problems.append(f"sweep.early_stopping = {options['early_stopping']!r}: must be 'asha' or 'none'")
    if options["metric"] not in ("objective_eur", "vs_mpc_eur", "vs_rule_eur"):
        problems.append(f"sweep.metric = {options['metric']!r}: must be objective_eur, vs_mpc_eur or vs_rule_eur")

    recipe = default_hyperparameters()
    if options["recipe"]:
        recipe_path = _file(options["recipe"], path.parent, "sweep.recipe", problems)
        try:
            if recipe_path is not None:
                recipe = tomllib.loads(recipe_path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as err:
            problems.append(f"sweep.recipe = {options['recipe']!r}: cannot read it ({err})")
    space = dict(raw.get("space", {}))
    for key, value in space.items():
        problems += _check_key(key, value, recipe)
    base = _config(options["config"], path.parent, "sweep.config", problems) if options["config"] else None

    validation = raw.get("validation", {})
    problems += [unknown_key("validation.", key, VALIDATION_KEYS) for key in validation if key not in VALIDATION_KEYS]
    homes = [h for h in (_config(h, path.parent, "validation.homes", problems)
                         for h in validation.get("homes", [])) if h is not None]
    if not validation.get("homes"):
        problems.append("validation.homes: name at least one home config (the validation objective sums over them)")
    periods = [p for p in (_period({**validation, "start": s_e[0], "end": s_e[1]}, path.parent,
                                   f"validation.periods[{i}]", problems)
                           for i, s_e in enumerate(_pairs(validation.get("periods", []), problems))) if p is not None]
    if not validation.get("periods"):
        problems.append("validation.periods: give at least one [start, end] pair of local dates")
    data = raw.get("data")
    data_period = None
    loads = [3000.0]
    if data is not None:
        for key in data:
            if key not in PERIOD_KEYS:
                problems.append(unknown_key("data.", key, PERIOD_KEYS) + " (leave [data] out to train on the "
                                "recipe's years)")
        data_period = _period(data, path.parent, "data", problems)
        loads = [float(v) for v in data.get("annual_load_kwh", loads)]
        for p in periods:
            if data_period is not None and data_period.overlaps(p):
                problems.append(f"validation.periods: {p.label} overlaps the training period {data_period.label}: "
                                "a policy is judged on days it has not trained on")
    else:
        years = recipe.get("data", {}).get("train_years", [])
        for p in periods:
            if any(p.start.year <= y <= (p.end - pd.Timedelta(seconds=1)).year for y in years):
                problems.append(f"validation.periods: {p.label} lies in a training year of the recipe ({years})")
    if problems:
        raise ConfigError(problems, source)
    if base is None:
        base = homes[0]
    return SweepSpec(path, recipe, space, options, base, homes, periods, data_period, loads)


def _check_key(key: str, value: Any, recipe: dict[str, Any]) -> list[str]:
    where = f"space.{key!r}" if "." in key else f"space.{key}"
    section, _, name = key.partition(".")
    if not name or section not in recipe or not isinstance(recipe[section], dict):
        return [f"{where}: not a recipe key; write section.key with a section of the recipe "
                f"({', '.join(s for s in recipe if isinstance(recipe[s], dict))})"]
    if name not in recipe[section] and key not in OPTIONAL_KEYS and key != "env.observation":
        return [f"{where}: the recipe's [{section}] has no key {name!r} ({', '.join(recipe[section])})"]
    if section in FIXED_SECTIONS and isinstance(value, dict):
        return [f"{where}: [{section}] is built once for all trials: give a fixed value, not a distribution"]
    if not isinstance(value, dict):
        return _check_values(where, key, [value])
    if len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
        return [f"{where} = {value!r}: one of {', '.join(DISTRIBUTIONS)} (e.g. {{ choice = [a, b] }})"]
    kind, args = next(iter(value.items()))
    if not isinstance(args, list) or not args:
        return [f"{where}: {kind} takes a list, got {args!r}"]
    if kind in ("choice", "grid"):
        return _check_values(where, key, args)
    if len(args) != 2 or not all(isinstance(a, int | float) and not isinstance(a, bool) for a in args) \
            or not args[0] < args[1]:
        return [f"{where}: {kind} takes [low, high] numbers with low < high, got {args!r}"]
    if kind == "loguniform" and args[0] <= 0:
        return [f"{where}: loguniform needs low > 0, got {args[0]!r}"]
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        return [f"{where}: randint takes whole numbers, got {args!r}"]
    return []


def _check_values(where: str, key: str, values: list[Any]) -> list[str]:
    from dwars.training.train import OBSERVATION_VARIANTS

    allowed = tuple(OBSERVATION_VARIANTS) if key == "env.observation" else NAMED_VALUES.get(key)
    if allowed is None:
        return []
    return [f"{where}: {v!r} is not one of {', '.join(allowed)}" for v in values if v not in allowed]


def _pairs(periods: Any, problems: list[str]) -> list[tuple[str, str]]:
    if not isinstance(periods, list) or not all(isinstance(p, list) and len(p) == 2 for p in periods):
        problems.append(f"validation.periods = {periods!r}: a list of [start, end] pairs of local dates")
        return []
    return [(str(a), str(b)) for a, b in periods]


def _period(raw: dict[str, Any], folder: Path, where: str, problems: list[str]) -> Period | None:
    missing = [k for k in ("prices", "weather", "start", "end") if k not in raw]
    if missing:
        problems.append(f"{where}: missing {', '.join(missing)}")
        return None
    try:
        start, end = pd.Timestamp(raw["start"]), pd.Timestamp(raw["end"])
    except ValueError as err:
        problems.append(f"{where}: start/end {raw['start']!r}, {raw['end']!r} are not dates ({err})")
        return None
    minutes = raw.get("minutes", 60)
    bad = len(problems)
    if not start < end:
        problems.append(f"{where}: start {start.date()} is not before end {end.date()}")
    if end > HELD_OUT_FROM:
        problems.append(f"{where}: {start.date()}..{end.date()} reaches into 2025, the held-out test period; "
                        "never train or tune on it")
    if minutes not in (15, 60):
        problems.append(f"{where}.minutes = {minutes!r}: must be 15 or 60")
    files = [_file(str(raw[k]), folder, f"{where}.{k}", problems) for k in ("prices", "weather")]
    if len(problems) > bad or None in files:
        return None
    return Period(files[0], files[1], start, end, int(minutes))  # type: ignore[arg-type]


def _file(value: str, folder: Path, where: str, problems: list[str]) -> Path | None:
    """``sample:NAME`` (bundled with dwars) or a path relative to the sweep file's folder; None (and a problem)
    when there is no such file."""
    try:
        path = sample_path(value.removeprefix("sample:")) if value.startswith("sample:") else folder / value
    except DataError as err:  # it lists the samples there are
        problems.append(f"{where} = {value!r}: {err}")
        return None
    if not path.exists():
        problems.append(f"{where} = {value!r}: no such file ({path})")
        return None
    return path


def _config(value: str, folder: Path, where: str, problems: list[str]) -> Installation | None:
    path = _file(value, folder, where, problems)
    if path is None:
        return None
    try:
        return load_config(path)
    except ConfigError as err:
        problems.append(f"{where} = {value!r}: {err}")
        return None


def expected_reports(total_timesteps: int, validate_every: int) -> int:
    """Validation reports of a trial: one after behaviour cloning, one every ``validate_every`` PPO steps and
    one at the end when the last chunk is shorter."""
    return 1 + math.ceil(max(total_timesteps, 0) / validate_every)
