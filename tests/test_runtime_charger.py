"""The EV charger: its register map, float registers, the amps rule, and the driver against the simulated charger and
car over real Modbus TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import math
import re
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient

from dwars.config import EvConfig, SiteConfig
from dwars.runtime.charger import (
    ChargerDriver,
    ChargerError,
    RefusedChargerCommandError,
    amps_for,
    open_charger,
)
from dwars.runtime.chargermap import load_charger_map, parse_charger_map
from dwars.runtime.clock import SimulatedClock
from dwars.runtime.regmap import CommandError, MapError, Register, builtin_maps, load_map
from dwars.runtime.sim_charger import SimulatedCar, SimulatedCharger, state_words
from dwars.runtime.sim_inverter import _free_port

MAPS = Path(__file__).parents[1] / "dwars" / "runtime" / "maps"
GENERIC = (MAPS / "alfen_ng9xx.toml").read_text()
T0 = pd.Timestamp("2024-06-03 17:00", tz="UTC")
EVENING = [(T0, T0 + pd.Timedelta(hours=14))]


def with_charger(body: Callable[[SimulatedCharger, ChargerDriver], Awaitable[Any]], driver_map: str | None = None,
                 car: SimulatedCar | None = None, driver: dict[str, Any] | None = None, **sim: Any) -> Any:
    """Run ``body`` with a simulated charger (car connected from T0 for 14 h unless told) and a connected driver
    on the charger's simulated clock."""
    async def run() -> Any:
        charger = SimulatedCharger(car or SimulatedCar(), **{"sessions": EVENING, "now": T0, **sim})
        port = await charger.start()
        regmap = parse_charger_map(driver_map, "test.toml") if driver_map else load_charger_map("alfen_ng9xx")
        d = ChargerDriver(regmap, "127.0.0.1", port, timeout_s=1.0, retries=2, now=lambda: charger.now,
                          **(driver or {}))
        try:
            await d.connect()
            return await body(charger, d)
        finally:
            d.close()
            await charger.stop()

    return asyncio.run(run())


async def play(charger: SimulatedCharger, driver: ChargerDriver, minutes: float, step_s: float = 20.0) -> None:
    """``minutes`` of simulated time with dwars refreshing its command every ``step_s`` (as watch() does)."""
    for _ in range(round(minutes * 60 / step_s)):
        charger.advance(step_s / 60.0)
        await driver.refresh()


# --- the map ------------------------------------------------------------------------------------------------------

def test_the_shipped_charger_map_loads_with_its_allow_list() -> None:
    evse = load_charger_map("alfen_ng9xx")
    assert evse.writable == {"max_current"}  # dwars writes the current and nothing else
    assert evse.registers["max_current"].type == "float32" and evse.registers["energy_delivered"].type == "float64"
    assert (evse.timeout_s, evse.min_current_a, evse.current_step_a, evse.max_current_a) == (60, 6, 1, 32)
    # The "plugged" values are the IEC 61851 states with a car: B, C and D, as two ASCII characters per register.
    states = {bytes([int(v) >> 8, int(v) & 0xFF]).decode("ascii") for v in evse.plugged.one_of}
    assert states == {"B1", "B2", "C1", "C2", "D1", "D2"}
    assert state_words("C2")[0] in evse.plugged.one_of and state_words("A")[0] not in evse.plugged.one_of
    assert evse.command("set_current", {"current_a": 16, "phases": 3}) == {"max_current": 16.0}
    assert evse.command("stop", {"phases": 3}) == {"max_current": 0.0}
    with pytest.raises(CommandError, match=r"max_current = 40 A: must be 0..32 A"):
        evse.command("set_current", {"current_a": 40, "phases": 3})
    # Each kind of map is found only where it belongs.
    assert builtin_maps("charger") == ["alfen_ng9xx"] and "alfen_ng9xx" not in builtin_maps()
    with pytest.raises(MapError, match='device.kind = "charger": an inverter map is needed here; charger maps '
                                      "belong in ev.charger_map"):
        load_map(MAPS / "alfen_ng9xx.toml")
    with pytest.raises(MapError, match='huawei_sun2000.toml: device.kind: missing .a charger map says kind'):
        load_charger_map(MAPS / "huawei_sun2000.toml")
    with pytest.raises(MapError, match="no built-in charger map 'huawei_sun2000'; built in: alfen_ng9xx"):
        load_charger_map("huawei_sun2000")


