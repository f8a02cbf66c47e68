"""The SunSpec driver against the simulated inverter, over real Modbus TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient

from dwars.config import Installation
from dwars.env.dispatch import simulate_interval
from dwars.env.modes import Decision, Mode
from dwars.policy.base import Home
from dwars.runtime.driver import InverterError, SunSpecDriver
from dwars.runtime.sim_inverter import STORAGE_START, SimulatedInverter
from dwars.runtime.sunspec import STORAGE_POINTS, decision_from, setpoint_for


def with_inverter(home_inst: Installation, body: Callable[[SimulatedInverter, SunSpecDriver], Awaitable[Any]],
                  energy_kwh: float = 5.0) -> Any:
    async def run() -> Any:
        inverter = SimulatedInverter(Home.from_installation(home_inst).battery, energy_kwh)
        port = await inverter.start()
        driver = SunSpecDriver("127.0.0.1", port, timeout_s=1.0)
        try:
            await driver.connect()
            return await body(inverter, driver)
        finally:
            driver.close()
            await inverter.stop()

    return asyncio.run(run())


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(Mode)), st.floats(0.05, 1.0))
def test_setpoints_decode_to_the_decision(mode: Mode, share: float) -> None:
    power = 5.0 * share if mode in (Mode.IMPORT, Mode.EXPORT) else 0.0
    s = setpoint_for(Decision(mode, power), 5000.0, 900)
    back = decision_from(s.storctl_mod, s.out_rate_pct, s.in_rate_pct, 5000.0)
    assert back.mode == mode and back.power_kw == pytest.approx(power)


def test_every_mode_is_carried_out_as_commanded(home_inst: Installation) -> None:
    async def body(inverter: SimulatedInverter, driver: SunSpecDriver) -> None:
        reading = await driver.read()
        assert reading.soc_pct == pytest.approx(50.0) and reading.max_charge_w == 5000.0
        assert reading.reserve_pct == pytest.approx(20.0)
        for decision in (Decision(Mode.IMPORT, 2.5), Decision(Mode.EXPORT, 1.25), Decision(Mode.HOLD),
                         Decision(Mode.MSC), Decision(Mode.IMPORT, 5.0)):
            await driver.apply(decision, 1800, reading.max_charge_w)
            assert inverter.commanded() == decision
            before = inverter.energy_kwh
            inverter.advance(60, pv_kw=1.0, load_kw=0.6)
            # The battery follows the simulator's own physics, and the inverter reports it.
            expected = simulate_interval(before, int(decision.mode), decision.power_kw, 1.0, 0.6, 0.0, 0.0, 1.0,
                                         inverter.battery, inverter.grid_limit_kw)
            assert inverter.energy_kwh == pytest.approx(float(expected.energy_kwh))
            assert (await driver.read()).soc_pct == pytest.approx(inverter.soc_pct, abs=0.05)

    with_inverter(home_inst, body)


def test_the_inverter_falls_back_to_self_consumption_when_dwars_goes_quiet(home_inst: Installation) -> None:
    async def body(inverter: SimulatedInverter, driver: SunSpecDriver) -> None:
        await driver.apply(Decision(Mode.EXPORT, 4.0), 900, 5000.0)
        inverter.advance(15, 0.0, 0.3)  # 900 s after the write: still commanded
        assert inverter.commanded().mode == Mode.EXPORT
        inverter.advance(15, 0.0, 0.3)  # 1800 s: reverted
        assert inverter.commanded().mode == Mode.MSC
        assert inverter.point("StorCtl_Mod") == 0

    with_inverter(home_inst, body)


def test_bad_commands_are_refused_before_or_by_the_inverter(home_inst: Installation) -> None:
    async def body(inverter: SimulatedInverter, driver: SunSpecDriver) -> None:
        with pytest.raises(ValueError, match=r"power_kw = 6.0: above WChaMax \(5.00 kW\)"):
            await driver.apply(Decision(Mode.IMPORT, 6.0), 900, 5000.0)
        assert inverter.writes == 0  # checked before anything went out
        raw = AsyncModbusTcpClient("127.0.0.1", port=inverter.port)
        await raw.connect()
        try:  # the inverter itself refuses points outside the allow-list, and rates beyond 100 %
            wchamax = await raw.write_register(STORAGE_START + STORAGE_POINTS["WChaMax"], 9000)
            rate = await raw.write_register(STORAGE_START + STORAGE_POINTS["InWRte"], 20000)
        finally:
            raw.close()
        assert wchamax.isError() and rate.isError()
        assert inverter.point("WChaMax") == 5000 and inverter.writes == 0

    with_inverter(home_inst, body)


def test_a_dead_inverter_link_is_a_clear_error() -> None:
    from dwars.runtime.sim_inverter import _free_port

    port = _free_port("127.0.0.1")  # nothing listens there

    async def run() -> None:
        driver = SunSpecDriver("127.0.0.1", port, timeout_s=0.5)
        try:
            await driver.connect()
        finally:
            driver.close()

    with pytest.raises(InverterError, match=f"inverter 127.0.0.1:{port}: no connection"):
        asyncio.run(run())


def test_unchanged_commands_are_not_rewritten_until_the_refresh(home_inst: Installation) -> None:
    now = [0.0]

    async def body(inverter: SimulatedInverter, driver: SunSpecDriver) -> None:
        driver.clock = lambda: now[0]
        await driver.apply(Decision(Mode.IMPORT, 2.5), 1800, 5000.0)
        assert driver.writes == inverter.writes == 4  # the first command: all four points
        now[0] = 600.0  # ten minutes later, the same command: not half the revert time yet ...
        await driver.apply(Decision(Mode.IMPORT, 2.5), 1800, 5000.0)
        assert inverter.writes == 4  # ... nothing written
        await driver.apply(Decision(Mode.IMPORT, 4.0), 1800, 5000.0)
        assert inverter.writes == 6  # a new power: only the two rates
        now[0] = 900.0  # half the revert time since the first write: refreshed before the inverter falls back
        await driver.apply(Decision(Mode.IMPORT, 4.0), 1800, 5000.0)
        assert inverter.writes == 8  # StorCtl_Mod and the revert time again; the rates were written at 600 s
        assert inverter.commanded() == Decision(Mode.IMPORT, 4.0)
        inverter.advance(60, 0.0, 0.3)  # an hour without a write: the inverter falls back ...
        assert inverter.commanded().mode == Mode.MSC
        now[0] = 1000.0
        await driver.apply(Decision(Mode.IMPORT, 4.0), 1800, 5000.0)  # ... and the next command is written again
        assert inverter.commanded() == Decision(Mode.IMPORT, 4.0)

    with_inverter(home_inst, body)


def test_garbage_registers_are_a_clear_error(home_inst: Installation) -> None:
    async def body(inverter: SimulatedInverter, driver: SunSpecDriver) -> None:
        await driver.read()  # the server has answered once: its registers are live
        assert inverter._registers is not None
        inverter._registers[STORAGE_START - 40000 + STORAGE_POINTS["WChaMax"]] = 0  # a nameplate gone missing
        with pytest.raises(InverterError, match=r"inverter 127.0.0.1:\d+: implausible reading"):
            await driver.read()
        inverter._registers[STORAGE_START - 40000 + STORAGE_POINTS["WChaMax"]] = 5000
        inverter._registers[STORAGE_START - 40000 + STORAGE_POINTS["ChaState_SF"]] = 2  # SoC x 100: 50,000 %
        with pytest.raises(InverterError, match="implausible reading"):
            await driver.read()

    with_inverter(home_inst, body)
