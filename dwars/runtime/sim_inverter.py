"""A simulated hybrid inverter with a battery: a real Modbus TCP server exposing the SunSpec map (models 1, 124).

The runtime talks to it exactly as to a real inverter (``make run``, the end-to-end tests). Its battery follows
the simulator's physics (:func:`dwars.env.dispatch.simulate_interval`, no second copy): :meth:`advance` plays
one interval with the actual PV and load and whatever the model-124 points command, decoded by
:func:`dwars.runtime.sunspec.decision_from`. The points fall back to self-consumption when no write came within
InOutWRte_RvrtTms (simulated seconds, from :meth:`advance`'s clock). Only the points in
:data:`dwars.runtime.sunspec.WRITABLE` accept writes; others answer ILLEGAL_ADDRESS, out-of-range values
ILLEGAL_VALUE.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from dwars.env.battery import Battery
from dwars.env.dispatch import IntervalResult, simulate_interval
from dwars.env.modes import Decision, Mode
from dwars.runtime.sunspec import (
    COMMON_LENGTH,
    MODEL_COMMON,
    MODEL_END,
    MODEL_STORAGE,
    RATE_SF,
    STORAGE_LENGTH,
    STORAGE_POINTS,
    SUNS_MARKER,
    SUNSPEC_BASE,
    WRITABLE,
    decision_from,
    int16,
    word,
)

#: Register address of the first point of model 124 (after the marker, model 1 and model 124's ID and length).
STORAGE_START = SUNSPEC_BASE + 2 + 2 + COMMON_LENGTH + 2
_CHA_STATE_SF = -1  # ChaState in 0.1 %


def _text(value: str, words: int) -> list[int]:
    raw = value.encode("ascii")[: 2 * words].ljust(2 * words, b"\0")
    return [raw[i] << 8 | raw[i + 1] for i in range(0, len(raw), 2)]


def sunspec_registers(max_charge_w: int, soc_pct: float, reserve_pct: float) -> list[int]:
    """The register words from SUNSPEC_BASE: "SunS", model 1 (manufacturer "dwars", model "simulated"),
    model 124, end marker."""
    # Mn, Md, Opt, Vr, SN, DA, pad: 66 words
    common = _text("dwars", 16) + _text("simulated", 16) + _text("", 8) + _text("1.0", 8) + _text("0001", 16) + [1, 0]
    storage = [0] * STORAGE_LENGTH
    points = {"WChaMax": max_charge_w, "MinRsvPct": round(reserve_pct * 10), "ChaState": round(soc_pct * 10),
              "OutWRte": 100 * 10 ** -RATE_SF, "InWRte": 100 * 10 ** -RATE_SF, "WChaMax_SF": 0,
              "MinRsvPct_SF": word(-1), "ChaState_SF": word(_CHA_STATE_SF), "InOutWRte_SF": word(RATE_SF)}
    for name, value in points.items():
        storage[STORAGE_POINTS[name]] = value
    return [*SUNS_MARKER, MODEL_COMMON, COMMON_LENGTH, *common, MODEL_STORAGE, STORAGE_LENGTH, *storage, MODEL_END, 0]


@dataclass
class SimulatedInverter:
    """Battery + SunSpec registers behind a Modbus TCP server on ``host``:``port`` (0 picks a free port).

    Parameters
    ----------
    battery : the battery's physics (limits, efficiency, reserve).
    energy_kwh : its energy at the start.
    grid_limit_kw : the connection limit.
    """

    battery: Battery
    energy_kwh: float
    grid_limit_kw: float = 17.0
    host: str = "127.0.0.1"
    port: int = 0
    now: pd.Timestamp = field(default_factory=lambda: pd.Timestamp("2024-01-01", tz="UTC"))
    writes: int = 0
    _registers: list[int] | None = field(default=None, repr=False)
    _last_write: pd.Timestamp | None = field(default=None, repr=False)
    _server: Any = field(default=None, repr=False)
    _task: asyncio.Task[Any] | None = field(default=None, repr=False)

    @property
    def max_charge_w(self) -> int:
        return round(self.battery.max_charge_kw * 1000)

    @property
    def soc_pct(self) -> float:
        return 100.0 * self.energy_kwh / self.battery.capacity_kwh

    def point(self, name: str) -> int:
        """A model-124 point's raw word (signed for the rates)."""
        if self._registers is None:
            raise RuntimeError("the server has not answered a request yet")
        value = self._registers[STORAGE_START - SUNSPEC_BASE + STORAGE_POINTS[name]]
        return int16(value) if name in ("OutWRte", "InWRte") else value

    def commanded(self) -> Decision:
        """What the points command now (self-consumption once the revert time has passed without a write)."""
        if self._registers is None or self._reverted():
            return Decision(Mode.MSC)
        scale = 10.0 ** RATE_SF
        return decision_from(self.point("StorCtl_Mod"), self.point("OutWRte") * scale,
                             self.point("InWRte") * scale, self.max_charge_w)

    def _reverted(self) -> bool:
        revert_s = self.point("InOutWRte_RvrtTms")
        return bool(revert_s and self._last_write is not None
                    and (self.now - self._last_write).total_seconds() > revert_s)

    def advance(self, minutes: int, pv_kw: float, load_kw: float, import_price: float = 0.0,
                export_price: float = 0.0) -> IntervalResult:
        """Play one interval of ``minutes`` with the actual PV and load under the current points."""
        decision = self.commanded()
        r = simulate_interval(self.energy_kwh, int(decision.mode), decision.power_kw, pv_kw, load_kw, import_price,
                              export_price, minutes / 60.0, self.battery, self.grid_limit_kw)
        self.energy_kwh = float(r.energy_kwh)
        self.now = self.now + pd.Timedelta(minutes=minutes)
        if self._registers is not None and self._reverted():  # the limits are dropped, as a real inverter does
            self._registers[STORAGE_START - SUNSPEC_BASE + STORAGE_POINTS["StorCtl_Mod"]] = 0
        self._publish_state()
        return r

    def _publish_state(self) -> None:
        if self._registers is not None:
            self._registers[STORAGE_START - SUNSPEC_BASE + STORAGE_POINTS["ChaState"]] = round(self.soc_pct * 10)

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], values: list[int] | list[bool] | None) -> ExcCodes | None:
        self._registers = registers
        if values is None:
            self._publish_state()
            return None
        allowed = {STORAGE_START + STORAGE_POINTS[name]: name for name in WRITABLE}
        for k, value in enumerate(values):
            name = allowed.get(address + k)
            if name is None:
                return ExcCodes.ILLEGAL_ADDRESS
            if name in ("OutWRte", "InWRte") and abs(int16(int(value))) > 100 * 10 ** -RATE_SF:
                return ExcCodes.ILLEGAL_VALUE
        self.writes += 1
        self._last_write = self.now
        return None

    async def start(self) -> int:
        """Serve on ``host``; returns the port."""
        device = SimDevice(1, [SimData(SUNSPEC_BASE, values=sunspec_registers(self.max_charge_w, self.soc_pct,
                                                                          100 * self.battery.reserve_kwh
                                                                          / self.battery.capacity_kwh),
                                       datatype=DataType.REGISTERS)], action=self._action)
        port = self.port or _free_port(self.host)
        self._server = ModbusTcpServer(device, address=(self.host, port))
        self._task = asyncio.create_task(self._server.serve_forever())
        for _ in range(100):  # until it listens
            if self._server.is_active():
                break
            await asyncio.sleep(0.01)
        self.port = port
        return port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
        if self._task is not None:
            self._task.cancel()


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
