"""High-voltage mode on the Pi, end to end: a recorded high-voltage afternoon played by a simulated P1 meter whose
voltage the home's own export moves, the runtime deciding against a simulated inverter on the same fast clock."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dwars.config import VoltageConfig, load_config
from dwars.data.scenario import Scenario
from dwars.env.modes import Decision, Mode
from dwars.env.voltage import VoltageGuard
from dwars.policy.base import Home
from dwars.policy.decision_log import read_records
from dwars.runtime.app import run_replay
from dwars.runtime.clock import SimulatedClock
from dwars.runtime.meter import MeterReading, simulated_p1_server
from dwars.runtime.sim_inverter import SimulatedInverter
from dwars.runtime.sim_process import Actuals, serve_on_clock
from dwars.runtime.voltage import VoltageWatch

ROOT = Path(__file__).resolve().parents[1]
AFTERNOON = ROOT / "tests" / "fixtures" / "voltage" / "high_voltage_afternoon.csv"
RISE_V_PER_KW = 0.8  # the cable of the simulated home: its own export raises its voltage this much per kW
START = pd.Timestamp("2024-06-26 12:00", tz="Europe/Amsterdam").tz_convert("UTC")
END = pd.Timestamp("2024-06-26 18:00", tz="Europe/Amsterdam").tz_convert("UTC")


def street_v() -> pd.Series:
    """The recorded afternoon: the street's voltage a minute at a time (V)."""
    frame = pd.read_csv(AFTERNOON)
    return pd.Series(frame["street_v"].to_numpy(), index=pd.DatetimeIndex(pd.to_datetime(frame["time"], utc=True)))


def selling_afternoon(scenario: Scenario) -> Scenario:
    """The scenario with a price peak from 13:00 to 17:30, local time: the rule controller sells the battery then,
    into the street's highest voltage."""
    frame = scenario.frame.copy()
    local = frame.index.tz_convert("Europe/Amsterdam")
    peak = (local >= pd.Timestamp("2024-06-26 13:00", tz="Europe/Amsterdam")) & (
        local < pd.Timestamp("2024-06-26 17:30", tz="Europe/Amsterdam"))
    frame.loc[peak, "price_eur_per_mwh"] = 450.0
    frame.loc[~peak, "price_eur_per_mwh"] = np.minimum(frame.loc[~peak, "price_eur_per_mwh"], 60.0)
    return dataclasses.replace(scenario, frame=frame)


def signed_kw(decision: dict[str, Any]) -> float:
    """A logged decision's battery power, charge positive (self-consumption and hold: 0)."""
    sign = {"import": 1.0, "export": -1.0}.get(decision["mode"], 0.0)
    return sign * float(decision.get("power_kw", 0.0))


def rolling_max_mean(samples: list[tuple[datetime, float]], minutes: float = 10.0) -> float:
    """The highest 10-minute mean of (time, V) samples, as the inverter's protection computes it."""
    series = pd.Series([v for _, v in samples], index=pd.DatetimeIndex([t for t, _ in samples]))
    series = series[~series.index.duplicated()].sort_index()
    return float(series.rolling(pd.Timedelta(minutes=minutes), min_periods=3).mean().max())


