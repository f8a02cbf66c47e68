"""Real processes: ``dwars sim-inverter`` plays a day on a fast clock; ``dwars run --replay`` drives it over Modbus
TCP, is killed (SIGKILL) mid-day and started again. Nothing in the decision log is lost or doubled, the
inverter falls back to its own self-consumption while dwars is down, and no goal breaks in the battery."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from dwars.config import Installation
from dwars.data.io import sample_path
from dwars.data.scenario import build_scenario, write_scenario
from dwars.env.goals import deadlines
from dwars.policy.decision_log import read_records
from dwars.runtime.sim_inverter import _free_port

ROOT = Path(__file__).resolve().parents[1]
SPEED = 7200.0  # an hour of the day in half a real second


def dwars(*args: str) -> list[str]:
    return [sys.executable, "-m", "dwars", *args]


def wait_for_records(path: Path, n: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            lines = path.read_bytes().count(b"\n")
            if lines >= n:
                return lines
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {n} records in {timeout_s} s")


@pytest.fixture(scope="module")
def one_day(tmp_path_factory: pytest.TempPathFactory, home_inst: Installation) -> Path:
    scenario = build_scenario(home_inst, [sample_path("prices_2024.json.gz")], "2024-03-28", "2024-03-29", 60,
                              weather=sample_path("knmi_debilt_260_2024_T_Q.csv.gz"), model_pv=True)
    return write_scenario(scenario, tmp_path_factory.mktemp("scenario") / "day.csv")


def test_kill_and_restart_mid_day_loses_nothing_and_keeps_the_goals(tmp_path: Path, one_day: Path,
                                                                     home_inst: Installation) -> None:
    config = str(ROOT / "examples" / "home.toml")
    port = str(_free_port("127.0.0.1"))
    epoch = str(time.time() + 6.0)  # both processes are up before the day starts
    trace, log = tmp_path / "inverter.jsonl", tmp_path / "decisions.jsonl"
    clock = ["--speed", str(SPEED), "--epoch", epoch]
    inverter = subprocess.Popen(dwars("sim-inverter", "--config", config, "--scenario", str(one_day), "--port", port,
                                      "--trace", str(trace), *clock), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    run = dwars("run", "--config", config, "--replay", str(one_day), "--inverter-port", port, "--log", str(log),
                *clock)
    try:
        first = subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for_records(log, 8, timeout_s=40)
        first.send_signal(signal.SIGKILL)  # no clean-up at all, as a power cut of the Pi would
        first.wait(timeout=10)
        killed_at = len(read_records(log))
        time.sleep(1.6)  # about three hours of the day without dwars
        second = subprocess.run(run, capture_output=True, text=True, timeout=90)
        inverter_out, _ = inverter.communicate(timeout=60)
    finally:
        for p in (inverter,):
            if p.poll() is None:
                p.kill()
    assert second.returncode == 0, second.stdout + second.stderr
    assert inverter.returncode == 0, inverter_out

    records = read_records(log)
    times = [pd.Timestamp(r["time"]) for r in records]
    assert times == sorted(set(times))  # no interval twice, none out of order
    assert len(records) >= 24 - 5  # only the hours while dwars was down have no decision
    assert len(records) - killed_at >= 24 - killed_at - 5  # the second run took over at the current hour
    missing = sorted(set(pd.date_range("2024-03-27 23:00", periods=24, freq="h", tz="UTC")) - set(times))
    assert all(t > times[killed_at - 1] for t in missing)  # the gap is where dwars was down, nowhere else
    assert times[-1] == pd.Timestamp("2024-03-28 22:00", tz="UTC")  # and it ran to the end of the day

    played = [json.loads(line) for line in trace.read_text().splitlines()]
    assert len(played) == 24  # the inverter played every hour, dwars or not
    battery = home_inst.battery
    reserve_kwh = battery.capacity_kwh * battery.reserve_pct / 100
    assert min(p["energy_kwh"] for p in played) >= reserve_kwh - 1e-6
    energy_at = {pd.Timestamp(p["time"]): p["energy_kwh"] for p in played}
    day = pd.Timestamp("2024-03-27 23:00", tz="UTC")
    goals = [g for g in deadlines(home_inst, day, day + pd.Timedelta(days=1), 60) if g.time in energy_at]
    assert {g.kind for g in goals} == {"endpoint", "night_end"}  # the endpoint at 17:00, the night end at dawn
    for goal in goals:
        assert energy_at[goal.time] >= battery.capacity_kwh * goal.soc_pct / 100 - 1e-6, goal
