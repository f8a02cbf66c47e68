"""Register maps: loading and validation, the expression language, and the map driver against the simulated Huawei
SUN2000 over real Modbus TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient

from dwars.config import Installation
from dwars.env.dispatch import simulate_interval
from dwars.env.modes import Decision, Mode
from dwars.policy.base import Home
from dwars.runtime.driver import InverterError, MapDriver, RefusedCommandError, SunSpecDriver, open_driver
from dwars.runtime.regmap import (
    TYPES,
    CommandError,
    Expression,
    MapError,
    Register,
    builtin_maps,
    load_map,
    parse_map,
)
from dwars.runtime.sim_inverter import SimulatedHuaweiInverter, _free_port

HUAWEI = (Path(__file__).parents[1] / "dwars" / "runtime" / "maps" / "huawei_sun2000.toml").read_text()


def with_huawei(home_inst: Installation, body: Callable[[SimulatedHuaweiInverter, MapDriver], Awaitable[Any]],
                driver_map: str | None = None, **sim: Any) -> Any:
    async def run() -> Any:
        inverter = SimulatedHuaweiInverter(Home.from_installation(home_inst).battery, 5.0, **sim)
        port = await inverter.start()
        regmap = parse_map(driver_map, "test.toml") if driver_map else load_map("huawei_sun2000")
        driver = MapDriver(regmap, "127.0.0.1", port, timeout_s=1.0, retries=2)
        try:
            await driver.connect()
            return await body(inverter, driver)
        finally:
            driver.close()
            await inverter.stop()

    return asyncio.run(run())


# --- loading and validation ---------------------------------------------------------------------------------------

def test_the_shipped_maps_load_with_their_allow_lists() -> None:
    assert {"huawei_sun2000", "sunspec_124"} <= set(builtin_maps())
    huawei = load_map("huawei_sun2000")
    assert huawei.writable == {"forcible_target", "forcible_period", "forcible_command", "forcible_charge_power",
                               "forcible_discharge_power"}
    assert huawei.registers["max_charge_power"].type == "uint32" and huawei.registers["soc"].scale == 0.1
    assert huawei.commit == ("forcible_command",) and huawei.checks[0].register == "working_mode"
    sunspec = load_map("sunspec_124")
    assert sunspec.sunspec_model == 124
    assert sunspec.writable == {"StorCtl_Mod", "OutWRte", "InWRte", "InOutWRte_RvrtTms"}
    # Import at half power over 15 minutes: the values and their write order (the trigger last).
    assert list(huawei.command(Decision(Mode.IMPORT, 2.5), 900, 5000.0).items()) == [
        ("forcible_target", 0.0), ("forcible_period", 15.0), ("forcible_charge_power", 2500.0),
        ("forcible_command", 1.0)]


@pytest.mark.parametrize(("old", "new", "message"), [
    ('type = "uint16", scale = 0.1, unit = "%"', 'type = "uint8", scale = 0.1, unit = "%"',
     'registers.soc.type = "uint8": must be one of uint16, int16, uint32, int32'),
    ("unit_id = 1 ", "unit_id = 300 ", "device.unit_id = 300: must be an integer 0..255"),
    ("word_order = \"big\"", "word_order = \"middle\"", 'device.word_order = "middle"'),
    ("[reading]", "[reading]\nsoc_percent = 1", "reading.soc_percent: unknown key; did you mean soc_pct?"),
    ('access = "rw", min = 0, max = 2 }', 'access = "rw" }', "registers.forcible_command.min and "
                                                             "registers.forcible_command.max: required"),
    ("forcible_command = 0\n", "soc = 0\n", 'modes.msc.soc: registers.soc is read only (access = "r")'),
    ("forcible_command = 0\n", "forcible_comand = 0\n", "modes.msc.forcible_comand: unknown register; did you mean "
                                                        "forcible_command?"),
    ("forcible_command = 0\n", "forcible_command = 7\n", "modes.msc.forcible_command = 7: must be 0..2"),
    ('"ceil(revert_s / 60)"\nforcible_charge_power = 0', '"ceil(revert_s / 60)"\nforcible_charge_power = "watts"',
     "modes.hold.forcible_charge_power = \"watts\": unknown name 'watts'"),
    ('forcible_charge_power = "power_w"', 'forcible_charge_power = "__import__(\'os\').getpid()"',
     "modes.import.forcible_charge_power"),
    ('forcible_discharge_power = "power_w"', 'forcible_discharge_power = "power_w ** 2"',
     "only + - * / are allowed"),
    ("address = 37760", "address = 37759", "overlaps registers.rated_capacity"),
    ("[modes.export]", "[modes.exports]", "modes.export: missing"),
    ('soc_pct = "soc"', 'soc_pct = "state_of_charge"', 'reading.soc_pct = "state_of_charge": must name a register'),
    ('commit = ["forcible_command"]', 'commit = ["soc"]', "soc must be a register that a mode writes"),
    ("one_of = [2]", "one_of = []", "device.check[0].one_of = []: must be a list of numbers"),
    ("[device]", "[device", "not valid TOML"),
])
def test_a_bad_map_is_a_clear_error_naming_file_key_and_value(old: str, new: str, message: str) -> None:
    assert old in HUAWEI
    with pytest.raises(MapError) as info:
        parse_map(HUAWEI.replace(old, new, 1), "mine.toml")
    assert message in str(info.value)
    assert all(line.startswith("mine.toml: ") for line in str(info.value).splitlines())


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "two_problems.toml"
    path.write_text(HUAWEI.replace("unit_id = 1 ", "unit_id = -1 ").replace('type = "uint16", scale = 0.1, unit',
                                                                             'type = "float", scale = 0.1, unit', 1))
    with pytest.raises(MapError) as info:
        load_map(path)
    assert len(info.value.problems) == 2 and info.value.source == "two_problems.toml"
    with pytest.raises(MapError, match="no built-in map 'growatt'; built in: huawei_sun2000"):
        load_map("growatt")
    with pytest.raises(MapError, match="cannot read the map"):
        load_map(tmp_path / "missing.toml")


# --- the expression language --------------------------------------------------------------------------------------

VARS = {"power_w": 2500.0, "revert_s": 900.0, "max_charge_w": 5000.0}


@st.composite
def expressions(draw: st.DrawFn, depth: int = 0) -> tuple[str, float]:
    """An expression's text and its value at VARS, built side by side."""
    leaf = depth >= 3 or draw(st.booleans())
    if leaf:
        if draw(st.booleans()):
            name = draw(st.sampled_from(sorted(VARS)))
            return name, VARS[name]
        number = draw(st.integers(0, 1000))
        return str(number), float(number)
    kind = draw(st.sampled_from(["+", "-", "*", "/", "neg", "ceil", "min"]))
    a_text, a = draw(expressions(depth + 1))
    if kind == "neg":
        return f"-({a_text})", -a
    if kind == "ceil":
        return f"ceil({a_text})", float(math.ceil(a))
    b_text, b = draw(expressions(depth + 1))
    if kind == "min":
        return f"min({a_text}, {b_text})", min(a, b)
    if kind == "/" and b == 0:
        kind = "*"
    value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else 0.0}[kind]
    return f"({a_text}) {kind} ({b_text})", value