def play_afternoon(tmp_path: Path, scenario: Scenario, voltage: bool,
                   speed: float = 3600.0) -> tuple[list[dict[str, Any]], list, list]:
    """Replay 12:00-18:00 with the rule controller; returns the decision log, the meter's (time, V) samples and
    the battery's (time, kWh)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    # examples/home.toml with a 20 kWh battery: it does not fill up in the afternoon, so what the mode does is
    # all it could do (a full battery without a boiler has nothing left to absorb with).
    text = (ROOT / "examples" / "home.toml").read_text().replace("capacity_kwh = 10.0", "capacity_kwh = 20.0")
    assert "capacity_kwh = 20.0" in text
    config = tmp_path / "home.toml"
    config.write_text(text)
    home = Home.from_installation(load_config(config))
    actuals = Actuals.from_scenario(scenario, home)
    street = street_v()
    seen: list[tuple[datetime, float]] = []
    energy: list[tuple[pd.Timestamp, float]] = []

    async def main() -> None:
        clock = SimulatedClock(START, speed=speed)
        inverter = SimulatedInverter(home.battery, 8.0, home.grid_limit_kw, now=START)
        port = await inverter.start()

        def net_kw(now: datetime) -> float:
            i = actuals.at(pd.Timestamp(now))
            return float(actuals.load_kw[i] - actuals.pv_kw[i] + inverter.battery_w / 1000.0)

        def power(now: datetime) -> tuple[float, ...]:
            return (net_kw(now),)

        def volts(now: datetime, phases: Any) -> tuple[float, ...]:
            v = float(np.interp(pd.Timestamp(now).value, street.index.as_unit("ns").asi8, street.to_numpy()))
            v -= RISE_V_PER_KW * sum(phases)  # the home's own export raises it
            seen.append((now, v))
            energy.append((pd.Timestamp(now), inverter.energy_kwh))
            return (round(v, 1),)

        meter_time = lambda: clock.now().floor("s").to_pydatetime()  # noqa: E731  (the meter runs on the clock)
        async with simulated_p1_server(power, interval_s=0.01, clock=meter_time, phase_voltage_v=volts) as p1:
            with config.open("a") as f:
                f.write(f'\n[runtime]\ncontroller = "rule"\ninverter = "sunspec"\ninverter_port = {port}\n'
                        f'meter = "dsmr_tcp"\nmeter_host = "127.0.0.1"\nmeter_port = {p1.port}\ndata_dir = "data"\n')
                if voltage:
                    f.write(f'\n[voltage]\nsource = "meter"\nrise_v_per_kw = {RISE_V_PER_KW}\n')
            inst = load_config(config)
            playing = asyncio.ensure_future(serve_on_clock(inverter, actuals, clock, END, step_real_s=0.005))
            try:
                await run_replay(inst, scenario, clock, tmp_path / "decisions.jsonl", END, port=port,
                                 config_path=config, meter_poll_s=0.01)
                await playing
            finally:
                await inverter.stop()

    asyncio.run(main())
    return read_records(tmp_path / "decisions.jsonl"), seen, energy


def test_a_recorded_high_voltage_afternoon_has_the_battery_charge_before_the_trip_level_and_stop_after(
        tmp_path: Path, make_scenario: Any, home_inst: Any) -> None:
    scenario = selling_afternoon(make_scenario(home_inst, "2024-06-26", "2024-06-28", 15))
    trip_v = VoltageConfig().trip_v

    # Without the mode the rule controller sells into the high street voltage: the inverter would trip.
    plain, plain_seen, _ = play_afternoon(tmp_path / "plain", scenario, voltage=False)
    assert any(r["applied"]["mode"] == "export" for r in plain)
    assert rolling_max_mean(plain_seen) > trip_v

    # Half the pace (a quarter hour in half a second): at the fast clock a tenth of a second of a busy test machine
    # is six minutes of the afternoon before the loop answers the mode, which no Pi would take.
    records, seen, energy = play_afternoon(tmp_path / "guarded", scenario, voltage=True, speed=1800.0)
    on = [r for r in records if r.get("loads", {}).get("voltage", {}).get("mode") == "on"]
    assert on, "high-voltage mode never switched on"
    first = on[0]
    # It acted before the trip level: at the activation level (253 - 2 V), below 253 V.
    assert VoltageConfig().act_v <= first["loads"]["voltage"]["voltage_v"] < trip_v
    charging = [r for r in on if r["applied"]["mode"] in ("msc", "import") and "high voltage" in r["applied"]["reason"]]
    assert charging and "om afschakelen te voorkomen" in charging[0]["loads"]["voltage"]["reden"]
    assert any("decided again: high-voltage mode on" in r["applied"]["reason"] for r in records)
    # While the mode was on the battery always did more for the voltage than the plan (less export, or a charge) ...
    for r in on:
        assert signed_kw(r["applied"]) >= signed_kw(r["proposed"]) - 1e-6
    t_on = pd.Timestamp(first["time"])
    t_off = max(pd.Timestamp(r["time"]) for r in on) + pd.Timedelta(minutes=15)
    stored = [e for t, e in energy if t_on <= t <= t_off]
    assert max(stored) > stored[0] + 1.0  # ... and it charged, where the plan sold
    # ... the inverter's 10-minute mean stayed below its trip level the whole afternoon ...
    assert rolling_max_mean(seen) < trip_v
    # ... and the mode let go when the street's voltage fell: the controller's own decision again after it.
    after = [r for r in records if pd.Timestamp(r["time"]) >= t_off]
    assert after and all("high voltage" not in r["applied"]["reason"] for r in after)
    assert any("decided again: high-voltage mode off" in r["applied"]["reason"] for r in records)


# -- the watch on its own -------------------------------------------------------------------------------------


def reading(t: datetime, volts: float, net_kw: float) -> MeterReading:
    return MeterReading(t, max(net_kw, 0.0), max(-net_kw, 0.0), 100.0, 50.0, phase_voltage_v=(volts, volts - 1.0,
                                                                                               volts - 2.0))


def test_the_watch_asks_for_a_new_decision_once_per_switch_and_judges_the_voltage_without_its_own_effect() -> None:
    cfg = VoltageConfig(rise_v_per_kw=1.0)
    t0 = datetime(2024, 6, 26, 12, tzinfo=UTC)
    now = {"t": t0}
    watch = VoltageWatch(cfg, max_charge_kw=5.0, now=lambda: now["t"])

    async def main() -> list[str]:
        requests: asyncio.Queue[str] = asyncio.Queue()
        task = asyncio.ensure_future(watch.watch(requests))
        await asyncio.sleep(0)
        for k in range(0, 1200, 10):  # 20 minutes at 252 V measured, exporting 2 kW with the battery on Hold
            now["t"] = t0 + timedelta(seconds=k)
            await watch.on_reading(reading(now["t"], 252.0, -2.0))
            if watch.guard.active and watch.absorbed_kw == 0:
                forecasts = type("F", (), {"pv_kw": np.array([2.3]), "load_kw": np.array([0.3])})()
                decision, entry = watch.adjust(Decision(Mode.HOLD, 0.0, "keep for the evening"), forecasts,
                                               Decision(Mode.HOLD))
                assert decision.mode == Mode.MSC and "about 2.0 kW" in decision.reason
                assert entry is not None and entry["mode"] == "on"
        # The battery now takes 2 kW: the meter shows 250.0 V (2 kW x 1 V/kW less), below the release level of
        # 249 V only if the watch forgot its own effect. It must stay on.
        for k in range(1200, 2400, 10):
            now["t"] = t0 + timedelta(seconds=k)
            await watch.on_reading(reading(now["t"], 248.5, 0.0))
        assert watch.guard.active
        for k in range(2400, 3600, 10):  # the street falls: 246 V measured + 2 V of its own effect = 248 V
            now["t"] = t0 + timedelta(seconds=k)
            await watch.on_reading(reading(now["t"], 246.0, 0.0))
        task.cancel()
        out = []
        while not requests.empty():
            out.append(requests.get_nowait())
        return out

    requests = asyncio.run(main())
    assert [r.split(":")[0] for r in requests] == ["high-voltage mode on", "high-voltage mode off"]
    assert not watch.guard.active and watch.absorbed_kw == 0.0


def test_a_meter_without_voltages_is_reported_and_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    watch = VoltageWatch(VoltageConfig(), max_charge_kw=5.0)
    t0 = datetime(2024, 6, 26, 12, tzinfo=UTC)

    async def main() -> None:
        for k in range(5):
            await watch.on_reading(MeterReading(t0 + timedelta(seconds=k), 0.0, 3.0, 1.0, 1.0))

    asyncio.run(main())
    assert not watch.guard.active
    assert sum("does not report the voltage" in r.message for r in caplog.records) == 1  # once, not per reading


def test_the_guard_takes_the_highest_phase_and_restarts_after_a_gap() -> None:
    guard = VoltageGuard(VoltageConfig())
    t0 = datetime(2024, 6, 26, 12, tzinfo=UTC)
    for k in range(0, 600, 5):
        guard.update(t0 + timedelta(seconds=k), [240.0, 251.5, 239.0])
    assert guard.active and guard.phase == 2 and guard.mean_v == pytest.approx(251.5)
    # Twenty minutes without readings: what happened is unknown; the mean starts again (not enough readings yet).
    guard.update(t0 + timedelta(minutes=30), [240.0, 240.0, 240.0])
    assert np.isnan(guard.mean_v) and guard.active  # the mode keeps its state until the mean is trusted again


def test_the_boiler_takes_over_when_the_battery_is_full_and_goes_off_with_the_mode(home_inst: Any) -> None:
    from dwars.config import BoilerConfig
    from dwars.runtime.flex import FlexRuntime
    from dwars.runtime.switch import SimulatedSwitch

    cfg = VoltageConfig(rise_v_per_kw=1.0)
    inst = dataclasses.replace(home_inst, boiler=BoilerConfig(power_kw=2.0, switch="simulated"), voltage=cfg)
    t0 = datetime(2024, 6, 26, 12, tzinfo=UTC)
    now = {"t": t0}
    switch = SimulatedSwitch(min_toggle_s=0.0, now=lambda: pd.Timestamp(now["t"]))
    flex = FlexRuntime(inst, None, switch, 15)
    watch = VoltageWatch(cfg, max_charge_kw=5.0, flex=flex, now=lambda: now["t"])
    forecasts = type("F", (), {"pv_kw": np.array([3.3]), "load_kw": np.array([0.3])})()

    async def feed(seconds: range, volts: float, net_kw: float) -> None:
        for k in seconds:
            now["t"] = t0 + timedelta(seconds=k)
            await watch.on_reading(reading(now["t"], volts, net_kw))

    async def main() -> list[bool]:
        await feed(range(0, 900, 5), 252.0, -3.0)  # the mode switches on; the battery is full: 3 kW still go out
        assert watch.guard.active and not switch.history
        decision, entry = watch.adjust(Decision(Mode.EXPORT, 2.0, "selling"), forecasts, Decision(Mode.MSC), 100.0)
        assert entry is not None and entry["mode"] == "on" and entry["voltage_v"] == pytest.approx(252.0)
        assert decision.mode == Mode.HOLD and watch.battery_absorbed_kw == pytest.approx(2.0)  # the export it stopped
        await feed(range(900, 930, 5), 252.0, -3.0)  # not yet a minute of it: a cloud's edge does not count
        assert not watch.boiler_on
        await feed(range(930, 1000, 5), 252.0, -3.0)
        assert watch.boiler_on and watch.absorbed_kw == pytest.approx(4.0)  # 2 kW stopped export + 2 kW boiler
        await feed(range(1000, 1600, 5), 249.0, -1.0)  # the boiler draws; the street is still high
        assert watch.guard.active and watch.boiler_on
        await feed(range(1600, 3000, 5), 243.0, -1.0)  # the street falls (243 + 4 V of the mode's own effect < 249)
        return [on for _, on in switch.history]

    assert asyncio.run(main()) == [True, False]
    assert not watch.guard.active and not flex.boiler_held


def test_the_inverter_as_voltage_source_switches_the_mode_over_modbus(home_inst: Any) -> None:
    """``source = "inverter"``: the watch polls the (simulated, SunSpec) inverter's grid voltage over Modbus TCP."""
    from dwars.runtime.app import open_voltage_watch
    from dwars.runtime.driver import SunSpecDriver

    home = Home.from_installation(home_inst)
    inst = dataclasses.replace(home_inst, voltage=VoltageConfig(source="inverter", window_minutes=1.0))
    t0 = pd.Timestamp("2024-06-26 12:00", tz="UTC")
    clock = SimulatedClock(t0, speed=600.0)  # ten minutes a second

    async def main() -> tuple[list[str], bool]:
        inverter = SimulatedInverter(home.battery, 5.0, home.grid_limit_kw, now=t0)
        port = await inverter.start()
        driver = SunSpecDriver("127.0.0.1", port)
        try:
            await driver.connect()
            watch = open_voltage_watch(inst, driver, None, clock)
            watch.poll_s = 0.01
            requests: asyncio.Queue[str] = asyncio.Queue()
            task = asyncio.ensure_future(watch.watch(requests))
            inverter.set_grid_voltage((252.5, 240.0, 239.0))
            first = await asyncio.wait_for(requests.get(), 10.0)
            assert watch.guard.phase == 1 and watch.measured.mean_v == pytest.approx(252.5, abs=0.05)
            inverter.set_grid_voltage(231.0)
            second = await asyncio.wait_for(requests.get(), 10.0)
            task.cancel()
            return [first, second], watch.guard.active
        finally:
            driver.close()
            await inverter.stop()

    got, active = asyncio.run(main())
    assert [g.split(":")[0] for g in got] == ["high-voltage mode on", "high-voltage mode off"] and not active


def test_a_voltage_source_that_cannot_work_stops_the_start_with_a_clear_error(home_inst: Any) -> None:
    from dwars.config import ConfigError
    from dwars.runtime.app import open_voltage_watch
    from dwars.runtime.driver import open_driver

    clock = SimulatedClock(START, speed=1.0)
    no_meter = dataclasses.replace(home_inst, voltage=VoltageConfig(source="meter"))
    with pytest.raises(ConfigError, match='needs a P1 meter'):
        open_voltage_watch(no_meter, None, None, clock)
    inverter = dataclasses.replace(home_inst, voltage=VoltageConfig(source="inverter"))

    async def main() -> None:  # a Modbus client needs a running event loop
        mapless = open_driver(ROOT / "tests" / "fixtures" / "voltage" / "no_voltage_map.toml", "127.0.0.1", 1502)
        with pytest.raises(ConfigError, match="names no grid-voltage registers"):
            open_voltage_watch(inverter, mapless, None, clock)
        assert open_voltage_watch(inverter, open_driver("huawei_sun2000", "127.0.0.1", 1502), None,
                                  clock) is not None

    asyncio.run(main())