@pytest.mark.parametrize(("old", "new", "message"), [
    ('type = "float32", scale = 0.001, unit = "kW"', 'type = "float16", scale = 0.001, unit = "kW"',
     'registers.real_power.type = "float16": must be one of uint16, int16, uint32, int32, float32, float64'),
    ('scale = 0.001, unit = "kW"', 'unit = "W"',
     'reading.charging_kw = "real_power": registers.real_power.unit is "W", must be "kW"'),
    ('timeout_s = 60 ', 'timeout_s = 0 ', "device.timeout_s = 0: must be > 0"),
    ('kind = "charger"', 'kind = "heat pump"', 'device.kind = "heat pump": must be one of inverter, charger'),
    ("one_of = [0x4231, 0x4232, 0x4331, 0x4332, 0x4431, 0x4432]", "one_of = []",
     "reading.plugged.one_of = []: must be a list of numbers"),
    ('energy_kwh = "energy_delivered"', 'session_kwh = "energy_delivered"\nenergy_kwh = "energy_delivered"',
     "reading.session_kwh or reading.energy_kwh: give one of them"),
    ('safe_current_a = "safe_current"\n', "",
     'commands.fail_safe.max_current = "safe_current_a": uses safe_current_a, which needs reading.safe_current_a'),
    ('[commands.stop]', '[commands.pause]', "commands.pause: unknown key; known keys: set_current, stop, fail_safe"),
    ('max_current = "current_a"', 'charge_phases = "current_a"',
     'commands.set_current.charge_phases: registers.charge_phases is read only (access = "r")'),
    ('max_current = "current_a"', "max_current = 16", "commands.set_current: no register is written with current_a"),
    ('max_current = "current_a"', 'max_current = "power_w / 230"', "unknown name 'power_w'; known: current_a, phases"),
    ("[commands.stop]                     # 0 A: the charger pauses the car (state B), the session stays open\n"
     "max_current = 0", "[commands.stop]\nmax_current = 48", "commands.stop.max_current = 48: must be 0..32 A"),
])
def test_a_bad_charger_map_is_a_clear_error_naming_file_key_and_value(old: str, new: str, message: str) -> None:
    assert old in GENERIC
    with pytest.raises(MapError) as info:
        parse_charger_map(GENERIC.replace(old, new, 1), "mine.toml")
    assert message in str(info.value)
    assert all(line.startswith("mine.toml: ") for line in str(info.value).splitlines())


# --- float registers and the amps rule ----------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.floats(-3.0e38, 3.0e38, allow_nan=False), st.sampled_from(["big", "little"]))
def test_float32_registers_carry_ieee_754_single_precision(value: float, order: str) -> None:
    reg = Register("x", 0, "float32", word_order=order)
    words = reg.encode(value)
    high_first = words if order == "big" else words[::-1]
    raw = struct.pack(">HH", *high_first)  # independent of the code: the bytes a float32 is on the wire
    assert struct.unpack(">f", raw)[0] == reg.decode(words) == float(np.float32(value))


@settings(max_examples=200, deadline=None)
@given(st.floats(-1e300, 1e300, allow_nan=False), st.floats(0.001, 1000.0))
def test_float64_registers_round_trip_exactly(value: float, scale: float) -> None:
    reg = Register("x", 0, "float64", scale=scale)
    words = reg.encode(value)
    assert len(words) == 4 and reg.decode(words) == pytest.approx(value, rel=1e-12)