@settings(max_examples=200, deadline=None)
@given(expressions())
def test_expressions_compute_what_they_say(case: tuple[str, float]) -> None:
    text, value = case
    assert Expression.parse(text)(VARS) == pytest.approx(value, rel=1e-9, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["{} ** 2", "{}.real", "[{}][0]", "(lambda: {})()", "{} if 1 else 2", "{} < 3",
                        "open({})", "power_w.__class__", "{}; 1", "'{}'", "True + {}", "min(x={})"]),
       expressions())
def test_anything_beyond_arithmetic_is_refused(template: str, case: tuple[str, float]) -> None:
    with pytest.raises(ValueError):
        Expression.parse(template.format(case[0]))


def test_a_division_by_zero_is_a_command_error_not_a_crash() -> None:
    regmap = parse_map(HUAWEI.replace('forcible_charge_power = "power_w"',
                                      'forcible_charge_power = "power_w / (revert_s - 900)"'), "zero.toml")
    with pytest.raises(CommandError, match="zero.toml: modes.import.forcible_charge_power: .*division by zero"):
        regmap.command(Decision(Mode.IMPORT, 1.0), 900, 5000.0)


# --- values, ranges and words -------------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(TYPES)), st.sampled_from(["big", "little"]), st.integers(-(2 ** 31), 2 ** 32 - 1),
       st.integers(-3, 2))
def test_register_words_round_trip(kind: str, order: str, raw: int, sf: int) -> None:
    reg = Register("x", 0, kind, word_order=order)
    bits = 16 * reg.words
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if TYPES[kind][1] else (0, (1 << bits) - 1)
    value = raw * 10.0 ** sf
    if low <= raw <= high:
        words = reg.encode(value, sf)
        assert len(words) == reg.words and all(0 <= w <= 0xFFFF for w in words)
        assert reg.raw(words) == raw and reg.decode(words, sf) == pytest.approx(value)
    else:
        with pytest.raises(CommandError, match="does not fit"):
            reg.encode(value, sf)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["huawei_sun2000", "sunspec_124"]), st.sampled_from(list(Mode)), st.floats(0.0, 1.0),
       st.integers(60, 3 * 3600), st.floats(1000.0, 20000.0))
