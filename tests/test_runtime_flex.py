"""The flexible loads on the Pi, end to end over real parts: the control loop commands the simulated inverter and
the simulated EV charger over Modbus TCP through a real January night; P1 readings cut the charger and switch the
boiler."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from dwars.config import BoilerConfig, EvConfig, Installation
from dwars.env.ev import target_kwh
from dwars.policy.base import Home
from dwars.policy.decision_log import DecisionLog, read_records
from dwars.policy.registry import make_controller
from dwars.policy.shield import Shield
from dwars.runtime.charger import ChargerDriver
from dwars.runtime.clock import Tick
from dwars.runtime.driver import SunSpecDriver
from dwars.runtime.flex import FlexRuntime, next_departure
from dwars.runtime.loop import ControlLoop, ReplayInputs
from dwars.runtime.meter.reading import MeterReading
from dwars.runtime.sim_charger import SimulatedCar, SimulatedCharger
from dwars.runtime.sim_inverter import SimulatedInverter
from dwars.runtime.switch import SimulatedSwitch

TZ = "Europe/Amsterdam"
EV = EvConfig(arrive_hour=18, depart_hour=7, daily_kwh=8.0, target_pct=80.0, charger="simulated")


def test_next_departure_keeps_the_local_clock() -> None:
    evening = pd.Timestamp("2024-03-30 18:00", tz=TZ).tz_convert("UTC")
    assert next_departure(evening, 7, TZ) == pd.Timestamp("2024-03-31 07:00", tz=TZ)  # after the spring change
    assert next_departure(pd.Timestamp("2024-01-10 05:00", tz=TZ), 7, TZ) == pd.Timestamp("2024-01-10 07:00", tz=TZ)


def test_a_january_night_charges_the_car_in_the_cheapest_quarters(tmp_path: Path, home_inst: Installation,
                                                                   make_scenario) -> None:
    inst = dataclasses.replace(home_inst, ev=EV)
    home = Home.from_installation(inst)
    scenario = make_scenario(inst, "2024-01-09", "2024-01-12", 15)
    inputs = ReplayInputs(scenario, home)
    arrive = pd.Timestamp("2024-01-10 18:00", tz=TZ).tz_convert("UTC")
    depart = pd.Timestamp("2024-01-11 07:00", tz=TZ).tz_convert("UTC")
    first = int(scenario.index.get_loc(arrive))
    n = int((depart - arrive) / pd.Timedelta(minutes=15))
    car = SimulatedCar(capacity_kwh=EV.capacity_kwh, energy_kwh=target_kwh(EV) - EV.daily_kwh, max_current_a=16,
                       phases=3, efficiency=EV.efficiency)
    charged = np.zeros(n)

    async def run() -> None:
        inverter = SimulatedInverter(home.battery, inst.battery.initial_energy_kwh)
        charger = SimulatedCharger(car, sessions=[(arrive, depart)], now=arrive, timeout_s=3600)
        inverter_port, charger_port = await inverter.start(), await charger.start()
        driver = SunSpecDriver("127.0.0.1", inverter_port)
        ev_driver = ChargerDriver("alfen_ng9xx", "127.0.0.1", charger_port, now=lambda: charger.now)
        await driver.connect()
        await ev_driver.connect()
        flex = FlexRuntime(inst, ev_driver, None, 15)
        loop = ControlLoop(home, make_controller("rule", home), driver, inputs, 15, Shield(home),
                           DecisionLog(tmp_path / "decisions.jsonl"), flex=flex)

        async def ticks():
            for k in range(n):
                yield Tick(arrive + pd.Timedelta(minutes=15 * k))

        def play(start: pd.Timestamp, applied: object) -> None:
            i = int(scenario.index.get_loc(start))
            charged[i - first] = charger.advance(15)
            inverter.advance(15, inputs.pv_kw[i], inputs.load_kw[i], inputs.forecaster.import_price[i],
                             inputs.forecaster.export_price[i])

        try:
            await loop.run(ticks(), play)
        finally:
            loop.decision_log.close()
            driver.close()
            ev_driver.close()
            await inverter.stop()
            await charger.stop()

    asyncio.run(run())
    records = read_records(tmp_path / "decisions.jsonl")
    assert len(records) == n and all("ev" in r["loads"] for r in records)
    reasons = [r["loads"]["ev"]["reason"] for r in records]
    assert any("waiting for cheaper quarters" in x for x in reasons) and any("the cheapest" in x for x in reasons)
    # The car reached its target by 07:00 (the charger takes whole amperes, so it may end a little short).
    assert car.energy_kwh >= target_kwh(EV) - 0.5
    # ...and was charged in cheap quarters: the mean price paid is below the night's mean and the plain evening start.
    price = ReplayInputs(scenario, home).forecaster.import_price[first:first + n]
    paid = float(np.sum(charged * price) / np.sum(charged))
    assert paid < float(np.mean(price)) - 0.01
    assert paid < float(np.mean(price[:4])) - 0.01
    # No more than the need and one quarter at the charger's minimum (a charger cannot finish on less).
    assert np.sum(charged) <= EV.daily_kwh / EV.efficiency + EV.charger_min_kw * 0.25 + 0.05


def _reading(t: datetime, net_kw: float, phases_kw: tuple[float, float, float]) -> MeterReading:
    return MeterReading(t, max(net_kw, 0.0), max(-net_kw, 0.0), 1000.0, 500.0, phase_power_kw=phases_kw)


def test_p1_readings_cut_the_charger_at_the_fuse_and_give_the_power_back(home_inst: Installation) -> None:
    ev = dataclasses.replace(EV, phases=1, charger_min_kw=1.38, charger_max_kw=7.36)
    inst = dataclasses.replace(home_inst, ev=ev)
    start = pd.Timestamp("2024-01-10 17:00", tz="UTC")
    car = SimulatedCar(capacity_kwh=60, energy_kwh=30, max_current_a=32, phases=1, efficiency=0.9)

    async def run() -> list[float]:
        charger = SimulatedCharger(car, sessions=[(start, start + pd.Timedelta(hours=10))], phases=1, now=start,
                                   timeout_s=3600)
        port = await charger.start()
        driver = ChargerDriver("alfen_ng9xx", "127.0.0.1", port, phases=1, now=lambda: charger.now)
        await driver.connect()
        flex = FlexRuntime(inst, driver, None, 15)
        try:
            flex.ev_wanted_kw = 7.36  # what the plan wants now
            await flex._command(7.36)
            charger.advance(0.1)
            amps = [charger.offered_a()]
            # L1 carries the car's 7.4 kW plus a 3 kW cooker: 10.4 kW on a 25 A (5.75 kW) fuse.
            t = start.to_pydatetime()
            await flex.on_reading(_reading(t, 11.0, (10.4, 0.3, 0.3)))
            charger.advance(0.1)
            amps.append(charger.offered_a())
            # The cooker is off again: the car gets its power back.
            drawn = charger.power_kw
            await flex.on_reading(_reading(t + timedelta(seconds=10), drawn + 0.6, (drawn + 0.2, 0.2, 0.2)))
            charger.advance(0.1)
            amps.append(charger.offered_a())
            return amps
        finally:
            driver.close()
            await charger.stop()

    full, cut, back = asyncio.run(run())
    assert full == 32
    # 5.75 kW fuse - 3.0 kW house on L1 leaves 2.75 kW: 11 A (whole amperes, rounded down).
    assert cut == 11
    # The cooker is off: 5.75 kW fuse - 0.2 kW house on L1 = 5.55 kW: 24 A, more than before but never the fuse's 25.
    assert back == 24


def test_a_lasting_export_switches_the_boiler_on_and_an_import_off(home_inst: Installation) -> None:
    boiler = BoilerConfig(divert_above_kw=1.5, release_above_kw=0.5, divert_minutes=2.0)
    inst = dataclasses.replace(home_inst, boiler=boiler)
    t0 = datetime(2024, 6, 4, 10, 0, tzinfo=UTC)
    switch = SimulatedSwitch(min_toggle_s=60, now=lambda: pd.Timestamp(clock[0]))
    clock = [t0]
    flex = FlexRuntime(inst, None, switch, 15)

    async def feed(net_kw: float, seconds: int) -> None:
        for _ in range(seconds // 10):
            clock[0] += timedelta(seconds=10)
            await flex.on_reading(_reading(clock[0], net_kw, (net_kw / 3,) * 3))

    async def run() -> None:
        await feed(-2.4, 60)  # a minute of export: not yet
        assert switch.state is not True
        await feed(-2.4, 70)  # two minutes and more: on
        assert switch.state is True
        await feed(-0.3, 300)  # the boiler takes most of the surplus: stays on (between the levels)
        assert switch.state is True
        await feed(0.9, 130)  # a cloud: importing for two minutes: off
        assert switch.state is False

    asyncio.run(run())
    assert [on for _, on in switch.history] == [True, False]
    assert flex.boiler_reason.startswith("boiler off: importing")
    records = asyncio.run(flex.interval(pd.Timestamp(clock[0]), None))
    assert records["boiler"]["on"] is False and records["boiler"]["reason"].startswith("boiler off")


def test_a_reading_seen_twice_is_skipped_by_the_diverter(home_inst: Installation) -> None:
    """A streaming meter hands the same telegram out until the next one: the diverter must not see it twice (its
    window would be empty, which it refuses)."""
    inst = dataclasses.replace(home_inst, boiler=BoilerConfig(divert_minutes=0.5, switch="simulated"))
    flex = FlexRuntime(inst, None, SimulatedSwitch(min_toggle_s=0.0), 15)
    t0 = datetime(2024, 6, 26, 12, tzinfo=UTC)

    async def main() -> None:
        for k in range(0, 60, 5):
            reading = MeterReading(t0 + timedelta(seconds=k), 0.0, 2.5, 1.0, 1.0)
            await flex.on_reading(reading)
            await flex.on_reading(reading)  # the same telegram again

    asyncio.run(main())
    assert flex.boiler_switched  # 2.5 kW exported for a minute: on, the repeats changed nothing