def test_unavailable_floats_read_nan_and_nothing_unrepresentable_is_written() -> None:
    assert math.isnan(Register("x", 0, "float32").decode([0xFFFF, 0xFFFF]))  # Alfen's "not available"
    for kind, value in (("float32", 1e39), ("float32", math.nan), ("float64", math.inf), ("uint16", math.nan)):
        with pytest.raises(CommandError, match=re.escape(f"x = {value:g}: does not fit {kind}")):
            Register("x", 0, kind).encode(value)


@settings(max_examples=500, deadline=None)
@given(st.floats(0.0, 50.0), st.sampled_from([1, 3]), st.floats(200.0, 245.0), st.sampled_from([1.0, 0.5, 0.1]))
def test_the_current_never_exceeds_the_power_asked_and_is_never_below_6_a(
        power_kw: float, phases: int, voltage_v: float, step_a: float) -> None:
    amps = amps_for(power_kw, phases, voltage_v, step_a, 6.0)
    assert amps == 0.0 or amps >= 6.0 - 1e-9
    assert amps * phases * voltage_v <= power_kw * 1000.0 + 1e-6  # rounded down: never more than asked
    assert abs(amps / step_a - round(amps / step_a)) < 1e-6  # a whole number of steps
    if amps > 0:  # and the most that fits: one step more would exceed the power
        assert (amps + step_a) * phases * voltage_v > power_kw * 1000.0 - 1e-6
    else:  # stopped only when even 6 A would be too much
        assert 6.0 * phases * voltage_v > power_kw * 1000.0 - 1e-6


# --- the driver and the simulated charger over Modbus TCP ---------------------------------------------------------

def test_the_reading_shows_the_car_and_what_the_charger_delivers() -> None:
    async def body(charger: SimulatedCharger, driver: ChargerDriver) -> None:
        r = await driver.read()
        # No command yet: the charger offers its safe current (8 A here) to the car, on three phases.
        assert r.time == T0 and r.plugged and r.phases == 3
        assert (r.current_a, r.session_kwh) == (8.0, 0.0)
        assert r.charging_kw == pytest.approx(8 * 3 * 230 / 1000, rel=1e-6)
        charger.advance(30)
        r = await driver.read()
        assert r.session_kwh == pytest.approx(8 * 3 * 230 / 1000 * 0.5, rel=1e-6)

    with_charger(body, safe_current_a=8.0)


def test_a_power_becomes_whole_amps_on_the_register_and_the_car_charges_at_it() -> None:
    async def body(charger: SimulatedCharger, driver: ChargerDriver) -> None:
        before = charger.car.energy_kwh
        assert await driver.set_power(7.0, 3, 230.0) == pytest.approx(6.9)  # 10.14 A -> 10 A
        assert charger.value("max_current") == 10.0 and charger.written_a == 10.0
        await play(charger, driver, 15)
        r = await driver.read()
        assert r.current_a == 10.0 and r.charging_kw == pytest.approx(6.9, rel=1e-6)
        assert r.session_kwh == pytest.approx(6.9 * 0.25, rel=1e-6)  # a quarter hour at 6.9 kW
        assert charger.car.energy_kwh - before == pytest.approx(6.9 * 0.25 * 0.9, rel=1e-6)
        # 11 kW is 15.94 A: 15 A; the 16 A of "3 x 16 A = 11 kW" needs 11.04 kW.
        assert await driver.set_power(11.0, 3, 230.0) == pytest.approx(15 * 0.69)
        assert await driver.set_power(11.04, 3, 230.0) == pytest.approx(11.04)
        assert charger.value("max_current") == 16.0
        # The car takes what it can: a 1-phase car at 16 A on a 3-phase charger draws 3.68 kW.
        charger.car.phases = 1
        await play(charger, driver, 1)
        assert (await driver.read()).charging_kw == pytest.approx(16 * 230 / 1000, rel=1e-6)

    with_charger(body)