def test_every_command_within_the_battery_limits_is_within_the_register_ranges(
        name: str, mode: Mode, share: float, revert_s: int, max_charge_w: float) -> None:
    regmap = load_map(name)
    values = regmap.command(Decision(mode, share * max_charge_w / 1000.0), revert_s, max_charge_w)
    assert list(values) == [n for n, _ in regmap.modes[mode]]
    for register, value in values.items():
        reg = regmap.registers[register]
        assert reg.minimum <= value <= reg.maximum  # type: ignore[operator]
    with pytest.raises(CommandError, match="above"):
        regmap.command(Decision(Mode.EXPORT, 1.01 * max_charge_w / 1000.0), revert_s, max_charge_w)


# --- the map driver and the simulated Huawei over Modbus TCP ------------------------------------------------------

def test_every_mode_is_carried_out_and_read_back(home_inst: Installation) -> None:
    async def body(inverter: SimulatedHuaweiInverter, driver: MapDriver) -> None:
        reading = await driver.read()
        assert (reading.soc_pct, reading.max_charge_w, reading.reserve_pct) == pytest.approx((50.0, 5000.0, 20.0))
        for decision in (Decision(Mode.IMPORT, 2.5), Decision(Mode.HOLD), Decision(Mode.EXPORT, 1.25),
                         Decision(Mode.MSC), Decision(Mode.IMPORT, 5.0), Decision(Mode.EXPORT, 0.5)):
            await driver.apply(decision, 3600, reading.max_charge_w)
            assert inverter.commanded() == decision
            assert inverter.value("forcible_command") == {Mode.MSC: 0, Mode.HOLD: 1, Mode.IMPORT: 1,
                                                          Mode.EXPORT: 2}[decision.mode]
            before = inverter.energy_kwh
            inverter.advance(15, pv_kw=1.0, load_kw=0.6)
            expected = simulate_interval(before, int(decision.mode), decision.power_kw, 1.0, 0.6, 0.0, 0.0, 0.25,
                                         inverter.battery, inverter.grid_limit_kw)
            assert inverter.energy_kwh == pytest.approx(float(expected.energy_kwh))
            assert (await driver.read()).soc_pct == pytest.approx(inverter.soc_pct, abs=0.05)
        assert set(driver.written) <= driver.map.writable

    with_huawei(home_inst, body)


def test_the_inverter_ends_a_forcible_charge_when_dwars_goes_quiet(home_inst: Installation) -> None:
    async def body(inverter: SimulatedHuaweiInverter, driver: MapDriver) -> None:
        await driver.apply(Decision(Mode.EXPORT, 4.0), 900, 5000.0)
        assert inverter.value("forcible_period") == 15  # minutes: the revert time
        inverter.advance(15, 0.0, 0.3)
        assert inverter.commanded() == Decision(Mode.EXPORT, 4.0)
        inverter.advance(15, 0.0, 0.3)  # 30 minutes without a write: stopped by the inverter itself
        assert inverter.commanded().mode == Mode.MSC and inverter.value("forcible_command") == 0
        await driver.apply(Decision(Mode.EXPORT, 4.0), 900, 5000.0)  # the same command again: written again
        assert inverter.commanded() == Decision(Mode.EXPORT, 4.0)

    with_huawei(home_inst, body)


def test_unchanged_commands_cost_no_writes_until_the_refresh(home_inst: Installation) -> None:
    now = [0.0]

    async def body(inverter: SimulatedHuaweiInverter, driver: MapDriver) -> None:
        driver.clock = lambda: now[0]
        await driver.apply(Decision(Mode.IMPORT, 2.5), 1800, 5000.0)
        assert driver.writes == inverter.writes == 4  # target, period, power, then the trigger
        now[0] = 600.0
        await driver.apply(Decision(Mode.IMPORT, 2.5), 1800, 5000.0)
        assert inverter.writes == 4  # unchanged, not due: nothing written
        await driver.apply(Decision(Mode.IMPORT, 4.0), 1800, 5000.0)
        assert inverter.writes == 6  # the power, and the trigger that makes the inverter take it
        assert inverter.commanded() == Decision(Mode.IMPORT, 4.0)
        now[0] = 900.0  # half the revert time since the first write: target and period refreshed, then the trigger
        await driver.apply(Decision(Mode.IMPORT, 4.0), 1800, 5000.0)
        assert inverter.writes == 9 and inverter.commanded() == Decision(Mode.IMPORT, 4.0)

    with_huawei(home_inst, body)


