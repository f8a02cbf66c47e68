"""The fleet file of ``dwars fleet-evaluate``: which homes, which scenarios, which controllers (see
:mod:`dwars.scale.fleet` for the format and what a run does with it). This module only reads and checks."""

from __future__ import annotations

import dataclasses
import difflib
import glob
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from dwars.config import ConfigError, Installation, load_config, unknown_key
from dwars.errors import DwarsError

DEFAULT_CONTROLLERS: tuple[str, ...] = ("none", "rule", "mpc", "oracle")
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
        return f"{slug(self.name)}.toml"


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


def slug(text: str) -> str:
    """A file-name-safe form of a home or scenario name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "unnamed"


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
            problems.append(unknown_key(where, key, _SCENARIO_KEYS))
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
        while slug(name).lower() in taken:
            n += 1
            name = f"{home.name}-{n}"
        if name != home.name:
            warnings.append(f"two homes are named {home.name!r}: the one from {home.origin} is called {name!r} here")
            home = FleetHome(name, dataclasses.replace(home.installation, name=name), home.origin)
        taken.add(slug(name).lower())
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
            problems.append(unknown_key("", key, ("fleet", "scenario")))
    table = raw.get("fleet", {})
    if not isinstance(table, Mapping):
        raise ConfigError(["fleet: must be a [fleet] table"], str(path))
    for key in table:
        if key not in _FLEET_KEYS:
            problems.append(unknown_key("fleet.", key, _FLEET_KEYS))

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
        key = slug(s.name).lower()  # the name of its files in the run folder
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