def test_below_6_a_the_charger_stops_and_the_car_waits() -> None:
    async def body(charger: SimulatedCharger, driver: ChargerDriver) -> None:
        await driver.set_power(11.04, 3, 230.0)
        assert await driver.set_power(4.1, 3, 230.0) == 0.0  # 5.94 A: below the IEC 61851 minimum
        assert charger.value("max_current") == 0.0 and driver.commanded_a == 0.0
        await play(charger, driver, 5)
        r = await driver.read()
        assert r.plugged and r.charging_kw == 0.0 and r.current_a == 0.0
        assert charger.state == "B1"  # connected, no PWM: the session stays open
        assert await driver.set_power(4.2, 3, 230.0) == pytest.approx(6 * 3 * 230 / 1000)  # 6.09 A -> 6 A

    with_charger(body)


def test_unchanged_commands_cost_no_writes_until_the_refresh() -> None:
    async def body(charger: SimulatedCharger, driver: ChargerDriver) -> None:
        await driver.set_power(7.0, 3, 230.0)
        await driver.set_power(7.0, 3, 230.0)
        assert charger.writes == 1  # the charger holds 10 A, written 0 s ago
        charger.advance(20 / 60)
        assert await driver.refresh() == 0 and charger.writes == 1
        charger.advance(10 / 60)  # half the 60 s timeout since the write: rewritten before the charger falls back
        assert await driver.refresh() == 1 and charger.writes == 2
        await driver.set_power(9.0, 3, 230.0)  # a new current is written at once
        assert charger.writes == 3 and charger.value("max_current") == 13.0

    with_charger(body)


def test_the_charger_falls_back_to_its_safe_current_when_dwars_goes_quiet() -> None:
    async def body(charger: SimulatedCharger, driver: ChargerDriver) -> None:
        await driver.set_power(11.04, 3, 230.0)
        charger.advance(0.9)  # 54 s: still dwars's 16 A
        assert (await driver.read()).current_a == 16.0 and charger.value("setpoint_accounted") == 1
        charger.advance(0.2)  # 66 s without a write
        r = await driver.read()
        assert r.current_a == 7.0 and r.charging_kw == pytest.approx(7 * 3 * 230 / 1000, rel=1e-6)
        assert charger.value("setpoint_accounted") == 0
        assert await driver.refresh() == 1  # the next refresh puts dwars's current back
        assert (await driver.read()).current_a == 16.0

    with_charger(body, safe_current_a=7.0)


def test_fail_safe_hands_the_charger_back_to_its_own_safe_current() -> None:
    async def body(charger: SimulatedCharger, driver: ChargerDriver) -> None:
        await driver.set_power(11.04, 3, 230.0)
        await driver.fail_safe()
        assert charger.value("max_current") == 8.0 and charger.offered_a() == 8.0
        assert driver.commanded_a is None
        before = charger.writes
        charger.advance(1.0)
        assert await driver.refresh() == 0 and charger.writes == before  # dwars no longer keeps a current alive
        await driver.fail_safe()  # written even though the charger holds it
        assert charger.writes == before + 1

    with_charger(body, safe_current_a=8.0)


def test_a_car_filling_up_stops_drawing() -> None:
    async def body(charger: SimulatedCharger, driver: ChargerDriver) -> None:
        await driver.read()  # dwars sees the car connected: its session counts from here
        await driver.set_power(11.04, 3, 230.0)
        await play(charger, driver, 30)
        r = await driver.read()
        # 1 kWh into the battery at 90 %: 1.111 kWh from the grid, then nothing.
        assert charger.car.energy_kwh == pytest.approx(60.0)
        assert r.session_kwh == pytest.approx(1.0 / 0.9, rel=1e-6) and r.charging_kw == 0.0
        assert r.plugged and charger.state == "B2"

    with_charger(body, car=SimulatedCar(capacity_kwh=60.0, energy_kwh=59.0))


