"""The meter log: the P1 meter's counters at every interval boundary in SQLite, kept across restarts and kills, and
written by the running loop from a (simulated) DSMR meter over TCP."""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC
from pathlib import Path

import pandas as pd
import pytest

from dwars.config import load_config
from dwars.data.scenario import Scenario
from dwars.errors import DataError
from dwars.policy.base import Home
from dwars.runtime.app import open_meter_watch, run_loop
from dwars.runtime.clock import SimulatedClock
from dwars.runtime.loop import ReplayInputs
from dwars.runtime.meter import simulated_p1_server
from dwars.runtime.meter.reading import MeterReading
from dwars.runtime.meter_log import MAX_SKEW_S, MeterLog, meter_log_path, record_counters
from dwars.runtime.sim_inverter import SimulatedInverter
from dwars.runtime.sim_process import Actuals, serve_on_clock

ROOT = Path(__file__).resolve().parents[1]
T0 = pd.Timestamp("2024-10-27 00:00", tz="UTC")  # the night the clocks go back (02:00 local twice)
Q = pd.Timedelta(minutes=15)


def test_counters_go_in_and_come_back_in_time_order(tmp_path: Path) -> None:
    with MeterLog(tmp_path / "m.sqlite") as log:
        for k in (3, 0, 2, 1, 4):  # out of order, through the repeated local hour
            assert log.record(T0 + k * Q, 1000.0 + k * 0.25, 500.0 + k * 0.1)
        rows = log.readings(T0 + Q, T0 + 3 * Q)  # both ends included: a period needs its edge counters
    assert list(rows.index) == [T0 + Q, T0 + 2 * Q, T0 + 3 * Q] and str(rows.index.tz) == "UTC"
    assert list(rows["import_kwh_total"]) == [1000.25, 1000.5, 1000.75]
    assert rows["export_kwh_total"].iloc[0] == pytest.approx(500.1)
    assert rows["read_time"].isna().all()  # not given here


