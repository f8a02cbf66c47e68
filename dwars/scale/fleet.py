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
import difflib
import glob
import hashlib
import json
import math
import os
import re
import socket
import tempfile
import time
import tomllib
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dwars import __version__
from dwars.config import ConfigError, Installation, LoadConfig, SiteConfig, load_config
from dwars.data.scenario import Scenario, build_scenario, read_scenario, write_scenario
from dwars.errors import DwarsError
from dwars.scale.homes import write_installation

CAPTURE_MIN_SAVING_EUR = 0.01  # capture is left empty where the oracle saves less than a cent
DEFAULT_CONTROLLERS: tuple[str, ...] = ("none", "rule", "mpc", "oracle")
FIGURES: tuple[str, ...] = (
    "objective_eur", "energy_cost_eur", "wear_eur", "final_energy_value_eur", "import_kwh", "export_kwh",
    "curtailed_kwh", "equivalent_full_cycles", "shield_interventions",
)
VIOLATION_KINDS: tuple[str, ...] = ("reserve", "endpoint", "night_end")
FILL_GAPS: tuple[str, ...] = ("none", "hold", "interpolate")

_FLEET_KEYS = ("homes", "random_homes", "seed", "controllers", "baseline", "policy")
_SCENARIO_KEYS = ("name", "file", "prices", "weather", "pv", "load", "annual_load_kwh", "start", "end", "minutes",
                  "fill_gaps")
_BUILD_KEYS = tuple(k for k in _SCENARIO_KEYS if k not in ("name", "file"))


# --------------------------------------------------------------------------------------------------
# The fleet file.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScenarioSpec:
    """One ``[[scenario]]`` of a fleet file, paths resolved.

    Either ``file`` (a scenario CSV, used as it is for every home) or the inputs of
    :func:`dwars.data.scenario.build_scenario`: ``prices`` (files), ``weather`` (a KNMI file: PV modelled per home)
    or ``pv`` (a measured household CSV, or ``"none"``), ``load`` (``"profile"``: the NEDU profile scaled to each
    home's ``[load] annual_kwh``, or a file), ``annual_load_kwh`` (one figure for every home instead), the local days
    ``start`` .. ``end`` (exclusive), ``minutes`` (15 or 60) and ``fill`` (None refuses gaps). Input paths are
    ``sample:NAME`` (bundled with dwars, resolved where the build runs) or absolute paths on the driver.
    """

    name: str
    file: Path | None = None
    prices: tuple[str, ...] = ()
    weather: str | None = None
    pv: str | None = None
    load: str = "profile"
    annual_load_kwh: float | None = None
    start: str = ""
    end: str = ""
    minutes: int = 60
    fill: str | None = None

    def input_files(self) -> list[str]:
        """The driver's files this build reads (not the bundled samples, not ``profile`` or ``none``)."""
        named = [*self.prices, self.weather, self.pv, self.load]
        return [p for p in named if p and not p.startswith("sample:") and p not in ("profile", "none")]


@dataclass(frozen=True)
class FleetHome:
    """A home of the fleet: its (unique) name, the installation, and where it came from (a file, or the draw)."""

    name: str
    installation: Installation
    origin: str

    @property
    def file_name(self) -> str:
        """The name of its TOML file in the run's ``homes/`` folder."""
        return f"{_slug(self.name)}.toml"


@dataclass(frozen=True)
class Fleet:
    """A checked fleet file with the command line's overrides applied (see :func:`load_fleet`)."""

    source: Path
    homes: tuple[FleetHome, ...]
    scenarios: tuple[ScenarioSpec, ...]
    controllers: tuple[str, ...]
    baseline: str
    seed: int
    policy: Path | None = None
    warnings: tuple[str, ...] = ()


def _slug(text: str) -> str:
    """A file-name-safe form of a home or scenario name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "unnamed"


def _unknown(where: str, key: str, known: Sequence[str]) -> str:
    hint = difflib.get_close_matches(key, list(known), n=1)
    extra = f"; did you mean {hint[0]}?" if hint else f"; known keys: {', '.join(known)}"
    return f"{where}{key}: unknown key{extra}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strings(value: Any) -> list[str] | None:
    """A string or a list of strings as a list; None when it is neither."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _input_path(value: str, base: Path, where: str, problems: list[str]) -> str:
    """``sample:NAME`` checked against the bundled samples, else a file relative to ``base`` that must exist."""
    if value.startswith("sample:"):
        from dwars.data.io import sample_path

        try:
            sample_path(value.removeprefix("sample:"))
        except DwarsError as err:
            problems.append(f"{where} = {value!r}: {err}")
        return value
    path = (base / value).resolve()
    if not path.is_file():
        problems.append(f"{where} = {value!r}: file not found ({path})")
    return str(path)