def test_sessions_start_and_end_with_the_car_and_the_watch_says_so() -> None:
    leave, back = T0 + pd.Timedelta(hours=1), T0 + pd.Timedelta(hours=2)

    async def body(charger: SimulatedCharger, driver: ChargerDriver) -> None:
        requests: asyncio.Queue[str] = asyncio.Queue()
        watch = asyncio.ensure_future(driver.watch(requests))
        try:
            await asyncio.sleep(0.05)
            charger.advance(61)  # the car leaves after an hour at the safe current
            assert await asyncio.wait_for(requests.get(), 2.0) == "the car left the charger"
            r = await driver.read()
            assert not r.plugged and r.charging_kw == 0.0 and r.session_kwh == 0.0
            charger.advance(60)
            assert await asyncio.wait_for(requests.get(), 2.0) == "the car was connected to the charger"
            charger.advance(30)
            r = await driver.read()  # a new session, counted from the meter's total at the new arrival
            assert r.session_kwh == pytest.approx(6 * 3 * 230 / 1000 * 0.5, rel=1e-3)
            # 60 min in the first session, 31 in the second (the watch saw the car 1 min after it came).
            assert charger.meter_kwh == pytest.approx(6 * 3 * 230 / 1000 * 91 / 60, rel=1e-6)
        finally:
            watch.cancel()

    with_charger(body, sessions=[(T0, leave), (back, back + pd.Timedelta(hours=8))], driver={"poll_s": 0.01})


def test_commands_outside_the_ranges_never_leave_the_driver() -> None:
    async def body(charger: SimulatedCharger, driver: ChargerDriver) -> None:
        with pytest.raises(RefusedChargerCommandError, match=r"power_kw = 12: above the charger's maximum "
                                                             r"\(ev.charger_max_kw = 11 kW"):
            await driver.set_power(12.0, 3, 230.0)
        driver.max_kw = None  # only the map's range is left: 43 A is more than the register takes
        with pytest.raises(RefusedChargerCommandError, match=r"max_current = 43 A: must be 0..32 A \(nothing"):
            await driver.set_power(30.0, 3, 230.0)
        for kw, phases, volts, what in ((-1.0, 3, 230.0, "power_kw = -1.0"), (math.nan, 3, 230.0, "power_kw = nan"),
                                        (5.0, 2, 230.0, "phases = 2"), (5.0, 3, 0.0, "voltage_v = 0.0")):
            with pytest.raises(RefusedChargerCommandError, match=what):
                await driver.set_power(kw, phases, volts)
        assert charger.writes == 0
        raw = AsyncModbusTcpClient("127.0.0.1", port=charger.port)
        await raw.connect()
        try:  # the charger itself refuses read-only registers, out-of-range values and half a float32
            phases = await raw.write_register(1215, 1, device_id=1)
            too_much = await raw.write_registers(1210, Register("x", 0, "float32").encode(80.0), device_id=1)
            half = await raw.write_register(1210, 0x4120, device_id=1)
        finally:
            raw.close()
        assert phases.isError() and too_much.isError() and half.isError() and charger.writes == 0

    with_charger(body, driver={"max_kw": 11.0})


def test_a_current_the_charger_keeps_refusing_is_retried_then_an_error() -> None:
    # The driver's map allows 40 A; the charger (the shipped map) takes at most 32.
    greedy = GENERIC.replace('access = "rw", min = 0, max = 32 }', 'access = "rw", min = 0, max = 40 }')

    async def body(charger: SimulatedCharger, driver: ChargerDriver) -> None:
        with pytest.raises(ChargerError, match=r"charger 127.0.0.1:\d+: max_current = 35 A not applied after 2 "
                                               r"attempts: .*refused"):
            await driver.set_power(35 * 3 * 0.23, 3, 230.0)
        assert charger.writes == 0 and charger.offered_a() == 6.0

    with_charger(body, driver_map=greedy)


