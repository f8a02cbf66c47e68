"""The dwars command line: help explains units, errors are clear, a scenario builds end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dwars.cli import main

ROOT = Path(__file__).resolve().parents[1]
HOME = str(ROOT / "examples" / "home.toml")


def test_help_explains_units(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for word in ("kW", "kWh", "EUR/MWh", "UTC", "Europe/Amsterdam", "scenario", "config"):
        assert word in out


def test_build_help_names_units_and_exclusive_end(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["scenario", "build", "--help"])
    out = capsys.readouterr().out
    assert "NOT included" in out and "J/cm2" in out and "15min or 60min" in out


def test_config_check_prints_tariff_and_spread(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", HOME]) == 0
    out = capsys.readouterr().out
    assert "installation (valid)" in out and "gemiddeld (yours)" in out and "0.0700" in out


def test_bad_config_exits_2_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[battery]\nreserve_pct = 120\n")
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "battery.reserve_pct = 120: must be 0..100" in err


def test_scenario_build_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scn.csv"
    code = main(["scenario", "build", "--config", HOME, "--prices", "sample:prices_2024.json.gz",
                 "--weather", "sample:knmi_debilt_260_2024_T_Q.csv.gz", "--start", "2024-07-01",
                 "--end", "2024-07-08", "--resolution", "15min", "--out", str(out)])
    assert code == 0 and out.exists() and (tmp_path / "scn.meta.json").exists()
    printed = capsys.readouterr().out
    assert "672 x 15 min" in printed and "2024-07" in printed
    assert main(["scenario", "summary", str(out), "--config", HOME, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["intervals"] == 672 and summary["pv_kwh"] > 100


def test_missing_sample_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["scenario", "build", "--config", HOME, "--prices", "sample:nope.json", "--pv", "none",
                 "--start", "2024-07-01", "--end", "2024-07-02", "--out", str(tmp_path / "x.csv")])
    assert code == 2
    assert "sample 'nope.json' not found; bundled samples:" in capsys.readouterr().err


def test_pv_yield_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pv", "yield", "--config", HOME, "--weather", "sample:knmi_debilt_260_2024_T_Q.csv.gz"]) == 0
    out = capsys.readouterr().out
    assert "total" in out and "2024-06" in out


def test_module_entry_point_runs() -> None:
    done = subprocess.run([sys.executable, "-m", "dwars", "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.strip().startswith("dwars ")


def test_run_simulate_drives_the_simulated_inverter_for_a_day(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from dwars.policy.decision_log import read_records

    log = tmp_path / "run" / "decisions.jsonl"
    code = main(["run", "--config", str(ROOT / "examples" / "home.toml"), "--simulate", "--start", "2024-06-01",
                 "--days", "1", "--log", str(log)])
    out = capsys.readouterr().out
    assert code == 0
    assert len(read_records(log)) == 96  # a quarter-hour day, one record per interval
    assert "laatste acties" in out and "96 intervals decided, 0 failed" in out
    import re

    def row(name: str) -> list[float]:
        found = re.search(re.escape(name) + r"\s*\S\s*(-?[\d.]+)\s*\S\s*(-?[\d.]+)\s*\S\s*(\d+)", out)
        assert found is not None, out
        return [float(x) for x in found.groups()]

    cost, saving, missed = row("rl (this run)")
    assert saving > 0 and missed == 0  # a sunny June day with the shipped policy: the battery pays, goals kept
    none_cost, none_saving, _ = row("none")
    assert none_saving == 0.0 and cost + saving == pytest.approx(none_cost, abs=0.011)
    assert row("rule")[1] > 0  # the comparison is on the same day


def test_live_run_without_inverter_or_prices_says_so_and_keeps_a_record(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """The live mode on the wall clock with nothing to talk to (closed local ports): no crash, a record for the
    interval saying why there is no decision, plain log lines, and a clean stop at --until."""
    import shutil
    import socket

    from dwars.policy.decision_log import read_records

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    config = tmp_path / "home.toml"
    shutil.copy(ROOT / "examples" / "home.toml", config)
    with config.open("a") as f:
        f.write(f'\n[runtime]\ninverter_port = {closed}\nprices_url = "http://127.0.0.1:{closed}/prices"\n'
                f'weather = "clearsky"\ndata_dir = "state"\n')
    until = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=2)).isoformat()
    assert main(["run", "--config", str(config), "--until", until]) == 0
    records = read_records(tmp_path / "state" / "decisions.jsonl")
    assert len(records) == 1 and records[0]["applied"]["mode"] == "msc"
    assert records[0]["reason"].startswith("no decision: ") and str(closed) in records[0]["reason"]
    assert "no P1 meter" in caplog.text and "dwars keeps trying every interval" in caplog.text


def test_run_with_a_corrupt_policy_file_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "policy.onnx"
    bad.write_bytes(b"not an onnx model")
    code = main(["run", "--config", str(ROOT / "examples" / "home.toml"), "--simulate", "--days", "1",
                 "--policy", str(bad), "--log", str(tmp_path / "d.jsonl")])
    assert code == 2
    assert "cannot be loaded" in capsys.readouterr().err


def test_evaluate_with_a_car_and_a_boiler_shows_the_flexible_loads(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = str(ROOT / "examples" / "home_ev.toml")
    out = tmp_path / "scn.csv"
    assert main(["scenario", "build", "--config", config, "--prices", "sample:prices_2024.json.gz",
                 "--weather", "sample:knmi_debilt_260_2024_T_Q.csv.gz", "--start", "2024-06-03",
                 "--end", "2024-06-06", "--resolution", "60min", "--out", str(out)]) == 0
    capsys.readouterr()
    figures = {}
    for strategy in ("smart", "now"):
        js = tmp_path / f"{strategy}.json"
        assert main(["evaluate", "--config", config, "--scenario", str(out), "--controllers", "none,rule",
                     "--ev-strategy", strategy, "--json", str(js)]) == 0
        printed = capsys.readouterr().out
        assert "flexible loads" in printed and "EV kWh" in printed and "boost kWh" in printed
        figures[strategy] = json.loads(js.read_text())["controllers"]
    assert figures["smart"]["rule"]["ev_charged_kwh"] > 20  # three nights of 8 kWh
    assert figures["smart"]["rule"]["objective_eur"] < figures["now"]["rule"]["objective_eur"]