def test_a_boundary_recorded_twice_is_one_row_the_first(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    with MeterLog(path) as log:
        assert log.record(T0, 1000.0, 500.0, read_time=T0 + pd.Timedelta(seconds=2))
    with MeterLog(path) as again:  # a restart within the interval records the boundary again
        assert not again.record(T0, 1000.4, 500.0, read_time=T0 + pd.Timedelta(seconds=50))
        assert len(again) == 1
        row = again.readings(T0, T0).iloc[0]
    assert row["import_kwh_total"] == 1000.0 and row["read_time"] == T0 + pd.Timedelta(seconds=2)


def test_committed_rows_survive_a_killed_process(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    script = textwrap.dedent(f"""
        import os, signal
        import pandas as pd
        from dwars.runtime.meter_log import MeterLog
        log = MeterLog({str(path)!r})
        t0 = pd.Timestamp("2024-05-01", tz="UTC")
        for k in range(5):
            log.record(t0 + pd.Timedelta(minutes=15 * k), 10.0 + k, 2.0)
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no exit handlers: as a power cut of the process
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=60)
    assert done.returncode == -9
    with MeterLog(path) as log:
        rows = log.readings(pd.Timestamp("2024-05-01", tz="UTC"), pd.Timestamp("2024-05-02", tz="UTC"))
    assert list(rows["import_kwh_total"]) == [10.0, 11.0, 12.0, 13.0, 14.0]


def test_bad_rows_are_refused_naming_the_field(tmp_path: Path) -> None:
    with MeterLog(tmp_path / "m.sqlite") as log:
        with pytest.raises(DataError, match="time_utc = 2024-10-27 00:00:00: must be timezone-aware"):
            log.record(pd.Timestamp("2024-10-27 00:00"), 1.0, 1.0)
        with pytest.raises(DataError, match="00:07:00\\+00:00: not an interval boundary"):
            log.record(T0 + pd.Timedelta(minutes=7), 1.0, 1.0)
        with pytest.raises(DataError, match="import_kwh_total = nan"):
            log.record(T0, math.nan, 1.0)
        with pytest.raises(DataError, match="export_kwh_total = -0.5"):
            log.record(T0, 1.0, -0.5)
        assert len(log) == 0
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all, just text " * 100)
    with pytest.raises(DataError, match="not a usable meter log"):
        MeterLog(tmp_path / "junk.sqlite")


def _reading(when: pd.Timestamp, import_kwh: float) -> MeterReading:
    return MeterReading(when.to_pydatetime().astimezone(UTC), 0.5, 0.0, import_kwh, 7.0, source="test")


def test_the_runtime_hook_skips_a_stale_reading_and_never_raises(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    assert record_counters(data, T0, _reading(T0 + pd.Timedelta(seconds=3), 100.0))
    assert not record_counters(data, T0 + Q, None)  # no reading yet
    stale = _reading(T0 + Q - pd.Timedelta(seconds=MAX_SKEW_S + 30), 100.1)
    assert not record_counters(data, T0 + Q, stale)  # the meter went quiet two minutes before the boundary
    assert "not logged (the bill reports a gap)" in caplog.text
    with MeterLog(meter_log_path(data)) as log:
        assert list(log.readings(T0, T0 + Q).index) == [T0]
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert not record_counters(blocked, T0, _reading(T0, 1.0))  # the data folder is a file: logged, not raised
    assert "meter log: could not store" in caplog.text or "Not a directory" in caplog.text


def test_the_running_loop_logs_the_meters_counters_at_each_boundary(tmp_path: Path, week_15: Scenario) -> None:
    """The control loop on a fast clock, a simulated inverter over Modbus and a simulated DSMR meter over TCP
    drawing a steady 0.8 kW: the counters land in the data folder's meter log at the quarter hours."""
    start = pd.Timestamp("2024-03-28 10:00", tz="UTC")
    end = start + 3 * Q
    inst0 = load_config(ROOT / "examples" / "home.toml")
    home = Home.from_installation(inst0)
    actuals = Actuals.from_scenario(week_15, home)

    async def main() -> None:
        # A quarter hour in a second, and one of them for starting up (policy, Modbus, the meter's first telegram).
        clock = SimulatedClock(start - Q, speed=900.0)
        inverter = SimulatedInverter(home.battery, inst0.battery.initial_energy_kwh, home.grid_limit_kw, now=start)
        port = await inverter.start()
        meter_time = lambda: clock.now().floor("us").to_pydatetime()  # noqa: E731  (the meter runs on the clock)
        async with simulated_p1_server(lambda now: (0.8,), interval_s=0.02, clock=meter_time) as p1:
            config = tmp_path / "home.toml"
            shutil.copy(ROOT / "examples" / "home.toml", config)
            with config.open("a") as f:
                f.write(f'\n[runtime]\ninverter = "sunspec"\ninverter_port = {port}\ncontroller = "rule"\n'
                        f'minutes = 15\ndata_dir = "data"\nmeter = "dsmr_tcp"\nmeter_host = "127.0.0.1"\n'
                        f'meter_port = {p1.port}\n')
            inst = load_config(config)
            playing = asyncio.ensure_future(serve_on_clock(inverter, actuals, clock, end, step_real_s=0.01))
            try:
                await run_loop(inst, lambda h: ReplayInputs(week_15, h), 15, clock, tmp_path / "decisions.jsonl",
                               end, config_path=config, scenario=week_15, meter=open_meter_watch(inst, 0.02))
                await playing
            finally:
                await inverter.stop()

    asyncio.run(main())
    with MeterLog(meter_log_path(tmp_path / "data")) as log:
        rows = log.readings(start - Q, end)
    # The boundaries start, +15 and +30 min; one whose reading was over 90 s off (a slow start-up on a busy
    # machine) is left out, most are not.
    assert len(rows) >= 2 and rows.index.isin([start, start + Q, start + 2 * Q]).all()
    assert all(t.minute % 15 == 0 and t.second == 0 for t in rows.index)
    skew = (rows["read_time"] - rows.index.to_series()).abs().dt.total_seconds()
    assert (skew <= MAX_SKEW_S).all()
    # 0.8 kW for a quarter hour is 0.2 kWh; each row's reading is up to 90 s off its boundary on either side.
    per_quarter = rows["import_kwh_total"].diff().dropna() / (rows.index.to_series().diff().dropna() / Q)
    assert ((per_quarter - 0.2).abs() <= 2 * 0.8 * MAX_SKEW_S / 3600 + 0.002).all()
    assert (rows["export_kwh_total"].diff().dropna() == 0).all()
