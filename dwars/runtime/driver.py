"""Inverter driver over Modbus TCP (pymodbus async client): read the battery, apply a Decision, verify it.

:class:`SunSpecDriver` finds model 124 by walking the SunSpec model chain from register 40000, writes only the
points in :data:`dwars.runtime.sunspec.WRITABLE`, range-checks every value before it goes out, reads each write
back, and retries a failed write with backoff before it gives up with :class:`InverterError`, whose message
names the inverter, the point and what went wrong.

Rate limit: many inverters keep these points in flash. A point is written only when the inverter does not hold
its value (read first: an inverter that reverted or restarted gets the command again), or when half the revert
time has passed since it was last written (the refresh that keeps the inverter from falling back). An unchanged
command costs no writes in between.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from dwars.env.modes import Decision
from dwars.errors import DwarsError
from dwars.runtime.sunspec import (
    MODEL_END,
    MODEL_STORAGE,
    STORAGE_POINTS,
    SUNS_MARKER,
    SUNSPEC_BASE,
    int16,
    setpoint_for,
)

log = logging.getLogger(__name__)


class InverterError(DwarsError):
    """The inverter cannot be reached, answers garbage, or does not take a command."""


@dataclass(frozen=True)
class BatteryReading:
    """What the inverter reports: state of charge (%), max charge power (W), reserve (%)."""

    soc_pct: float
    max_charge_w: float
    reserve_pct: float


class SunSpecDriver:
    """A SunSpec (model 124) storage inverter at ``host``:``port``.

    Parameters
    ----------
    timeout_s : per request.
    retries : attempts per write before giving up (waiting 0.1, 0.2, 0.4, ... s in between).
    """

    def __init__(self, host: str, port: int = 502, device_id: int = 1, timeout_s: float = 2.0,
                 retries: int = 3, clock: Callable[[], float] = time.monotonic) -> None:
        self.where = f"inverter {host}:{port}"
        self.device_id = device_id
        self.retries = max(int(retries), 1)
        self.client = AsyncModbusTcpClient(host, port=port, timeout=timeout_s, retries=0)
        self.storage_start: int | None = None
        self.clock = clock  # seconds; the rate limit's time (a simulated clock in tests and dry runs)
        self.written: dict[str, tuple[int, float]] = {}  # point -> (value, when written)
        self.writes = 0

    async def connect(self) -> None:
        """Connect and find model 124."""
        if not await self.client.connect():
            raise InverterError(f"{self.where}: no connection (is it on, and is Modbus TCP enabled?)")
        marker = await self._read(SUNSPEC_BASE, 2)
        if tuple(marker) != SUNS_MARKER:
            raise InverterError(f"{self.where}: no SunSpec map at {SUNSPEC_BASE} (read {marker})")
        address = SUNSPEC_BASE + 2
        for _ in range(64):  # a SunSpec chain has a handful of models
            model, length = await self._read(address, 2)
            if model == MODEL_STORAGE:
                self.storage_start = address + 2
                return
            if model == MODEL_END:
                break
            address += 2 + length
        raise InverterError(f"{self.where}: no storage model {MODEL_STORAGE} in the SunSpec map")

    def close(self) -> None:
        self.client.close()

    async def read(self) -> BatteryReading:
        """State of charge, max charge power and reserve, with their scale factors applied."""
        words = await self._read(self._start(), len(STORAGE_POINTS))
        p = {name: words[offset] for name, offset in STORAGE_POINTS.items()}

        def scaled(name: str, sf: str) -> float:
            return p[name] * 10.0 ** int16(p[sf])

        reading = BatteryReading(scaled("ChaState", "ChaState_SF"), scaled("WChaMax", "WChaMax_SF"),
                                 scaled("MinRsvPct", "MinRsvPct_SF"))
        if not (0.0 <= reading.soc_pct <= 100.0 and reading.max_charge_w > 0):
            raise InverterError(f"{self.where}: implausible reading {reading} (garbage registers?)")
        return reading

    async def apply(self, decision: Decision, revert_s: int, max_charge_w: float) -> None:
        """Write the model-124 points for ``decision``, read them back and verify (:class:`InverterError` when
        the inverter keeps refusing or reports other values)."""
        setpoint = setpoint_for(decision, max_charge_w, revert_s)  # range checks before anything is written
        now = self.clock()
        # What the inverter holds now (a read costs no flash): one that reverted or restarted since the last
        # write no longer holds the command, whatever was written before.
        current = await self._read(self._start(), STORAGE_POINTS["InOutWRte_RvrtTms"] + 1)
        for name, value in setpoint.registers().items():
            last = self.written.get(name)
            holds = current[STORAGE_POINTS[name]] == value
            if holds and last is not None and last[0] == value and now - last[1] < revert_s / 2:
                continue  # unchanged and recently refreshed: spare the inverter's flash
            await self._write_verified(name, value)
            self.written[name] = (value, now)
            self.writes += 1

    async def _write_verified(self, name: str, value: int) -> None:
        address = self._start() + STORAGE_POINTS[name]
        delay_s = 0.1
        for attempt in range(1, self.retries + 1):
            try:
                reply = await self.client.write_register(address, value, device_id=self.device_id)
                if reply.isError():
                    raise InverterError(f"{self.where}: writing {name} = {value} refused ({reply})")
                back = (await self._read(address, 1))[0]
                if back != value:
                    raise InverterError(f"{self.where}: {name} reads back {back} after writing {value}")
                return
            except (InverterError, ModbusException) as err:
                if attempt == self.retries:
                    raise InverterError(f"{self.where}: {name} = {value} not applied after {attempt} "
                                        f"attempts: {err}") from None
                log.warning("%s: writing %s failed (%s); retrying in %.1f s", self.where, name, err, delay_s)
                await asyncio.sleep(delay_s)
                delay_s *= 2

    def _start(self) -> int:
        if self.storage_start is None:
            raise InverterError(f"{self.where}: call connect() first")
        return self.storage_start

    async def _read(self, address: int, count: int) -> list[int]:
        try:
            reply = await self.client.read_holding_registers(address, count=count, device_id=self.device_id)
        except ModbusException as err:
            raise InverterError(f"{self.where}: reading {count} register(s) at {address} failed: {err}") from None
        if reply.isError():
            raise InverterError(f"{self.where}: reading {count} register(s) at {address} refused ({reply})")
        return list(reply.registers)
