"""``dwars run`` assembled from a config: a replayed day on a fast clock against a simulated inverter playing on the
same clock, publishing to Home Assistant through a real mosquitto, and taking a change of the reserve from it."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest
from helpers_mqtt import Broker, Watcher
from test_runtime_live_inputs import TOKEN, server  # noqa: F401  (the local ENTSO-E/Open-Meteo server)

from dwars.config import load_config
from dwars.data.scenario import Scenario
from dwars.policy.base import Home
from dwars.policy.decision_log import read_records
from dwars.runtime.app import run_live, run_replay
from dwars.runtime.clock import SimulatedClock
from dwars.runtime.history import LoadHistory
from dwars.runtime.ledger import DayLedger, IntervalMeasurement, battery_ac_kw
from dwars.runtime.meter import simulated_p1_server
from dwars.runtime.sim_inverter import SimulatedInverter
from dwars.runtime.sim_process import Actuals, serve_on_clock

ROOT = Path(__file__).resolve().parents[1]


def test_a_replayed_day_reports_to_home_assistant_and_follows_its_change(tmp_path: Path, week_60: Scenario,
                                                                         broker: Broker,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    config = tmp_path / "home.toml"
    shutil.copy(ROOT / "examples" / "home.toml", config)
    with config.open("a") as f:
        f.write(f'\n[runtime]\ninverter = "simulated"\nmqtt_host = "127.0.0.1"\nmqtt_port = {broker.port}\n'
                'controller = "rule"\nminutes = 60\n')
    inst = load_config(config)
    home = Home.from_installation(inst)
    day = pd.Timestamp("2024-03-28", tz="Europe/Amsterdam").tz_convert("UTC")
    end = day + pd.Timedelta(hours=24)
    actuals = Actuals.from_scenario(week_60, home)
    watcher = Watcher(broker)
    trace, log = tmp_path / "inverter.jsonl", tmp_path / "decisions.jsonl"

    async def main() -> int:
        clock = SimulatedClock(day, speed=4 * 3600.0)  # an hour in a quarter of a second
        inverter = SimulatedInverter(home.battery, inst.battery.initial_energy_kwh, home.grid_limit_kw, now=day)
        port = await inverter.start()
        playing = asyncio.ensure_future(serve_on_clock(inverter, actuals, clock, end, trace, step_real_s=0.01))

        async def owner_changes_the_reserve() -> None:
            await clock.sleep_until(day + pd.Timedelta(hours=9, minutes=30))
            await asyncio.to_thread(watcher.send, "dwars/reserve/set", "25")

        changing = asyncio.ensure_future(owner_changes_the_reserve())
        try:
            runner = await run_replay(inst, week_60, clock, log, end, port=port, config_path=config)
            await playing
            await changing
        finally:
            await inverter.stop()
        return runner.decisions

    try:
        decisions = asyncio.run(main())
        watcher.wait("dwars/reserve_target/state", lambda p: float(p) == 25.0)
        latest = watcher.latest()
    finally:
        watcher.close()

    assert decisions == 24 and len(read_records(log)) == 24
    assert load_config(config).battery.reserve_pct == 25  # written back to the owner's file ...
    assert "config changed from Home Assistant" in caplog.text  # ... and the loop took it over
    assert latest["dwars/availability"] == "offline"  # said goodbye at the end
    assert latest["dwars/mode/state"] in {"MSC", "Hold", "Import", "Export"}
    assert float(latest["dwars/soc/state"]) >= 25.0 - 1.0  # the new reserve held after the change

    played = [json.loads(line) for line in trace.read_text().splitlines()]
    assert len(played) == 24
    cost = json.loads(latest["dwars/cost_today/state"])["value"]
    # The ledger infers the grid flows from PV, load and the change of the SoC it reads; the inverter knows them.
    # The last hour is costed only at the next decision, which does not come within the day.
    assert cost == pytest.approx(sum(p["energy_cost_eur"] for p in played[:-1]), abs=0.06)  # SoC read in 0.1 % steps
    without = json.loads(latest["dwars/cost_today_without_battery/state"])["value"]
    assert without > cost  # a March day with the rule controller: the battery saved money


def test_the_ledger_resets_at_local_midnight_and_reads_energy_as_ac_power() -> None:
    ledger = DayLedger("Europe/Amsterdam", efficiency_one_way=0.95)
    late = pd.Timestamp("2024-10-26 23:00", tz="Europe/Amsterdam").tz_convert("UTC")
    ledger.add(IntervalMeasurement(late, 60, 0.0, 1.0, 0.0, 0.30, 0.10))
    assert ledger.cost_eur == pytest.approx(0.30) and ledger.cost_without_battery_eur == pytest.approx(0.30)
    # Midnight local (22:00 UTC in summer time): a new day; the battery gives 0.95 kWh to the house.
    ledger.add(IntervalMeasurement(late + pd.Timedelta(hours=1), 60, 0.0, 1.0, -1.0, 0.30, 0.10))
    assert ledger.intervals == 1 and ledger.cost_eur == pytest.approx(0.30 * 0.05)
    assert battery_ac_kw(0.95, 1.0, 0.95) == pytest.approx(1.0)  # charging 0.95 kWh took 1 kWh of AC
    # A P1 meter's flows replace the inferred ones.
    ledger.add(IntervalMeasurement(late + pd.Timedelta(hours=2), 60, 2.0, 1.0, 0.0, 0.30, 0.10, 0.0, 1.0))
    assert ledger.cost_eur == pytest.approx(0.30 * 0.05 - 0.10)


def test_the_live_mode_decides_on_the_feeds_against_the_inverter(
        tmp_path: Path, week_15: Scenario, monkeypatch: pytest.MonkeyPatch,
        server: str,  # noqa: F811  (the fixture imported above)
) -> None:
    """``dwars run`` as on the Pi: ENTSO-E prices and the Open-Meteo forecast from (local) servers, the load history
    in SQLite, the inverter of the config; three hours on a fast clock."""
    monkeypatch.setenv("DWARS_TEST_ENTSOE_TOKEN", TOKEN)
    start = pd.Timestamp("2024-03-30 14:00", tz="Europe/Amsterdam").tz_convert("UTC")
    end = start + pd.Timedelta(hours=3)
    inst0 = load_config(ROOT / "examples" / "home.toml")
    home = Home.from_installation(inst0)
    actuals = Actuals.from_scenario(week_15, home)

    kettle_on = start + pd.Timedelta(minutes=100)  # the P1 meter sees 6.5 kW of import from here on

    def p1_power(now: object) -> tuple[float, ...]:
        return (6.5 if pd.Timestamp(now) >= kettle_on else 0.4,)

    async def main() -> tuple[int, int, int]:
        clock = SimulatedClock(start, speed=1800.0)  # a quarter hour in half a second
        inverter = SimulatedInverter(home.battery, inst0.battery.initial_energy_kwh, home.grid_limit_kw, now=start)
        port = await inverter.start()
        meter_time = lambda: clock.now().floor("us").to_pydatetime()  # noqa: E731  (the meter runs on the clock)
        async with simulated_p1_server(p1_power, interval_s=0.02, clock=meter_time) as p1:
            config = tmp_path / "home.toml"
            shutil.copy(ROOT / "examples" / "home.toml", config)
            with config.open("a") as f:
                f.write(f'\n[runtime]\ninverter = "sunspec"\ninverter_port = {port}\nprices = "entsoe"\n'
                        f'entsoe_token_env = "DWARS_TEST_ENTSOE_TOKEN"\nprices_url = "{server}/api"\n'
                        f'weather_url = "{server}/v1/forecast"\ndata_dir = "data"\nmeter = "dsmr_tcp"\n'
                        f'meter_host = "127.0.0.1"\nmeter_port = {p1.port}\n')
            inst = load_config(config)
            playing = asyncio.ensure_future(serve_on_clock(inverter, actuals, clock, end, step_real_s=0.01))
            try:
                runner = await run_live(inst, config, clock, until=end, meter_poll_s=0.02)
                await playing
            finally:
                await inverter.stop()
        return runner.decisions - runner.early, runner.loop.failures, runner.early

    decisions, failures, early = asyncio.run(main())
    # Start-up (policy, feeds) may take a simulated quarter hour at this speed: the loop may begin with the
    # second interval, never with a burst of stale ones.
    assert decisions in (11, 12) and failures == 0
    records = read_records(tmp_path / "data" / "decisions.jsonl")  # the log lives in the config's data_dir
    assert len(records) == decisions + early and all(not r["reason"].startswith("no decision") for r in records)
    again = [r for r in records if "decided again: the grid import is 6.5 kW" in r["reason"]]
    assert len(again) == early >= 1  # the peak on the P1 meter had the interval decided again, once per peak
    assert all(pd.Timestamp(r["time"]) >= kettle_on.floor("15min") for r in again)
    assert any((tmp_path / "data" / "prices").iterdir())  # the day's prices cached for a feed outage
    history = LoadHistory(tmp_path / "data" / "history.sqlite")
    loads = history.between(start, end)  # the meter's import turned into measured load, kept across restarts
    assert len(loads) >= 3
