"""The systemd unit and the Home Assistant add-on: they parse, and every command, option and path they name exists.

`dwars run --help` is asked for real, so an option renamed in the CLI breaks this test, not a home's start-up.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

import pytest

from dwars.config import load_config

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "packaging" / "systemd" / "dwars.service"
ADDON = ROOT / "packaging" / "homeassistant" / "dwars"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def dwars_help(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "dwars", *args, "--help"], capture_output=True, text=True,
                            check=True, timeout=60)
    return result.stdout


@pytest.fixture(scope="module")
def run_help() -> str:
    return dwars_help("run")


def check_dwars_command(argv: list[str], run_help: str, venv: str) -> dict[str, str]:
    """The command is the dwars console script of ``venv``, sub-command ``run``, with options it knows."""
    assert PurePosixPath(argv[0]) == PurePosixPath(venv) / "bin" / "dwars"
    assert PYPROJECT["project"]["scripts"]["dwars"] == "dwars.cli:main"
    assert argv[1] == "run"
    options = dict(zip(argv[2::2], argv[3::2], strict=True))
    for option in options:
        assert re.search(rf"\s{re.escape(option)}\b", run_help), f"dwars run has no {option}"
    assert {"--config", "--log"} <= set(options)
    return options


def systemd_unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True)  # strict: a key set twice is an error here
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read_string(UNIT.read_text(encoding="utf-8"), source=str(UNIT))
    return unit


def test_the_unit_starts_dwars_run_with_options_that_exist(run_help: str) -> None:
    unit = systemd_unit()
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    options = check_dwars_command(shlex.split(service["ExecStart"]), run_help, "/opt/dwars")
    assert options == {"--config": "/etc/dwars/home.toml", "--log": "/var/lib/dwars/decisions.jsonl"}
    # The log lies in the state directory systemd makes for the service; the config in a folder it may write.
    assert PurePosixPath(options["--log"]).parent == PurePosixPath("/var/lib") / service["StateDirectory"]
    writable = [PurePosixPath(p.lstrip("-")) for p in service["ReadWritePaths"].split()]
    assert PurePosixPath(options["--config"]).parent in writable


def test_the_unit_is_hardened_and_gives_up_on_a_broken_config() -> None:
    unit = systemd_unit()
    service, head = unit["Service"], unit["Unit"]
    assert service["User"] == "dwars" and "dialout" in service["SupplementaryGroups"].split()
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "Restart": "on-failure"}.items():
        assert service[key] == value, key
    assert service["CapabilityBoundingSet"] == ""
    # The start limit must be reachable: the restarts of a crash loop fall within the interval.
    restart_s, burst, window_s = int(service["RestartSec"]), int(head["StartLimitBurst"]), int(
        head["StartLimitIntervalSec"])
    assert restart_s > 0 and burst >= 2 and (burst - 1) * restart_s < window_s
    assert "network-online.target" in head["After"].split() and "network-online.target" in head["Wants"].split()
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    """systemd's own checker, where this machine has it, with ExecStart pointing at this checkout's dwars."""
    analyze = shutil.which("systemd-analyze")
    dwars = Path(sys.executable).with_name("dwars")
    if analyze is None or not dwars.exists():
        pytest.skip("systemd-analyze or the dwars console script is not on this machine")
    copy = tmp_path / "dwars.service"
    copy.write_text(UNIT.read_text(encoding="utf-8").replace("/opt/dwars/bin/dwars", str(dwars)), encoding="utf-8")
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "dwars.service" not in result.stderr, result.stderr  # warnings about the unit itself


# ---------------------------------------------------------------------------------------- Home Assistant add-on

_HA_TYPES = re.compile(r"(str|bool|email|url|password|port|match\(.+\)|int(\(-?\d*,-?\d*\))?|float(\(.*,.*\))?|"
                       r"list\([^|()]+(\|[^|()]+)*\)|device(\(.*\))?)\??")


def addon_file(name: str) -> dict[str, object]:
    # JSON is valid YAML: Home Assistant reads the files as YAML, this test as JSON, without a YAML library.
    return json.loads((ADDON / name).read_text(encoding="utf-8"))


def test_the_addon_config_is_complete_and_matches_the_release() -> None:
    config = addon_file("config.yaml")
    for key in ("name", "version", "slug", "description", "arch", "options", "schema"):
        assert config[key], key
    assert config["slug"] == ADDON.name
    assert config["version"] == PYPROJECT["project"]["version"]
    assert {"aarch64", "amd64"} <= set(config["arch"])  # type: ignore[arg-type]
    assert config["uart"] is True  # a USB P1 cable in the Home Assistant machine
    assert "addon_config:rw" in config["map"]  # type: ignore[operator]
    schema: dict[str, str] = config["schema"]  # type: ignore[assignment]
    for key, kind in schema.items():
        assert _HA_TYPES.fullmatch(kind), f"{key}: {kind!r} is not a Home Assistant option type"
    options: dict[str, object] = config["options"]  # type: ignore[assignment]
    assert set(options) <= set(schema)
    assert {k for k, v in schema.items() if not v.endswith("?")} <= set(options)  # required ones have defaults
    assert str(options["config_file"]).startswith("/config/")  # where addon_config is mounted


def test_the_addon_profile_choices_are_dwars_profiles() -> None:
    from typing import get_args

    from dwars.config import Profile

    choices = re.fullmatch(r"list\((.*)\)\?", addon_file("config.yaml")["schema"]["profile"])  # type: ignore[index]
    assert choices is not None and set(choices.group(1).split("|")) == set(get_args(Profile))


def test_the_addon_builds_from_a_glibc_base_for_each_arch() -> None:
    config, build = addon_file("config.yaml"), addon_file("build.yaml")
    base: dict[str, str] = build["build_from"]  # type: ignore[assignment]
    assert set(base) == set(config["arch"])  # type: ignore[arg-type]
    for arch, image in base.items():
        assert image.startswith(f"ghcr.io/home-assistant/{arch}-base-debian:"), image  # onnxruntime needs glibc
    dockerfile = (ADDON / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^ARG BUILD_FROM$", dockerfile, re.M)
    assert re.search(r"^FROM \$\{?BUILD_FROM\}?$", dockerfile, re.M)
    spec = build["args"]["DWARS_SPEC"]  # type: ignore[index]
    assert spec == f"dwars[runtime]=={PYPROJECT['project']['version']}" and "runtime" in PYPROJECT[
        "project"]["optional-dependencies"]
    assert "python3 -m venv /opt/dwars" in dockerfile and '/opt/dwars/bin/pip install --no-cache-dir "${DWARS_SPEC}"' \
        in dockerfile
    copied = re.search(r"^COPY (.+) /$", dockerfile, re.M)
    assert copied is not None and set(copied.group(1).split()) == {"run.sh", "apply_options.py"}
    assert all((ADDON / name).is_file() for name in copied.group(1).split())
    assert re.search(r'^CMD \[ "/run.sh" \]$', dockerfile, re.M)


def test_run_sh_is_valid_bash_reads_every_option_and_runs_dwars(run_help: str) -> None:
    script = ADDON / "run.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    text = script.read_text(encoding="utf-8")
    read = set(re.findall(r"bashio::config(?:\.has_value)? '(\w+)'", text))
    assert read == set(addon_file("config.yaml")["schema"])  # type: ignore[arg-type]
    exec_line = next(line for line in text.splitlines() if line.startswith("exec "))
    argv = shlex.split(exec_line.replace('"${CONFIG}"', "CONFIG"))[1:]
    options = check_dwars_command(argv, run_help, "/opt/dwars")
    assert options["--log"].startswith("/data/")  # the add-on's persistent, backed-up folder


def test_apply_options_writes_the_options_through_the_validated_writer(tmp_path: Path) -> None:
    config = tmp_path / "home.toml"
    shutil.copy(ROOT / "examples" / "home.toml", config)
    script = str(ADDON / "apply_options.py")

    def apply(changes: dict[str, object]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, script, str(config), json.dumps(changes)], capture_output=True,
                              text=True, timeout=60)

    done = apply({"strategy.profile": "rustig", "battery.reserve_pct": 25, "runtime.mqtt_host": "core-mosquitto",
                  "runtime.mqtt_port": 1883})
    assert done.returncode == 0, done.stderr
    inst = load_config(config)
    assert (inst.strategy.profile, inst.battery.reserve_pct) == ("rustig", 25)
    assert (inst.runtime.mqtt_host, inst.runtime.mqtt_port) == ("core-mosquitto", 1883)  # type: ignore[attr-defined]
    assert "strategy.profile = 'rustig'" in done.stdout and (tmp_path / "home.toml.bak").exists()
    before = config.read_bytes()
    again = apply({"strategy.profile": "rustig", "battery.reserve_pct": 25})
    assert again.returncode == 0 and again.stdout == "" and config.read_bytes() == before  # nothing to change
    refused = apply({"battery.reserve_pct": 95})  # above the endpoint target of 90 %
    assert refused.returncode == 2 and "reserve_pct" in refused.stderr
    assert config.read_bytes() == before
