"""Simulated hybrid inverters with a battery: real Modbus TCP servers that expose a register map.

The runtime talks to them exactly as to a real inverter (``make run``, the end-to-end tests). Every simulated device
is a :class:`SimulatedBattery`: its battery follows the simulator's physics (:func:`dwars.env.dispatch.
simulate_interval`, no second copy), and :meth:`SimulatedBattery.advance` plays one interval with the actual PV
and load in whatever mode the registers command, on a clock that runs as fast as it is advanced. What differs per
device is only how its registers are laid out and read as a command:

- :class:`SimulatedInverter`: the SunSpec map (models 1, 124 and an inverter model, 103 by default, with the grid
  voltage). The model-124 points are decoded by
  :func:`dwars.runtime.sunspec.decision_from` and fall back to self-consumption when no write came within
  InOutWRte_RvrtTms (simulated seconds). Only the points in :data:`dwars.runtime.sunspec.WRITABLE` accept writes;
  others answer ILLEGAL_ADDRESS, rates beyond 100 % ILLEGAL_VALUE.
- :class:`SimulatedHuaweiInverter`: the registers of ``maps/huawei_sun2000.toml``, read as a Huawei SUN2000 reads
  its forcible charge/discharge: writing 47100 (``forcible_command``) starts a forcible charge (1) or discharge
  (2) with the power and period that are in the registers at that moment, or stops it (0); the inverter stops by
  itself when the period has run out (47100 reads 0 again) and returns to its working mode, maximise
  self-consumption. A power written without 47100 changes nothing until the next trigger (what the driver's
  ``commit`` is for). Writes outside the map's writable registers answer ILLEGAL_ADDRESS, values outside their
  ``min``..``max`` ILLEGAL_VALUE.

Both report a grid voltage per phase (230 V until :meth:`SimulatedBattery.set_grid_voltage` plays another one; the
next read shows it), so that ``[voltage] source = "inverter"`` can be tried out and tested.

The pieces that serve a register map (:func:`map_simdata`, :func:`map_write`, :func:`serve`) are shared with the
simulated EV charger (:mod:`dwars.runtime.sim_charger`).
"""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from dwars.env.battery import Battery
from dwars.env.dispatch import IntervalResult, simulate_interval
from dwars.env.modes import Decision, Mode
from dwars.runtime.regmap import Register, RegisterMap, load_map
from dwars.runtime.sunspec import (
    COMMON_LENGTH,
    INVERTER_FLOAT_LENGTH,
    INVERTER_FLOAT_POINTS,
    INVERTER_LENGTH,
    INVERTER_POINTS,
    MODEL_COMMON,
    MODEL_END,
    MODEL_STORAGE,
    MODELS_INVERTER,
    MODELS_INVERTER_FLOAT,
    NOT_IMPLEMENTED,
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
#: Register address of the first point of the inverter model, which follows model 124 (the order of the models in a
#: SunSpec chain is the device's; the driver finds them wherever they are).
INVERTER_START = STORAGE_START + STORAGE_LENGTH + 2
_CHA_STATE_SF = -1  # ChaState in 0.1 %
DEFAULT_GRID_V = 230.0  # what a simulated inverter reports until told otherwise
_MAX_GRID_V = 6553.4  # what set_grid_voltage() takes: what a uint16 in tenths of a volt carries (garbage included)


def _text(value: str, words: int) -> list[int]:
    raw = value.encode("ascii")[: 2 * words].ljust(2 * words, b"\0")
    return [raw[i] << 8 | raw[i + 1] for i in range(0, len(raw), 2)]


def map_simdata(registers: Mapping[str, Register], initial: Mapping[str, float],
                max_read_gap: int = 0) -> list[SimData]:
    """Server blocks for a map's registers with their ``initial`` values (0 where none is given). Unused addresses
    within ``max_read_gap`` of a register read 0xFFFF (what chargers such as Alfen's answer for a reserved
    register: NaN), so that the driver's grouped reads find them; farther ones are not served."""
    blocks: list[SimData] = []
    end: int | None = None
    for r in sorted(registers.values(), key=lambda r: r.address):
        if end is not None and 0 < r.address - end <= max_read_gap:
            blocks.append(SimData(end, values=[0xFFFF] * (r.address - end), datatype=DataType.REGISTERS))
        blocks.append(SimData(r.address, values=r.encode(initial.get(r.name, 0.0)), datatype=DataType.REGISTERS))
        end = r.address + r.words
    return blocks


def map_write(by_address: Mapping[int, Register], address: int, values: list[int]) -> dict[str, float] | ExcCodes:
    """The registers a write request sets, with their values (in their units); or why a device that allows only
    the map's writable registers, within their ``min``..``max``, refuses it (a multi-word register must be written
    whole, in one request)."""
    out: dict[str, float] = {}
    k = 0
    while k < len(values):
        reg: Register | None = by_address.get(address + k)
        if reg is None or not reg.writable or k + reg.words > len(values):
            return ExcCodes.ILLEGAL_ADDRESS
        value = reg.decode(values[k: k + reg.words])
        if not (reg.minimum is not None and reg.maximum is not None and reg.minimum <= value <= reg.maximum):
            return ExcCodes.ILLEGAL_VALUE
        out[reg.name] = value
        k += reg.words
    return out


async def serve(device: SimDevice, host: str, port: int = 0) -> tuple[ModbusTcpServer, asyncio.Task[Any], int]:
    """A Modbus TCP server for ``device`` on ``host``:``port`` (0 picks a free port), listening when this returns:
    (server, its task, port)."""
    port = port or _free_port(host)
    server = ModbusTcpServer(device, address=(host, port))
    task = asyncio.create_task(server.serve_forever())
    for _ in range(100):  # until it listens
        if server.is_active():
            break
        await asyncio.sleep(0.01)
    return server, task, port


def inverter_points(model: int, volts: Sequence[float], v_sf: int = -1) -> list[int]:
    """The words of inverter model ``model`` (101-103 with V_SF = ``v_sf``, or the float32 111-113) that report
    ``volts`` (V, one per phase it has; the others "not implemented"); every other point reads 0."""
    phases = model % 10
    if model in MODELS_INVERTER:
        points = [0] * INVERTER_LENGTH
        points[INVERTER_POINTS["V_SF"]] = word(v_sf)
        for k, name in enumerate(("PhVphA", "PhVphB", "PhVphC")):
            raw = round(volts[k] * 10.0 ** -v_sf) if k < phases else NOT_IMPLEMENTED
            if k < phases and not 0 <= raw < NOT_IMPLEMENTED:
                raise ValueError(f"{volts[k]:g} V does not fit {name} (uint16) with V_SF = {v_sf}")
            points[INVERTER_POINTS[name]] = raw
        return points
    if model not in MODELS_INVERTER_FLOAT:
        raise ValueError(f"inverter model {model}: must be one of {MODELS_INVERTER + MODELS_INVERTER_FLOAT}")
    points = [0] * INVERTER_FLOAT_LENGTH
    for k, name in enumerate(("PhVphA", "PhVphB", "PhVphC")):
        raw = struct.unpack(">HH", struct.pack(">f", volts[k] if k < phases else math.nan))
        points[INVERTER_FLOAT_POINTS[name]: INVERTER_FLOAT_POINTS[name] + 2] = raw
    return points


def sunspec_registers(max_charge_w: int, soc_pct: float, reserve_pct: float, inverter_model: int | None = None,
                      grid_voltage_v: Sequence[float] = (DEFAULT_GRID_V,) * 3, v_sf: int = -1) -> list[int]:
    """The register words from SUNSPEC_BASE: "SunS", model 1 (manufacturer "dwars", model "simulated"),
    model 124, the inverter model ``inverter_model`` (None: none) with ``grid_voltage_v``, end marker."""
    # Mn, Md, Opt, Vr, SN, DA, pad: 66 words
    common = _text("dwars", 16) + _text("simulated", 16) + _text("", 8) + _text("1.0", 8) + _text("0001", 16) + [1, 0]
    storage = [0] * STORAGE_LENGTH
    points = {"WChaMax": max_charge_w, "MinRsvPct": round(reserve_pct * 10), "ChaState": round(soc_pct * 10),
              "OutWRte": 100 * 10 ** -RATE_SF, "InWRte": 100 * 10 ** -RATE_SF, "WChaMax_SF": 0,
              "MinRsvPct_SF": word(-1), "ChaState_SF": word(_CHA_STATE_SF), "InOutWRte_SF": word(RATE_SF)}
    for name, value in points.items():
        storage[STORAGE_POINTS[name]] = value
    inverter = [] if inverter_model is None else inverter_points(inverter_model, grid_voltage_v, v_sf)
    inverter_block = [inverter_model, len(inverter), *inverter] if inverter else []
    return [*SUNS_MARKER, MODEL_COMMON, COMMON_LENGTH, *common, MODEL_STORAGE, STORAGE_LENGTH, *storage,
            *inverter_block, MODEL_END, 0]


@dataclass
class SimulatedBattery:
    """Battery physics behind a Modbus TCP server on ``host``:``port`` (0 picks a free port); a device subclass says
    how its registers look and what they command.

    Parameters
    ----------
    battery : the battery's physics (limits, efficiency, reserve).
    energy_kwh : its energy at the start.
    grid_limit_kw : the connection limit.
    now : the simulated clock (UTC), moved by :meth:`advance`.
    """

    battery: Battery
    energy_kwh: float
    grid_limit_kw: float = 17.0
    host: str = "127.0.0.1"
    port: int = 0
    now: pd.Timestamp = field(default_factory=lambda: pd.Timestamp("2024-01-01", tz="UTC"))
    writes: int = 0  # accepted write requests
    battery_w: float = 0.0  # mean battery power of the last interval, W (charge positive)
    _grid_v: tuple[float, ...] = field(default=(DEFAULT_GRID_V,), repr=False)  # one value: every phase
    _registers: list[int] | None = field(default=None, repr=False)  # the server's live registers, once it answered
    _server: Any = field(default=None, repr=False)
    _task: asyncio.Task[Any] | None = field(default=None, repr=False)

    @property
    def unit_id(self) -> int:
        """The Modbus unit id the server answers."""
        return 1

    @property
    def max_charge_w(self) -> int:
        return round(self.battery.max_charge_kw * 1000)

    @property
    def soc_pct(self) -> float:
        return 100.0 * self.energy_kwh / self.battery.capacity_kwh

    @property
    def reserve_pct(self) -> float:
        return 100.0 * self.battery.reserve_kwh / self.battery.capacity_kwh

    @property
    def grid_phases(self) -> int:
        """The phases whose voltage the device reports (0: none)."""
        raise NotImplementedError

    @property
    def grid_voltage_v(self) -> tuple[float, ...]:
        """The grid voltage it reports now, V, per phase (:attr:`grid_phases` values)."""
        return self._grid_v * self.grid_phases if len(self._grid_v) == 1 else self._grid_v

    def set_grid_voltage(self, volts: float | Sequence[float]) -> None:
        """Play a grid voltage, V: one value per phase the device reports, or one for all of them. The registers
        show it from the next read on (at once when the server has answered before)."""
        values = (float(volts),) if isinstance(volts, int | float) else tuple(float(v) for v in volts)
        if len(values) not in (1, self.grid_phases) or self.grid_phases == 0:
            raise ValueError(f"{len(values)} voltage(s): this simulated inverter reports {self.grid_phases} "
                             "phase(s); give one value per phase, or one for all")
        if not all(0.0 <= v <= _MAX_GRID_V for v in values):
            raise ValueError(f"grid voltage {values} V: each must be 0..{_MAX_GRID_V:g} V")
        before, self._grid_v = self._grid_v, values
        try:
            self._publish_state()
        except ValueError:  # it does not fit the registers: keep what they show
            self._grid_v = before
            raise

    def commanded(self) -> Decision:
        """What the registers command now (self-consumption once a command's time has run out)."""
        raise NotImplementedError

    def _expire(self) -> None:
        """Drop a command whose time has run out, in the registers, as the device does."""
        raise NotImplementedError

    def _publish_state(self) -> None:
        """Put the battery's state (SoC, power) and the grid voltage into the registers."""
        raise NotImplementedError

    def _simdata(self) -> list[SimData]:
        """The register blocks the server starts with."""
        raise NotImplementedError

    def _refuse(self, address: int, values: list[int]) -> ExcCodes | None:
        """Why a write is refused (None: accepted)."""
        raise NotImplementedError

    def _accepted(self, address: int, values: list[int]) -> None:
        """Bookkeeping for an accepted write (called before the values land in the registers)."""
        raise NotImplementedError

    def advance(self, minutes: int, pv_kw: float, load_kw: float, import_price: float = 0.0,
                export_price: float = 0.0) -> IntervalResult:
        """Play one interval of ``minutes`` with the actual PV and load under the current command."""
        decision = self.commanded()
        r = simulate_interval(self.energy_kwh, int(decision.mode), decision.power_kw, pv_kw, load_kw, import_price,
                              export_price, minutes / 60.0, self.battery, self.grid_limit_kw)
        self.energy_kwh = float(r.energy_kwh)
        self.battery_w = 1000.0 * float(r.charge_kw - r.discharge_kw)
        self.now = self.now + pd.Timedelta(minutes=minutes)
        if self._registers is not None:
            self._expire()
        self._publish_state()
        return r

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], values: list[int] | list[bool] | None) -> ExcCodes | None:
        self._registers = registers
        if values is None:
            self._publish_state()
            return None
        words = [int(v) for v in values]
        refused = self._refuse(address, words)
        if refused is not None:
            return refused
        self.writes += 1
        self._accepted(address, words)
        return None

    async def start(self) -> int:
        """Serve on ``host``; returns the port."""
        device = SimDevice(self.unit_id, self._simdata(), action=self._action)
        self._server, self._task, self.port = await serve(device, self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
        if self._task is not None:
            self._task.cancel()


@dataclass
class SimulatedInverter(SimulatedBattery):
    """Battery + SunSpec registers (models 1, 124 and an inverter model) behind a Modbus TCP server (see the module
    text).

    Parameters
    ----------
    inverter_model : the SunSpec inverter model after model 124, with the grid voltage: 101 (single phase), 102
        (split phase), 103 (three phase), their float variants 111-113, or None (no inverter model: the grid voltage
        cannot be read).
    v_sf : the scale factor V_SF of models 101-103 (-1: tenths of a volt, as most inverters report them).
    """

    inverter_model: int | None = 103
    v_sf: int = -1
    _last_write: pd.Timestamp | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.inverter_model is not None and self.inverter_model not in MODELS_INVERTER + MODELS_INVERTER_FLOAT:
            raise ValueError(f"inverter_model = {self.inverter_model}: must be one of "
                             f"{', '.join(map(str, MODELS_INVERTER + MODELS_INVERTER_FLOAT))} or None")

    @property
    def grid_phases(self) -> int:
        return 0 if self.inverter_model is None else self.inverter_model % 10

    def point(self, name: str) -> int:
        """A model-124 point's raw word (signed for the rates)."""
        if self._registers is None:
            raise RuntimeError("the server has not answered a request yet")
        value = self._registers[STORAGE_START - SUNSPEC_BASE + STORAGE_POINTS[name]]
        return int16(value) if name in ("OutWRte", "InWRte") else value

    def commanded(self) -> Decision:
        if self._registers is None or self._reverted():
            return Decision(Mode.MSC)
        scale = 10.0 ** RATE_SF
        return decision_from(self.point("StorCtl_Mod"), self.point("OutWRte") * scale,
                             self.point("InWRte") * scale, self.max_charge_w)

    def _reverted(self) -> bool:
        revert_s = self.point("InOutWRte_RvrtTms")
        return bool(revert_s and self._last_write is not None
                    and (self.now - self._last_write).total_seconds() > revert_s)

    def _expire(self) -> None:
        if self._reverted():  # the limits are dropped, as a real inverter does
            self._set("StorCtl_Mod", 0)

    def _set(self, name: str, value: int) -> None:
        assert self._registers is not None
        self._registers[STORAGE_START - SUNSPEC_BASE + STORAGE_POINTS[name]] = value

    def _publish_state(self) -> None:
        if self._registers is not None:
            self._set("ChaState", round(self.soc_pct * 10))
            if self.inverter_model is not None:
                points = inverter_points(self.inverter_model, self.grid_voltage_v, self.v_sf)
                start = INVERTER_START - SUNSPEC_BASE
                self._registers[start: start + len(points)] = points

    def _simdata(self) -> list[SimData]:
        words = sunspec_registers(self.max_charge_w, self.soc_pct, self.reserve_pct, self.inverter_model,
                                  self.grid_voltage_v, self.v_sf)
        return [SimData(SUNSPEC_BASE, values=words, datatype=DataType.REGISTERS)]

    def _refuse(self, address: int, values: list[int]) -> ExcCodes | None:
        allowed = {STORAGE_START + STORAGE_POINTS[name]: name for name in WRITABLE}
        for k, value in enumerate(values):
            name = allowed.get(address + k)
            if name is None:
                return ExcCodes.ILLEGAL_ADDRESS
            if name in ("OutWRte", "InWRte") and abs(int16(value)) > 100 * 10 ** -RATE_SF:
                return ExcCodes.ILLEGAL_VALUE
        return None

    def _accepted(self, address: int, values: list[int]) -> None:
        self._last_write = self.now


@dataclass(frozen=True)
class _Forcible:
    """A running Huawei forcible charge/discharge, as latched by a write of 47100."""

    command: int  # 1 charge, 2 discharge
    power_w: float
    period_min: float
    by_duration: bool
    started: pd.Timestamp


@dataclass
class SimulatedHuaweiInverter(SimulatedBattery):
    """Battery + the registers of a Huawei SUN2000/LUNA2000 map behind a Modbus TCP server (see the module text).

    Parameters
    ----------
    regmap : the map whose registers the device exposes (default ``huawei_sun2000``); the simulation reads them by
        that map's register names.
    working_mode : 47086 (2 = maximise self-consumption; anything else fails the driver's check at connect).
    phases : 3 (M1) or 1 (an L1 model: phases B and C read 0 V, what dwars assumes a single-phase SUN2000 reports).
    """

    regmap: RegisterMap = field(default_factory=lambda: load_map("huawei_sun2000"))
    working_mode: int = 2
    phases: int = 3
    _forcible: _Forcible | None = field(default=None, repr=False)
    _start_address: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.phases not in (1, 3):
            raise ValueError(f"phases = {self.phases}: must be 1 or 3")
        self._by_address = {r.address: r for r in self.regmap.registers.values()}
        self._start_address = min(self._by_address)

    @property
    def unit_id(self) -> int:
        return self.regmap.unit_id

    @property
    def grid_phases(self) -> int:
        return min(self.phases, len(self.regmap.grid_voltage))

    def _voltages(self) -> dict[str, float]:
        """The map's voltage registers (the first of each phase's) -> what they read: 0 V for the phases the device
        does not have."""
        volts = self.grid_voltage_v
        return {choices[0]: volts[k] if k < len(volts) else 0.0 for k, choices in enumerate(self.regmap.grid_voltage)}

    def value(self, name: str) -> float:
        """A register's value in its unit (after the server has answered once)."""
        if self._registers is None:
            raise RuntimeError("the server has not answered a request yet")
        reg = self.regmap.registers[name]
        offset = reg.address - self._start_address
        return reg.decode(self._registers[offset: offset + reg.words])

    def _put(self, name: str, value: float) -> None:
        reg = self.regmap.registers.get(name)
        if self._registers is not None and reg is not None:
            offset = reg.address - self._start_address
            self._registers[offset: offset + reg.words] = reg.encode(value)

    def commanded(self) -> Decision:
        f = self._forcible
        if f is None or self._ran_out(f) or not f.by_duration:  # the SoC-target variant is not simulated
            return Decision(Mode.MSC)
        if f.power_w <= 0:
            return Decision(Mode.HOLD)
        return Decision(Mode.IMPORT if f.command == 1 else Mode.EXPORT, f.power_w / 1000.0)

    def _ran_out(self, f: _Forcible) -> bool:
        return (self.now - f.started).total_seconds() > f.period_min * 60

    def _expire(self) -> None:
        if self._forcible is not None and self._ran_out(self._forcible):
            self._forcible = None
            self._put("forcible_command", 0)

    def _initial(self) -> dict[str, float]:
        return {"max_charge_power": self.max_charge_w,
                "max_discharge_power": round(self.battery.max_discharge_kw * 1000),
                "rated_capacity": round(self.battery.capacity_kwh * 1000), "soc": round(self.soc_pct, 1),
                "backup_soc": round(self.reserve_pct, 1), "working_mode": self.working_mode, **self._voltages()}

    def _publish_state(self) -> None:
        self._put("soc", round(self.soc_pct, 1))
        self._put("battery_power", round(self.battery_w))
        for name, volts in self._voltages().items():
            self._put(name, volts)

    def _simdata(self) -> list[SimData]:
        return map_simdata(self.regmap.registers, self._initial(), self.regmap.max_read_gap)

    def _written(self, address: int, values: list[int]) -> dict[str, float] | ExcCodes:
        """The registers a write request sets, with their values; or why the device refuses it."""
        return map_write(self._by_address, address, values)

    def _refuse(self, address: int, values: list[int]) -> ExcCodes | None:
        written = self._written(address, values)
        return written if isinstance(written, ExcCodes) else None

    def _accepted(self, address: int, values: list[int]) -> None:
        written = self._written(address, values)
        assert isinstance(written, dict)
        if "forcible_command" not in written:
            return  # parameters only: they take effect at the next trigger

        def now_value(name: str) -> float:
            return written[name] if name in written else self.value(name)

        command = int(written["forcible_command"])
        if command == 0:
            self._forcible = None
            return
        power = now_value("forcible_charge_power" if command == 1 else "forcible_discharge_power")
        self._forcible = _Forcible(command, power, now_value("forcible_period"),
                                   now_value("forcible_target") == 0, self.now)


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