def test_commands_outside_the_ranges_or_the_allow_list_never_leave_the_driver(home_inst: Installation) -> None:
    # A map whose Import asks twice the power: above the register's max for a 15 kW battery.
    greedy = HUAWEI.replace('forcible_charge_power = "power_w"', 'forcible_charge_power = "2 * power_w"')

    async def body(inverter: SimulatedHuaweiInverter, driver: MapDriver) -> None:
        with pytest.raises(RefusedCommandError, match=r"forcible_charge_power = 30000 W: must be 0..25000 W"):
            await driver.apply(Decision(Mode.IMPORT, 15.0), 900, 15000.0)
        with pytest.raises(RefusedCommandError, match=r"power_kw = 6.0: above max_charge_power \(5.00 kW\)"):
            await driver.apply(Decision(Mode.IMPORT, 6.0), 900, 5000.0)
        with pytest.raises(RefusedCommandError, match="working_mode is not a register dwars may write"):
            await driver._write_verified(driver.map.registers["working_mode"], [5], 5)
        assert inverter.writes == 0
        raw = AsyncModbusTcpClient("127.0.0.1", port=inverter.port)
        await raw.connect()
        try:  # the device itself refuses read-only registers and values out of range
            mode = await raw.write_register(47086, 5, device_id=1)
            command = await raw.write_register(47100, 7, device_id=1)
        finally:
            raw.close()
        assert mode.isError() and command.isError() and inverter.writes == 0
        assert inverter.value("working_mode") == 2

    with_huawei(home_inst, body, driver_map=greedy)


def test_a_write_the_inverter_keeps_refusing_is_retried_then_an_error(home_inst: Installation) -> None:
    # The device takes at most 3 kW of forcible charge; the driver's map allows more: the inverter says no.
    device = parse_map(HUAWEI.replace('unit = "W", access = "rw", min = 0, max = 25000 }\nforcible_discharge',
                                      'unit = "W", access = "rw", min = 0, max = 3000 }\nforcible_discharge'), "d.toml")

    async def body(inverter: SimulatedHuaweiInverter, driver: MapDriver) -> None:
        with pytest.raises(InverterError, match=r"forcible_charge_power = 4000 W not applied after 2 attempts"):
            await driver.apply(Decision(Mode.IMPORT, 4.0), 900, 5000.0)
        assert inverter.commanded().mode == Mode.MSC  # the trigger was never written

    with_huawei(home_inst, body, regmap=device)


def test_fail_safe_hands_the_battery_back_to_self_consumption(home_inst: Installation) -> None:
    async def body(inverter: SimulatedHuaweiInverter, driver: MapDriver) -> None:
        await driver.apply(Decision(Mode.EXPORT, 3.0), 1800, 5000.0)
        assert inverter.commanded().mode == Mode.EXPORT
        await driver.fail_safe()
        assert inverter.commanded().mode == Mode.MSC and inverter.value("forcible_command") == 0
        before = inverter.writes
        await driver.fail_safe()  # written even though the inverter already holds it
        assert inverter.writes == before + 1

    with_huawei(home_inst, body)


def test_the_map_checks_the_working_mode_before_taking_control(home_inst: Installation) -> None:
    with pytest.raises(InverterError, match=r"working_mode is 5, expected 2: set the battery working mode to "
                                            r"Maximise self-consumption"):
        with_huawei(home_inst, lambda inverter, driver: asyncio.sleep(0), working_mode=5)


def test_a_dead_link_is_a_clear_error() -> None:
    port = _free_port("127.0.0.1")

    async def run() -> None:
        driver = open_driver("huawei_sun2000", "127.0.0.1", port, timeout_s=0.5)
        try:
            await driver.connect()
        finally:
            driver.close()

    with pytest.raises(InverterError, match=f"inverter 127.0.0.1:{port}: no connection"):
        asyncio.run(run())


def test_open_driver_takes_a_kind_a_name_or_a_file(tmp_path: Path) -> None:
    path = tmp_path / "my_inverter.toml"
    path.write_text(HUAWEI.replace('name = "Huawei SUN2000 + LUNA2000"', 'name = "my inverter"'))

    async def run() -> list[MapDriver]:  # the Modbus client needs a running event loop
        return [open_driver("sunspec", "127.0.0.1"), open_driver("huawei_sun2000", "127.0.0.1"),
                open_driver(path, "127.0.0.1", device_id=0)]

    sunspec, huawei, mine = asyncio.run(run())
    assert isinstance(sunspec, SunSpecDriver) and sunspec.map.sunspec_model == 124
    assert huawei.map.name == "Huawei SUN2000 + LUNA2000" and huawei.device_id == 1
    assert mine.map.name == "my inverter" and mine.device_id == 0
