"""The inverter's grid voltage per phase (``[voltage] source = "inverter"``): the map's voltage roles, the SunSpec
inverter models 101-103 and 111-113 and Huawei's 32069-32071, read by the driver from the simulated inverters over
real Modbus TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dwars.config import Installation
from dwars.env.battery import Battery
from dwars.env.modes import Decision, Mode
from dwars.policy.base import Home
from dwars.runtime.driver import InverterError, MapDriver, NoGridVoltageError, SunSpecDriver
from dwars.runtime.regmap import MapError, load_map, parse_map
from dwars.runtime.sim_inverter import SimulatedBattery, SimulatedHuaweiInverter, SimulatedInverter
from dwars.runtime.sunspec import MODELS_INVERTER, MODELS_INVERTER_FLOAT

MAPS = Path(__file__).parents[1] / "dwars" / "runtime" / "maps"
HUAWEI = (MAPS / "huawei_sun2000.toml").read_text()
SUNSPEC = (MAPS / "sunspec_124.toml").read_text()
VOLTAGE_ROLES = ('grid_voltage_l1_v = "phase_a_voltage"', 'grid_voltage_l2_v = "phase_b_voltage"',
                 'grid_voltage_l3_v = "phase_c_voltage"')


def _battery(home_inst: Installation) -> Battery:
    return Home.from_installation(home_inst).battery


def with_device(device: SimulatedBattery, make_driver: Callable[[int], MapDriver],
                body: Callable[[Any, MapDriver], Awaitable[Any]], connect: bool = True) -> Any:
    """Serve ``device``, run ``body(device, driver)`` with a driver on its port, and stop both."""

    async def run() -> Any:
        port = await device.start()
        driver = make_driver(port)
        try:
            if connect:
                await driver.connect()
            return await body(device, driver)
        finally:
            driver.close()
            await device.stop()

    return asyncio.run(run())


def sunspec(port: int) -> MapDriver:
    return SunSpecDriver("127.0.0.1", port, timeout_s=1.0)


def huawei(regmap: str | None = None) -> Callable[[int], MapDriver]:
    def make(port: int) -> MapDriver:
        return MapDriver(parse_map(regmap, "mine.toml") if regmap else load_map("huawei_sun2000"), "127.0.0.1", port,
                         timeout_s=1.0, retries=2)

    return make


# --- SunSpec: the inverter model next to model 124 ----------------------------------------------------------------

def test_sunspec_three_phase_voltages_are_read_with_their_scale_factor(home_inst: Installation) -> None:
    async def body(inverter: SimulatedInverter, driver: MapDriver) -> None:
        assert await driver.read_grid_voltage() == pytest.approx((230.0, 230.0, 230.0))  # the default
        inverter.set_grid_voltage([231.4, 244.9, 252.7])  # a different value per phase: each offset is checked
        assert await driver.read_grid_voltage() == pytest.approx((231.4, 244.9, 252.7), abs=1e-9)
        # The battery side still works next to it, and reading the voltage wrote nothing.
        assert (await driver.read()).soc_pct == pytest.approx(inverter.soc_pct, abs=0.05)
        assert inverter.writes == 0 and set(driver.models) == {1, 124, 103}

    with_device(SimulatedInverter(_battery(home_inst), 5.0), sunspec, body)


@pytest.mark.parametrize(("v_sf", "expected"), [(-2, (231.47, 249.03, 252.99)), (-1, (231.5, 249.0, 253.0)),
                                                (0, (231.0, 249.0, 253.0))])
def test_the_scale_factor_is_the_one_the_inverter_reports(home_inst: Installation, v_sf: int,
                                                          expected: tuple[float, ...]) -> None:
    async def body(inverter: SimulatedInverter, driver: MapDriver) -> None:
        inverter.set_grid_voltage((231.47, 249.03, 252.99))
        assert await driver.read_grid_voltage() == pytest.approx(expected, abs=1e-9)

    with_device(SimulatedInverter(_battery(home_inst), 5.0, v_sf=v_sf), sunspec, body)


def test_sunspec_single_phase_gives_one_voltage(home_inst: Installation) -> None:
    async def body(inverter: SimulatedInverter, driver: MapDriver) -> None:
        inverter.set_grid_voltage([248.3])
        assert await driver.read_grid_voltage() == pytest.approx((248.3,), abs=1e-9)  # B and C: not implemented
        with pytest.raises(ValueError, match="reports 1 phase"):
            inverter.set_grid_voltage([230.0, 231.0, 232.0])

    with_device(SimulatedInverter(_battery(home_inst), 5.0, inverter_model=101), sunspec, body)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(MODELS_INVERTER + MODELS_INVERTER_FLOAT),
       st.lists(st.integers(1000, 4000), min_size=3, max_size=3))
def test_every_inverter_model_reports_its_phases(model: int, tenths: list[int]) -> None:
    volts = [t / 10 for t in tenths]
    battery = Battery(capacity_kwh=10.0, max_charge_kw=5.0, max_discharge_kw=5.0, efficiency_one_way=0.95,
                      reserve_kwh=2.0)

    async def body(inverter: SimulatedInverter, driver: MapDriver) -> tuple[float, ...]:
        inverter.set_grid_voltage(volts[:model % 10])
        return await driver.read_grid_voltage()

    got = with_device(SimulatedInverter(battery, 5.0, inverter_model=model), sunspec, body)
    # 101/111 one phase, 102/112 two (split phase), 103/113 three; float32 carries a tenth of a volt to ~1e-5 V.
    assert got == pytest.approx(tuple(volts[:model % 10]), abs=1e-4)


def test_a_sunspec_inverter_without_an_inverter_model_is_a_clear_error(home_inst: Installation) -> None:
    async def body(inverter: SimulatedInverter, driver: MapDriver) -> None:
        assert driver.has_grid_voltage  # the map has the points ...
        with pytest.raises(NoGridVoltageError, match=r"no SunSpec model 101 or 102 or 103 or 111 or 112 or 113, "
                                                     r"which has the voltage of phase L1; set \[voltage\] source = "
                                                     r'"meter"'):
            await driver.read_grid_voltage()  # ... the inverter does not
        assert (await driver.read()).soc_pct == pytest.approx(50.0)  # the battery works without it
        with pytest.raises(ValueError, match="reports 0 phase"):
            inverter.set_grid_voltage([240.0])

    with_device(SimulatedInverter(_battery(home_inst), 5.0, inverter_model=None), sunspec, body)


def test_the_voltage_can_be_read_before_connect(home_inst: Installation) -> None:
    async def body(inverter: SimulatedInverter, driver: MapDriver) -> None:
        assert driver.base is None
        assert await driver.read_grid_voltage() == pytest.approx((236.0, 236.0, 236.0))
        assert driver.base is not None  # it connected (the inverter may have been off at start-up)

    inverter = SimulatedInverter(_battery(home_inst), 5.0)
    inverter.set_grid_voltage(236.0)  # one value for every phase, before the server runs
    with_device(inverter, sunspec, body, connect=False)


# --- Huawei SUN2000: 32069-32071 ----------------------------------------------------------------------------------

def test_huawei_phase_voltages_are_read_back(home_inst: Installation) -> None:
    async def body(inverter: SimulatedHuaweiInverter, driver: MapDriver) -> None:
        inverter.set_grid_voltage((229.8, 241.2, 253.6))
        assert await driver.read_grid_voltage() == pytest.approx((229.8, 241.2, 253.6), abs=1e-9)
        assert (inverter.value("phase_a_voltage"), inverter.value("phase_c_voltage")) == pytest.approx((229.8, 253.6))
        await driver.apply(Decision(Mode.IMPORT, 2.0), 900, 5000.0)  # commands are unaffected
        assert inverter.commanded() == Decision(Mode.IMPORT, 2.0)

    with_device(SimulatedHuaweiInverter(_battery(home_inst), 5.0), huawei(), body)


def test_a_single_phase_huawei_gives_one_voltage(home_inst: Installation) -> None:
    async def body(inverter: SimulatedHuaweiInverter, driver: MapDriver) -> None:
        inverter.set_grid_voltage([247.5])
        assert inverter.value("phase_b_voltage") == 0.0  # what the map assumes an L1 model reads for B and C
        assert await driver.read_grid_voltage() == pytest.approx((247.5,), abs=1e-9)

    with_device(SimulatedHuaweiInverter(_battery(home_inst), 5.0, phases=1), huawei(), body)


def test_a_value_change_on_the_inverter_shows_in_the_next_read(home_inst: Installation) -> None:
    trace = [(235.0, 236.1, 234.9), (249.9, 251.3, 250.2), (253.4, 254.0, 252.8), (241.0, 240.2, 242.7)]

    async def body(inverter: SimulatedHuaweiInverter, driver: MapDriver) -> list[tuple[float, ...]]:
        seen = []
        for volts in trace:  # a recorded afternoon, played as the lead's end-to-end test does
            inverter.set_grid_voltage(volts)
            inverter.advance(5, pv_kw=3.0, load_kw=0.5)  # time passes; the voltage stays what was set
            seen.append(await driver.read_grid_voltage())
        return seen

    seen = with_device(SimulatedHuaweiInverter(_battery(home_inst), 5.0), huawei(), body)
    assert seen == [pytest.approx(v, abs=1e-9) for v in trace]


def test_a_map_without_voltage_points_is_a_clear_error(home_inst: Installation) -> None:
    text = HUAWEI
    for line in VOLTAGE_ROLES:
        assert line in text
        text = text.replace(line, "")
    assert not parse_map(text, "mine.toml").grid_voltage  # the map still loads: the roles are optional

    async def body(inverter: SimulatedHuaweiInverter, driver: MapDriver) -> None:
        assert not driver.has_grid_voltage
        with pytest.raises(NoGridVoltageError) as info:
            await driver.read_grid_voltage()
        message = str(info.value)
        assert "mine.toml (Huawei SUN2000 + LUNA2000) names no grid-voltage registers" in message
        assert 'set [voltage] source = "meter"' in message
        assert isinstance(info.value, InverterError)  # what the runtime already catches
        assert (await driver.read()).soc_pct == pytest.approx(50.0)

    with_device(SimulatedHuaweiInverter(_battery(home_inst), 5.0, regmap=parse_map(text, "mine.toml")),
                huawei(text), body)


@pytest.mark.parametrize(("volts", "phases", "problem"), [
    ((23.1, 23.0, 23.2), 3, r"implausible grid voltage \(23.1, 23, 23.2 V per phase"),  # a scale off by ten
    ((0.0, 0.0, 0.0), 3, r"implausible grid voltage \(0, -, - V"),  # off the grid
    ((231.0, 0.0, 232.0), 3, r"implausible grid voltage \(231, -, 232 V"),  # L2 gone but L3 there
    ((2310.0,), 1, r"implausible grid voltage \(2310, -, - V"),
])
def test_implausible_voltages_are_a_clear_error(home_inst: Installation, volts: Sequence[float], phases: int,
                                                problem: str) -> None:
    async def body(inverter: SimulatedHuaweiInverter, driver: MapDriver) -> None:
        inverter.set_grid_voltage(volts)
        with pytest.raises(InverterError, match=problem) as info:
            await driver.read_grid_voltage()
        assert not isinstance(info.value, NoGridVoltageError)  # a fault to log, not a configuration to change
        inverter.set_grid_voltage(230.0)
        assert await driver.read_grid_voltage() == pytest.approx((230.0,) * phases)  # and it reads again

    with_device(SimulatedHuaweiInverter(_battery(home_inst), 5.0, phases=phases), huawei(), body)


# --- the map format -----------------------------------------------------------------------------------------------

def test_the_shipped_maps_name_their_voltage_registers() -> None:
    assert load_map("huawei_sun2000").grid_voltage == (("phase_a_voltage",), ("phase_b_voltage",),
                                                       ("phase_c_voltage",))
    regs = load_map("huawei_sun2000").registers
    assert [(regs[n].address, regs[n].type, regs[n].scale, regs[n].unit) for n in
            ("phase_a_voltage", "phase_b_voltage", "phase_c_voltage")] == [
        (32069, "uint16", 0.1, "V"), (32070, "uint16", 0.1, "V"), (32071, "uint16", 0.1, "V")]
    sunspec_map = load_map("sunspec_124")
    assert sunspec_map.grid_voltage[0] == ("PhVphA", "PhVphA_float")
    assert sunspec_map.registers["PhVphA"].model == (101, 102, 103)
    assert sunspec_map.registers["V_SF"].address == 11 == sunspec_map.registers["InWRte"].address  # other models
    assert load_map("sunspec_124").reading == {"soc_pct": "ChaState", "max_charge_w": "WChaMax",
                                               "reserve_pct": "MinRsvPct"}  # the battery reading is unchanged


@pytest.mark.parametrize(("old", "new", "message"), [
    (VOLTAGE_ROLES[1] + "\n", "", "reading.grid_voltage_l1_v, reading.grid_voltage_l3_v: give grid_voltage_l1_v "
                                  "alone"),
    (VOLTAGE_ROLES[0], 'grid_voltage_l1_v = "soc"', 'registers.soc.unit is "%", must be "V"'),
    (VOLTAGE_ROLES[0], 'grid_voltage_l1_v = "phase_a"', 'reading.grid_voltage_l1_v = "phase_a": must name a '
                                                        "register"),
    (VOLTAGE_ROLES[0], 'grid_voltage_l1_v = []', "reading.grid_voltage_l1_v = []: must name a register"),
    (VOLTAGE_ROLES[0], 'grid_voltage_l4_v = "phase_a_voltage"', "reading.grid_voltage_l4_v: unknown key; did you "
                                                                "mean grid_voltage_l3_v?"),
    ('address = 32069, type', 'model = 103, address = 32069, type', "registers.phase_a_voltage.model: unknown key"),
])
def test_a_bad_voltage_role_is_a_clear_error(old: str, new: str, message: str) -> None:
    assert old in HUAWEI
    with pytest.raises(MapError) as info:
        parse_map(HUAWEI.replace(old, new, 1), "mine.toml")
    assert message in str(info.value)


@pytest.mark.parametrize(("old", "new", "message"), [
    ('V_SF = { model = [101, 102, 103], address = 11', 'V_SF = { model = 103, address = 11',
     "registers.V_SF.model = [103]: must be the model of registers.PhVphA ([101, 102, 103])"),
    ('PhVphB = { model = [101, 102, 103], address = 9', 'PhVphB = { model = [101, 102, 103], address = 8',
     "registers.PhVphB.address = 8: overlaps registers.PhVphA"),
    ('PhVphA_float = { model = [111, 112, 113]', 'PhVphA_float = { model = [111, "float"]',
     "registers.PhVphA_float.model = [111, 'float']: must be a SunSpec model id 1..65534"),
])
def test_a_bad_sunspec_model_key_is_a_clear_error(old: str, new: str, message: str) -> None:
    assert old in SUNSPEC
    with pytest.raises(MapError) as info:
        parse_map(SUNSPEC.replace(old, new, 1), "mine.toml")
    assert message in str(info.value)