def test_phases_the_charger_does_not_use_are_refused() -> None:
    async def body(charger: SimulatedCharger, driver: ChargerDriver) -> None:
        assert (await driver.read()).phases == 1  # the charger says so, whatever the driver assumed
        with pytest.raises(RefusedChargerCommandError, match=r"phases = 3: the charger charges on 1 \(register "
                                                             r"charge_phases\); set ev.phases = 1"):
            await driver.set_power(7.0, 3, 230.0)
        assert charger.writes == 0
        assert await driver.set_power(3.0) == pytest.approx(13 * 230 / 1000)  # defaults: the driver's 1 phase

    with_charger(body, phases=1, driver={"phases": 1})


def test_a_dead_link_is_an_error_and_the_driver_reconnects() -> None:
    async def run() -> None:
        charger = SimulatedCharger(SimulatedCar(), sessions=EVENING, now=T0)
        port = await charger.start()
        driver = ChargerDriver("alfen_ng9xx", "127.0.0.1", port, timeout_s=0.5, retries=2, now=lambda: charger.now)
        try:
            await driver.connect()
            await driver.set_power(11.04, 3, 230.0)
            await charger.stop()  # the charger restarts: gone, and back without dwars's current
            with pytest.raises(ChargerError, match=f"charger 127.0.0.1:{port}: (no connection|reading .* failed)"):
                await driver.read()
            back = SimulatedCharger(SimulatedCar(), sessions=EVENING, now=T0, port=port)
            await back.start()
            assert (await driver.read()).current_a == 6.0  # reconnected; the charger offers its safe current
            assert await driver.refresh() == 1 and back.value("max_current") == 16.0  # and dwars's again
            await back.stop()
        finally:
            driver.close()

    asyncio.run(run())
    with pytest.raises(ChargerError, match=r"no connection \(is it on, and is Modbus TCP enabled\?\)"):
        asyncio.run(_connect_nowhere())


async def _connect_nowhere() -> None:
    driver = ChargerDriver("alfen_ng9xx", "127.0.0.1", _free_port("127.0.0.1"), timeout_s=0.5)
    try:
        await driver.connect()
    finally:
        driver.close()


def test_the_simulated_charger_follows_a_clock() -> None:
    async def run() -> None:
        clock = SimulatedClock(T0, speed=3600.0)  # an hour per real second
        charger = SimulatedCharger(SimulatedCar(), sessions=EVENING, now=T0)
        until = T0 + pd.Timedelta(minutes=6)
        await asyncio.wait_for(charger.follow(clock, until, step_real_s=0.01), 5.0)
        assert charger.now == until
        assert charger.meter_kwh == pytest.approx(6 * 3 * 230 / 1000 * 0.1, rel=1e-6)  # 6 min at the safe 6 A

    asyncio.run(run())


def test_open_charger_takes_the_config() -> None:
    site = SiteConfig(voltage_v=235.0)

    async def run() -> list[ChargerDriver | None]:  # the Modbus client needs a running event loop
        return [open_charger(None, site), open_charger(EvConfig(), site),
                open_charger(EvConfig(charger="modbus", charger_host="10.0.0.7", charger_port=5020, charger_unit_id=2,
                                      phases=1, charger_max_kw=7.4), site),
                open_charger(EvConfig(charger="simulated"), site, port=15020)]

    none, off, modbus, simulated = asyncio.run(run())
    assert none is None and off is None
    assert modbus is not None and simulated is not None
    assert modbus.where == "charger 10.0.0.7:5020" and modbus.device_id == 2 and modbus.map.name.startswith("Alfen")
    assert (modbus.phases, modbus.voltage_v, modbus.max_kw) == (1, 235.0, 7.4)
    assert simulated.where == "charger 127.0.0.1:15020" and simulated.device_id == 1
    with pytest.raises(MapError, match="no built-in charger map 'wallbox'"):
        open_charger(EvConfig(charger="modbus", charger_map="wallbox"), site)