def _check_controllers(names: Sequence[str], where: str, problems: list[str]) -> None:
    from dwars.policy.registry import CONTROLLER_NAMES

    for name in (n for n in names if n not in CONTROLLER_NAMES):
        hint = difflib.get_close_matches(name, CONTROLLER_NAMES, n=1)
        problems.append(f"{where}: unknown {name!r}" + (f" (did you mean {hint[0]}?)" if hint else "")
                        + f"; choose from {', '.join(CONTROLLER_NAMES)}")
    if not names:
        problems.append(f"{where}: empty; name at least one controller")


def _read_scenario_spec(raw: Any, i: int, base: Path, problems: list[str]) -> ScenarioSpec | None:
    where = f"scenario[{i}]."
    if not isinstance(raw, Mapping):
        problems.append(f"scenario[{i}]: must be a [[scenario]] table")
        return None
    for key in raw:
        if key not in _SCENARIO_KEYS:
            problems.append(_unknown(where, key, _SCENARIO_KEYS))
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        problems.append(f"{where}name = {name!r}: must be text in quotes")
        name = None
    if "file" in raw and "prices" in raw:
        problems.append(f"scenario[{i}]: has both file and prices; give a prebuilt scenario file or the prices "
                        "(and weather) to build one, not both")
        return None
    if "file" in raw:
        extra = [k for k in _BUILD_KEYS if k in raw]
        if extra:
            problems.append(f"scenario[{i}]: {', '.join(extra)} do not go with file (a prebuilt scenario is used as "
                            "it is)")
        if not isinstance(raw["file"], str):
            problems.append(f"{where}file = {raw['file']!r}: must be text in quotes")
            return None
        path = (base / raw["file"]).resolve()
        if not path.is_file():
            problems.append(f"{where}file = {raw['file']!r}: file not found ({path})")
        return ScenarioSpec(name=name or path.stem, file=path)
    if "prices" not in raw:
        problems.append(f"scenario[{i}]: needs file (a prebuilt scenario CSV) or prices (and weather or pv) to build "
                        "one for every home")
        return None
    n_before = len(problems)
    prices = _strings(raw["prices"])
    if not prices:
        problems.append(f"{where}prices = {raw['prices']!r}: must be a file name or a list of them")
        prices = []
    prices = [_input_path(p, base, f"{where}prices", problems) for p in prices]
    texts: dict[str, str | None] = {}
    for key in ("weather", "pv", "load", "start", "end"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            problems.append(f"{where}{key} = {value!r}: must be text in quotes")
            value = None
        texts[key] = value
    weather, pv, load = texts["weather"], texts["pv"], texts["load"] or "profile"
    if weather is not None and pv is not None:
        problems.append(f"scenario[{i}]: weather and pv: give one source of PV, modelled per home (weather) or "
                        "measured (pv)")
    elif weather is None and pv is None:
        problems.append(f"scenario[{i}]: no PV source: give weather (a KNMI file; PV modelled for each home's [pv]), "
                        "pv = FILE (measured) or pv = \"none\" (homes without panels)")
    if weather is not None:
        weather = _input_path(weather, base, f"{where}weather", problems)
    if pv is not None and pv.lower() != "none":
        pv = _input_path(pv, base, f"{where}pv", problems)
    if load != "profile":
        load = _input_path(load, base, f"{where}load", problems)
    days: dict[str, date] = {}
    for key in ("start", "end"):
        value = texts[key]
        if value is None:
            problems.append(f"{where}{key}: missing (a local date YYYY-MM-DD)")
            continue
        try:
            days[key] = date.fromisoformat(value)
        except ValueError:
            problems.append(f"{where}{key} = {value!r}: must be a date YYYY-MM-DD")
    if len(days) == 2 and days["end"] <= days["start"]:
        problems.append(f"{where}end = {texts['end']!r}: must be after start ({texts['start']}); end is the first "
                        "day NOT included")
    minutes = raw.get("minutes", 60)
    if minutes not in (15, 60) or not _is_int(minutes):
        problems.append(f"{where}minutes = {minutes!r}: must be 15 or 60")
    annual = raw.get("annual_load_kwh")
    if annual is not None and (isinstance(annual, bool) or not isinstance(annual, int | float)
                               or not 0 < annual < 1_000_000):
        problems.append(f"{where}annual_load_kwh = {annual!r}: must be a number of kWh per year above 0")
    fill = raw.get("fill_gaps", "none")
    if fill not in FILL_GAPS:
        problems.append(f"{where}fill_gaps = {fill!r}: must be one of {', '.join(FILL_GAPS)}")
    if len(problems) > n_before:
        return None
    return ScenarioSpec(
        name=name or f"{texts['start']}..{texts['end']}", prices=tuple(prices), weather=weather,
        pv="none" if pv is not None and pv.lower() == "none" else pv, load=load,
        annual_load_kwh=float(annual) if annual is not None else None, start=str(texts["start"]),
        end=str(texts["end"]), minutes=int(minutes), fill=None if fill == "none" else fill)


def _config_homes(patterns: list[str], base: Path, problems: list[str]) -> list[FleetHome]:
    homes: list[FleetHome] = []
    seen: set[Path] = set()
    for k, pattern in enumerate(patterns):
        where = f"fleet.homes[{k}] = {pattern!r}"
        full = str(base / pattern)
        if glob.has_magic(pattern):
            paths = sorted(Path(p).resolve() for p in glob.glob(full, recursive=True) if Path(p).is_file())
            if not paths:
                problems.append(f"{where}: matches no file (looked in {base})")
        else:
            paths = [Path(full).resolve()]
            if not paths[0].is_file():
                problems.append(f"{where}: file not found ({paths[0]})")
                continue
        for path in paths:
            if path in seen:  # overlapping globs name a file twice: one home
                continue
            seen.add(path)
            try:
                inst = load_config(path)
            except ConfigError as err:
                problems.extend(f"{where}: {line}" for line in str(err).splitlines())
                continue
            homes.append(FleetHome(inst.name, inst, str(path)))
    return homes


def _unique_names(homes: list[FleetHome], warnings: list[str]) -> list[FleetHome]:
    """Homes with names (and file names) that differ: a repeated one gets -2, -3 ... and a warning."""
    taken: set[str] = set()
    out = []
    for home in homes:
        name, n = home.name, 1
        while _slug(name).lower() in taken:
            n += 1
            name = f"{home.name}-{n}"
        if name != home.name:
            warnings.append(f"two homes are named {home.name!r}: the one from {home.origin} is called {name!r} here")
            home = FleetHome(name, dataclasses.replace(home.installation, name=name), home.origin)
        taken.add(_slug(name).lower())
        out.append(home)
    return out


def load_fleet(path: str | Path, *, controllers: Sequence[str] | None = None, seed: int | None = None,
               policy: str | Path | None = None, max_homes: int | None = None) -> Fleet:
    """Read and check a fleet file; the keyword arguments are the command line's overrides.

    Parameters
    ----------
    path : the fleet TOML; its home files, globs and scenario inputs are relative to its folder.
    controllers : instead of ``fleet.controllers``.
    seed : instead of ``fleet.seed`` (the drawn homes and the forecast errors).
    policy : an ONNX policy for ``rl`` instead of ``fleet.policy`` (relative to the working directory).
    max_homes : keep only the first this many homes (the files first, then the drawn ones): a quick look.

    Raises
    ------
    ConfigError
        listing every problem, each naming the key and the value (an unknown controller, a missing file, a glob
        that matches nothing, a scenario with both or neither of ``file`` and ``prices`` ...).
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(["file not found"], str(path)) from None
    except OSError as err:
        raise ConfigError([f"cannot be read: {err.strerror}"], str(path)) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError([f"not valid TOML: {err}"], str(path)) from None
    base = path.resolve().parent
    problems: list[str] = []
    warnings: list[str] = []
    for key in raw:
        if key not in ("fleet", "scenario"):
            problems.append(_unknown("", key, ("fleet", "scenario")))
    table = raw.get("fleet", {})
    if not isinstance(table, Mapping):
        raise ConfigError(["fleet: must be a [fleet] table"], str(path))
    for key in table:
        if key not in _FLEET_KEYS:
            problems.append(_unknown("fleet.", key, _FLEET_KEYS))

    patterns = _strings(table.get("homes", []))
    if patterns is None:
        problems.append(f"fleet.homes = {table['homes']!r}: must be a list of config files or globs")
        patterns = []
    homes = _config_homes(patterns, base, problems)
    n_random = table.get("random_homes", 0)
    if not _is_int(n_random) or n_random < 0:
        problems.append(f"fleet.random_homes = {n_random!r}: must be a whole number, 0 or more")
        n_random = 0
    file_seed = table.get("seed", 0)
    if not _is_int(file_seed):
        problems.append(f"fleet.seed = {file_seed!r}: must be a whole number")
        file_seed = 0
    seed = file_seed if seed is None else seed
    if n_random:
        from dwars.training.randomize import installation_pool  # numpy only: no torch

        width = max(2, len(str(n_random)))
        for k, inst in enumerate(installation_pool(n_random, seed), start=1):
            name = f"random-{k:0{width}d}"
            homes.append(FleetHome(name, dataclasses.replace(inst, name=name), f"random (seed {seed})"))
    if not homes and not problems:
        problems.append("fleet.homes: no homes; list config files (or globs) in homes or draw some with random_homes")

    if controllers is None:
        names = _strings(table.get("controllers", list(DEFAULT_CONTROLLERS)))
        if names is None:
            problems.append(f"fleet.controllers = {table['controllers']!r}: must be a list of controller names")
            names = []
        _check_controllers(names, "fleet.controllers", problems)
    else:
        names = list(controllers)
        _check_controllers(names, "--controllers", problems)
    baseline = table.get("baseline", "none")
    if not isinstance(baseline, str):
        problems.append(f"fleet.baseline = {baseline!r}: must be a controller name in quotes")
        baseline = "none"
    _check_controllers([baseline], f"fleet.baseline = {baseline!r}", problems)
    if baseline not in names:  # the savings need it: always evaluated, first
        names = [baseline, *names]

    policy_path: Path | None = None
    if policy is not None:
        policy_path = Path(policy).resolve()
        if not policy_path.is_file():
            problems.append(f"--policy {str(policy)!r}: file not found")
    elif "policy" in table:
        if not isinstance(table["policy"], str):
            problems.append(f"fleet.policy = {table['policy']!r}: must be a file name in quotes")
        else:
            policy_path = (base / table["policy"]).resolve()
            if not policy_path.is_file():
                problems.append(f"fleet.policy = {table['policy']!r}: file not found ({policy_path})")

    raw_scenarios = raw.get("scenario", [])
    if not isinstance(raw_scenarios, list) or not raw_scenarios:
        problems.append("scenario: none; add at least one [[scenario]] table (file, or prices + weather + start + "
                        "end to build one per home)")
        raw_scenarios = []
    scenarios = [s for i, r in enumerate(raw_scenarios) if (s := _read_scenario_spec(r, i, base, problems))]
    seen: dict[str, str] = {}
    for s in scenarios:
        key = _slug(s.name).lower()  # the name of its files in the run folder
        if key in seen:
            twice = "used twice" if seen[key] == s.name else f"gives the same file name as {seen[key]!r}"
            problems.append(f"scenario name {s.name!r}: {twice}; give each [[scenario]] its own name")
        seen[key] = s.name
    if max_homes is not None:
        if max_homes < 1:
            problems.append(f"--homes {max_homes}: must be 1 or more")
        homes = homes[:max_homes]
    if problems:
        raise ConfigError(problems, str(path))
    return Fleet(path, tuple(_unique_names(homes, warnings)), tuple(scenarios), tuple(dict.fromkeys(names)),
                 baseline, seed, policy_path, tuple(warnings))


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
        rel = f"scenarios/{_slug(spec.name)}" + (f"_{_slug(members[0].name)}" if count[spec.name] > 1 else "") + ".csv"
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
    return {"address": address, "cpus": int(ray.cluster_resources().get("CPU", 0)),
            "nodes": sum(1 for n in ray.nodes() if n.get("Alive")), "version": ray.__version__}


# --------------------------------------------------------------------------------------------------
# Aggregation.
# --------------------------------------------------------------------------------------------------


def _capture(saving: pd.Series, oracle_saving: pd.Series) -> pd.Series:
    """saving / oracle saving where the oracle saves at least a cent, else NaN (see the module text)."""
    return (saving / oracle_saving).where(oracle_saving >= CAPTURE_MIN_SAVING_EUR)


def fleet_table(run: FleetRun) -> pd.DataFrame:
    """One row per home x scenario x controller: the figures, ``saving_eur`` against the baseline, the oracle's
    saving and ``capture`` (NaN without an oracle), and the files that re-run the row."""
    fleet = run.fleet
    files = {h.name: f"homes/{h.file_name}" for h in fleet.homes}
    rows = []
    for task in run.tasks:
        for controller, r in (task.results or {}).items():
            row: dict[str, Any] = {"home": task.home, "scenario": task.scenario, "controller": controller}
            row.update({k: r[k] for k in FIGURES})
            row["violations"] = sum(r["violations"].values())
            row.update({f"violations_{k}": r["violations"][k] for k in VIOLATION_KINDS})
            row["config"] = files[task.home]
            row["scenario_file"] = run.scenario_files[task.home, task.scenario]
            rows.append(row)
    columns = ["home", "scenario", "controller", *FIGURES, "violations", *(f"violations_{k}" for k in VIOLATION_KINDS),
               "saving_eur", "oracle_saving_eur", "capture", "config", "scenario_file"]
    if not rows:
        return pd.DataFrame(columns=columns)
    df = pd.DataFrame(rows)
    keys = ["home", "scenario"]
    objective = df.set_index([*keys, "controller"])["objective_eur"]
    base = objective.xs(fleet.baseline, level="controller").rename("baseline")
    df = df.join(base, on=keys)
    df["saving_eur"] = df["baseline"] - df["objective_eur"]
    if "oracle" in fleet.controllers:
        df = df.join(objective.xs("oracle", level="controller").rename("oracle"), on=keys)
        df["oracle_saving_eur"] = df["baseline"] - df["oracle"]
    else:
        df["oracle_saving_eur"] = np.nan
    df["capture"] = _capture(df["saving_eur"], df["oracle_saving_eur"])
    order = {name: i for i, name in enumerate(fleet.controllers)}
    homes = {h.name: i for i, h in enumerate(fleet.homes)}
    scenarios = {s.name: i for i, s in enumerate(fleet.scenarios)}
    df = df.sort_values(["home", "scenario", "controller"],
                        key=lambda c: c.map({"home": homes, "scenario": scenarios, "controller": order}[c.name]))
    return df[columns].reset_index(drop=True)


def homes_table(run: FleetRun, rows: pd.DataFrame) -> pd.DataFrame:
    """One row per home x controller, summed over the scenarios the home finished (``scenarios`` counts them),
    with capture of the sums and the home's main figures (PV kWp, battery kWh and kW, annual load, profile)."""
    sums = ["objective_eur", "energy_cost_eur", "wear_eur", "import_kwh", "export_kwh", "equivalent_full_cycles",
            "shield_interventions", "violations", *(f"violations_{k}" for k in VIOLATION_KINDS), "saving_eur",
            "oracle_saving_eur"]
    columns = ["home", "controller", "scenarios", *sums, "capture", "origin", "config", "pv_kwp", "battery_kwh",
               "battery_kw", "annual_load_kwh", "profile", "supplier"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    grouped = rows.groupby(["home", "controller"], sort=False)
    df = grouped[sums].sum(min_count=1).join(grouped.size().rename("scenarios")).reset_index()
    df["capture"] = _capture(df["saving_eur"], df["oracle_saving_eur"])
    info = pd.DataFrame([{
        "home": h.name, "origin": h.origin, "config": f"homes/{h.file_name}",
        "pv_kwp": h.installation.pv.kwp if h.installation.pv is not None else 0.0,
        "battery_kwh": h.installation.battery.capacity_kwh,
        "battery_kw": max(h.installation.battery.max_charge_kw, h.installation.battery.max_discharge_kw),
        "annual_load_kwh": h.installation.load.annual_kwh, "profile": h.installation.strategy.profile,
        "supplier": h.installation.tariff.supplier,
    } for h in run.fleet.homes])
    return df.merge(info, on="home", how="left")[columns]


def _stats(values: pd.Series) -> dict[str, float | None]:
    v = values.dropna().to_numpy(dtype=float)
    if not len(v):
        return {k: None for k in ("mean", "p10", "p50", "p90", "min", "max")}
    p10, p50, p90 = np.percentile(v, [10, 50, 90])
    return {"mean": float(v.mean()), "p10": float(p10), "p50": float(p50), "p90": float(p90),
            "min": float(v.min()), "max": float(v.max())}


def summary(run: FleetRun, rows: pd.DataFrame, homes: pd.DataFrame) -> dict[str, Any]:
    """Per controller, over the homes (each summed over its scenarios): the savings distribution, capture, cost,
    violations and shield interventions; and per scenario the mean saving and capture over the homes."""
    out: dict[str, Any] = {}
    for controller in run.fleet.controllers:
        h = homes[homes["controller"] == controller]
        r = rows[rows["controller"] == controller]
        capture = h["capture"].dropna()
        out[controller] = {
            "homes": len(h),
            "objective_eur": _stats(h["objective_eur"]),
            "saving_eur": _stats(h["saving_eur"]),
            "capture_mean": float(capture.mean()) if len(capture) else None,
            "capture_median": float(capture.median()) if len(capture) else None,
            "homes_with_capture": len(capture),
            "violations": int(h["violations"].sum()),
            "violations_by_kind": {k: int(h[f"violations_{k}"].sum()) for k in VIOLATION_KINDS},
            "homes_with_violations": int((h["violations"] > 0).sum()),
            "shield_interventions": int(h["shield_interventions"].sum()),
            "by_scenario": {
                s: {"homes": len(g), "saving_eur_mean": float(g["saving_eur"].mean()),
                    "capture_mean": float(g["capture"].mean()) if g["capture"].notna().any() else None}
                for s, g in r.groupby("scenario", sort=False)
            },
        }
    return out


# --------------------------------------------------------------------------------------------------
# Outputs.
# --------------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """NaN and infinities as null (strict JSON), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def plot_fleet(rows: pd.DataFrame, homes: pd.DataFrame, controllers: Sequence[str], baseline: str,
               folder: str | Path) -> list[Path]:
    """``savings.png`` (per controller: each home's saving over all scenarios, box and points) and ``capture.png``
    (the same for capture, when there is an oracle); returns the paths written."""
    from dwars.policy.plots import _pyplot

    plt = _pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = [c for c in controllers if c != baseline]
    paths = []
    for column, title, unit, file in (
            ("saving_eur", f"saving against {baseline} per home (all scenarios)", "EUR", "savings.png"),
            ("capture", "capture per home: saving / oracle saving", "share of the oracle's saving", "capture.png")):
        shown = [c for c in names if homes.loc[homes["controller"] == c, column].notna().any()]
        if not shown:
            continue
        data = [homes.loc[homes["controller"] == c, column].dropna().to_numpy() for c in shown]
        fig, ax = plt.subplots(figsize=(1.6 * len(shown) + 3, 4.5))
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(shown) + 1), shown)
        rng = np.random.default_rng(0)  # the points' sideways jitter only
        for k, values in enumerate(data, start=1):
            ax.scatter(k + rng.uniform(-0.15, 0.15, len(values)), values, s=12, alpha=0.6, zorder=3)
        ax.axhline(1.0 if column == "capture" else 0.0, color="k", lw=0.8, ls=":")
        ax.set_ylabel(unit)
        ax.set_title(f"{title}, {homes['home'].nunique()} homes")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(folder / file, dpi=110)
        plt.close(fig)
        paths.append(folder / file)
    return paths


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
        "task_seconds": {"count": int(seconds.count()), "sum": float(seconds.sum()), **_stats(seconds)},
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
    paths[2].write_text(json.dumps(_jsonable({**meta, "by_controller": controllers}), indent=2, default=str) + "\n",
                        encoding="utf-8")
    if plots and not rows.empty:
        paths += plot_fleet(rows, homes, fleet.controllers, fleet.baseline, out / "plots")
    return FleetReport(run, rows, homes, controllers, meta, paths)
