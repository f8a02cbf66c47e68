"""Inverter driver over Modbus TCP (pymodbus async client): read the battery, apply a Decision, verify it.

:class:`MapDriver` drives any inverter described by a register map (:mod:`dwars.runtime.regmap`; the shipped maps
are in ``dwars/runtime/maps/``). The guarantees are the same for every map, and live here once:

- allow-list: only the map's writable registers that its ``[modes]`` write ever get written;
- range check: every value is checked against the register's ``min``..``max`` (and the power against the
  battery's max charge power) before anything goes out (:class:`RefusedCommandError`);
- rate limit: many inverters keep these registers in flash. A register is written only when the inverter does not
  hold its value (read first: an inverter that reverted or restarted gets the command again), or when half the
  revert time has passed since it was last written (the refresh that keeps the inverter from falling back). An
  unchanged command costs no writes in between. The map's ``commit`` registers (a trigger such as Huawei's
  47100) are written last, and again whenever another register was written;
- every write is read back and compared; a failed write is retried with backoff (0.1, 0.2, 0.4 ... s) before
  :class:`InverterError`, whose message names the inverter, the register and what went wrong;
- :meth:`MapDriver.fail_safe` hands the battery back to the inverter's own self-consumption (the map's MSC mode,
  written whatever the rate limit says).

The grid voltage per phase (for ``[voltage] source = "inverter"``): :meth:`MapDriver.read_grid_voltage` reads the
registers the map names in ``[reading] grid_voltage_l1_v`` .. ``l3_v``; a map without them raises
:class:`NoGridVoltageError`, which tells the owner to read the voltage from the P1 meter instead.

:class:`SunSpecDriver` is the map driver with ``maps/sunspec_124.toml``: connect walks the SunSpec model chain from
register 40000 and notes where each model starts: model 124 for the battery, and the inverter model (101-103, or the
float variants 111-113) for the grid voltage. :func:`open_driver` makes the driver a config names.

The Modbus side of these guarantees (grouped reads, verified writes with retries, the allow-list, the rate limit) is
:class:`RegisterDriver`, which :class:`dwars.runtime.charger.ChargerDriver` shares for EV chargers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from dwars.env.modes import Decision, Mode
from dwars.errors import DwarsError
from dwars.runtime.regmap import MAX_READ_WORDS, Check, CommandError, Register, RegisterMap, load_map
from dwars.runtime.sunspec import MODEL_END, SUNS_MARKER, SUNSPEC_BASE

log = logging.getLogger(__name__)

#: A grid voltage per phase outside this range (V) is garbage (a wrong scale, a register that is not the voltage)
#: or an inverter that is off the grid: 230 V +- 10 % and the 120 V of split-phase grids fit with room to spare.
PLAUSIBLE_GRID_V = (100.0, 400.0)


class DeviceError(DwarsError):
    """A Modbus device (inverter, EV charger) cannot be reached, answers garbage, or does not take a command."""


class InverterError(DeviceError):
    """The inverter cannot be reached, answers garbage, or does not take a command."""


class RefusedCommandError(InverterError, ValueError):
    """dwars refused a command before writing it: outside the map's ranges, or above the battery's power."""


class NoGridVoltageError(InverterError):
    """The inverter's map names no grid-voltage registers, or the inverter lacks the SunSpec model that has them: a
    matter of configuration (``[voltage] source = "meter"``), not a passing fault."""


@dataclass(frozen=True)
class BatteryReading:
    """What the inverter reports: state of charge (%), max charge power (W), reserve (%), and the step in which
    it reports the state of charge (%: 1 for an inverter that shows whole percents, 0.1 for tenths)."""

    soc_pct: float
    max_charge_w: float
    reserve_pct: float
    soc_step_pct: float = 0.0


class DeviceMap(Protocol):
    """What :class:`RegisterDriver` needs of a loaded map (an inverter's or a charger's)."""

    @property
    def name(self) -> str: ...
    @property
    def unit_id(self) -> int: ...
    @property
    def registers(self) -> Mapping[str, Register]: ...
    @property
    def checks(self) -> tuple[Check, ...]: ...
    @property
    def max_read_gap(self) -> int: ...
    @property
    def commit(self) -> tuple[str, ...]: ...
    @property
    def writable(self) -> frozenset[str]: ...


class RegisterDriver:
    """A device at ``host``:``port`` described by a register map: grouped reads, and writes that are allow-listed,
    rate-limited, read back and retried (see the module text). Subclasses say what the device is.

    Parameters
    ----------
    regmap : a loaded map.
    device_id : Modbus unit id (None: the map's ``unit_id``).
    timeout_s : per request.
    retries : attempts per write before giving up (waiting 0.1, 0.2, 0.4, ... s in between).
    clock : seconds; the rate limit's time (a simulated clock in tests and dry runs).
    """

    #: The device in messages, and the errors it raises.
    noun = "device"
    error: type[DeviceError] = DeviceError
    refused: type[DeviceError] = DeviceError

    def __init__(self, regmap: DeviceMap, host: str, port: int = 502, device_id: int | None = None,
                 timeout_s: float = 2.0, retries: int = 3, clock: Callable[[], float] = time.monotonic) -> None:
        self.map = regmap
        self.where = f"{self.noun} {host}:{port}"
        self.device_id = self.map.unit_id if device_id is None else int(device_id)
        self.retries = max(int(retries), 1)
        self.client = AsyncModbusTcpClient(host, port=port, timeout=timeout_s, retries=0)
        self.clock = clock
        self.base: int | None = None  # added to every map address (a SunSpec model's start); None: not connected
        self.models: dict[int, int] = {}  # SunSpec model -> its first data register (found at connect)
        self.written: dict[str, tuple[list[int], float]] = {}  # register -> (words, when written)
        self.writes = 0
        self.steps: dict[str, float] = {}  # register -> the value of one raw step, in its unit (last read)
        # One request at a time on the connection: the voltage watch polls beside the control loop's reads and
        # writes, and a write must be read back before anything else talks to the device.
        self._bus = asyncio.Lock()

    async def connect(self) -> None:
        """Connect, find the registers (:meth:`_locate`) and run the map's checks."""
        if not await self.client.connect():
            raise self.error(f"{self.where}: no connection (is it on, and is Modbus TCP enabled?)")
        self.base = await self._locate()
        if self.map.checks:
            values = await self._values(c.register for c in self.map.checks)
            for check in self.map.checks:
                value = values[check.register]
                if not any(abs(value - allowed) < 1e-9 for allowed in check.one_of):
                    expected = " or ".join(f"{v:g}" for v in check.one_of)
                    raise self.error(f"{self.where} ({self.map.name}): {check.register} is {value:g}, expected "
                                     f"{expected}" + (f": {check.hint}" if check.hint else ""))

    async def _locate(self) -> int:
        """The address the map's addresses count from (0: they are absolute)."""
        return 0

    def close(self) -> None:
        self.client.close()

    async def _write_command(self, values: dict[str, float], revert_s: float, force: bool) -> None:
        """Write ``values`` (register -> value in its unit, in order), rate-limited against ``revert_s``: a
        register the device holds and that was written less than ``revert_s / 2`` ago is skipped, unless
        ``force``."""
        regs = self.map.registers
        now = self.clock()
        # What the device holds now, and the scale factors (a read costs no flash). One that reverted or
        # restarted since the last write no longer holds the command, whatever was written before.
        sfs = {r.scale_factor for name in values if (r := regs[name]).scale_factor}
        current = await self._read_words([*values, *sfs])
        changed = False
        order = [n for n in values if n not in self.map.commit] + [n for n in values if n in self.map.commit]
        for name in order:
            reg = regs[name]
            try:
                words = reg.encode(values[name], self._sf(reg, current))
            except CommandError as err:
                raise self.refused(f"{self.where}: {err} (nothing written)") from None
            last = self.written.get(name)
            holds = current[name] == words
            fresh = last is not None and last[0] == words and now - last[1] < revert_s / 2
            if holds and fresh and not force and not (changed and name in self.map.commit):
                continue  # unchanged and recently refreshed: spare the device's flash
            await self._write_verified(reg, words, values[name])
            self.written[name] = (words, now)
            self.writes += 1
            changed = True

    async def _write_verified(self, reg: Register, words: list[int], value: float) -> None:
        if reg.name not in self.map.writable:  # the allow-list, enforced where writes happen
            raise self.refused(f"{self.where}: {reg.name} is not a register dwars may write")
        address = self._address(reg)
        shown = f"{reg.name} = {value:g}" + (f" {reg.unit}" if reg.unit else "")
        delay_s = 0.1
        for attempt in range(1, self.retries + 1):
            try:
                async with self._bus:
                    if len(words) == 1:
                        reply = await self.client.write_register(address, words[0], device_id=self.device_id)
                    else:  # 32-bit values in one request (function 16), as the vendors require
                        reply = await self.client.write_registers(address, words, device_id=self.device_id)
                    if reply.isError():
                        raise self.error(f"{self.where}: writing {shown} refused ({reply})")
                    back = await self._read_unlocked(address, len(words))
                if back != words:
                    raise self.error(f"{self.where}: {reg.name} reads back {back} after writing {words}")
                return
            except (DeviceError, ModbusException) as err:
                if attempt == self.retries:
                    raise self.error(f"{self.where}: {shown} not applied after {attempt} attempts: "
                                     f"{err}") from None
                log.warning("%s: writing %s failed (%s); retrying in %.1f s", self.where, reg.name, err, delay_s)
                await asyncio.sleep(delay_s)
                delay_s *= 2

    def _address(self, reg: Register) -> int:
        if self.base is None:
            raise self.error(f"{self.where}: call connect() first")
        if not reg.model:
            return self.base + reg.address
        start = self._model_start(reg)
        if start is None:
            raise self.error(f"{self.where}: {reg.name} is in SunSpec model {' or '.join(map(str, reg.model))}, "
                             "which this device does not have")
        return start + reg.address

    def _model_start(self, reg: Register) -> int | None:
        """The first data register of the first of ``reg.model`` that the device has (None: it has none)."""
        return next((self.models[m] for m in reg.model if m in self.models), None)

    def _sf(self, reg: Register, words: dict[str, list[int]]) -> int:
        return int(self.map.registers[reg.scale_factor].raw(words[reg.scale_factor])) if reg.scale_factor else 0

    async def _values(self, names: Iterable[str]) -> dict[str, float]:
        """Registers' values in their units (their scale-factor registers read along)."""
        names = list(names)
        regs = self.map.registers
        words = await self._read_words([*names, *(regs[n].scale_factor for n in names if regs[n].scale_factor)])
        self.steps.update({n: abs(regs[n].scale) * 10.0 ** self._sf(regs[n], words) for n in names})
        return {n: regs[n].decode(words[n], self._sf(regs[n], words)) for n in names}

    async def _read_words(self, names: Iterable[str]) -> dict[str, list[int]]:
        """Registers' words, read in as few requests as the map's ``max_read_gap`` allows (registers of different
        SunSpec models are grouped by where they are on the device)."""
        regs = sorted({n: self.map.registers[n] for n in names}.values(), key=self._address)
        out: dict[str, list[int]] = {}
        group: list[Register] = []

        async def flush() -> None:
            if group:
                start = self._address(group[0])
                end = self._address(group[-1]) + group[-1].words
                block = await self._read(start, end - start)
                for r in group:
                    out[r.name] = block[self._address(r) - start: self._address(r) - start + r.words]
                group.clear()

        for reg in regs:
            if group:
                start = self._address(reg)
                gap = start - (self._address(group[-1]) + group[-1].words)
                if gap > self.map.max_read_gap or start + reg.words - self._address(group[0]) > MAX_READ_WORDS:
                    await flush()
            group.append(reg)
        await flush()
        return out

    async def _read(self, address: int, count: int) -> list[int]:
        async with self._bus:
            return await self._read_unlocked(address, count)

    async def _read_unlocked(self, address: int, count: int) -> list[int]:
        try:
            reply = await self.client.read_holding_registers(address, count=count, device_id=self.device_id)
        except ModbusException as err:
            raise self.error(f"{self.where}: reading {count} register(s) at {address} failed: {err}") from None
        if reply.isError():
            raise self.error(f"{self.where}: reading {count} register(s) at {address} refused ({reply})")
        return list(reply.registers)


class MapDriver(RegisterDriver):
    """An inverter at ``host``:``port`` described by a register map (see the module text).

    Parameters
    ----------
    regmap : a loaded map, a built-in map name (``"huawei_sun2000"``) or the path of a map file.
    device_id : Modbus unit id (None: the map's ``unit_id``).
    timeout_s : per request.
    retries : attempts per write before giving up (waiting 0.1, 0.2, 0.4, ... s in between).
    clock : seconds; the rate limit's time (a simulated clock in tests and dry runs).
    """

    noun = "inverter"
    error = InverterError
    refused = RefusedCommandError
    map: RegisterMap

    def __init__(self, regmap: RegisterMap | str | Path, host: str, port: int = 502, device_id: int | None = None,
                 timeout_s: float = 2.0, retries: int = 3, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(regmap if isinstance(regmap, RegisterMap) else load_map(regmap), host, port, device_id,
                         timeout_s, retries, clock)
        self.last_revert_s = 3600  # what fail_safe() writes for a revert time before any apply()
        self.last_max_charge_w: float | None = None

    async def _locate(self) -> int:
        if self.map.sunspec_model is None:
            return 0
        self.models = await self._sunspec_models(self.map.sunspec_model)
        if self.map.sunspec_model not in self.models:
            raise InverterError(f"{self.where}: no storage model {self.map.sunspec_model} in the SunSpec map")
        return self.models[self.map.sunspec_model]

    async def _sunspec_models(self, needed: int) -> dict[int, int]:
        """Walk the SunSpec chain from the "SunS" marker: each model's ID -> its first data register (the first
        of a model that appears twice). A chain that cannot be read to its end is kept up to there once it has
        ``needed`` (the battery works without the models after it)."""
        marker = await self._read(SUNSPEC_BASE, 2)
        if tuple(marker) != SUNS_MARKER:
            raise InverterError(f"{self.where}: no SunSpec map at {SUNSPEC_BASE} (read {marker})")
        models: dict[int, int] = {}
        address = SUNSPEC_BASE + 2
        for _ in range(64):  # a SunSpec chain has a handful of models
            try:
                model, length = await self._read(address, 2)
            except InverterError as err:
                if needed not in models:
                    raise
                log.warning("%s: the SunSpec chain ends unreadably at %d (%s); models found: %s", self.where,
                            address, err, ", ".join(map(str, models)))
                break
            if model == MODEL_END:
                break
            models.setdefault(model, address + 2)
            address += 2 + length
        return models

    @property
    def has_grid_voltage(self) -> bool:
        """The map names grid-voltage registers (whether the inverter has them shows at
        :meth:`read_grid_voltage`)."""
        return bool(self.map.grid_voltage)

    async def read_grid_voltage(self) -> tuple[float, ...]:
        """The grid voltage per phase, V: one value for a single-phase inverter, three for a three-phase one.

        Phases after L1 that the inverter marks "not implemented" (SunSpec's 0xFFFF, NaN for a float) or reads as
        0 V are left off: a single-phase inverter behind a map for both. A phase can only be left off with the
        ones after it.

        Raises
        ------
        NoGridVoltageError
            when the map names no voltage registers, or the inverter lacks the SunSpec model that has them.
        InverterError
            when the inverter cannot be read, or a voltage is implausible (outside :data:`PLAUSIBLE_GRID_V`).
        """
        advice = 'set [voltage] source = "meter" to take the voltage from the P1 meter'
        if not self.map.grid_voltage:
            raise NoGridVoltageError(f"{self.where}: the map {self.map.source} ({self.map.name}) names no grid-voltage "
                                     f"registers ([reading] grid_voltage_l1_v); {advice}")
        if self.base is None:  # not connected yet (the inverter was off at start-up): try now
            await self.connect()
        regs = self.map.registers
        names = []
        for phase, choices in enumerate(self.map.grid_voltage, start=1):
            name = next((n for n in choices if not regs[n].model or self._model_start(regs[n]) is not None), None)
            if name is None:
                models = " or ".join(str(m) for m in sorted({m for n in choices for m in regs[n].model}))
                raise NoGridVoltageError(f"{self.where}: the inverter has no SunSpec model {models}, which has the "
                                         f"voltage of phase L{phase}; {advice}")
            names.append(name)
        words = await self._read_words([*names, *(regs[n].scale_factor for n in names if regs[n].scale_factor)])
        volts: list[float | None] = []
        for phase, name in enumerate(names, start=1):
            reg = regs[name]
            sf_reg = regs[reg.scale_factor] if reg.scale_factor else None
            if sf_reg is not None and sf_reg.unavailable(words[sf_reg.name]):
                raise InverterError(f"{self.where}: {sf_reg.name} (the scale of {name}) reads \"not implemented\"")
            value = None if reg.unavailable(words[name]) else reg.decode(words[name], self._sf(reg, words))
            volts.append(None if phase > 1 and value == 0 else value)
        if volts[0] is None:
            raise InverterError(f"{self.where}: {names[0]} (the voltage of phase L1) reads \"not implemented\"")
        reported = volts.index(None) if None in volts else len(volts)  # the phases up to the first left off
        present = [v for v in volts[:reported] if v is not None]
        low, high = PLAUSIBLE_GRID_V
        shown = ", ".join("-" if v is None else f"{v:g}" for v in volts)
        if any(v is not None for v in volts[reported:]) or not all(low <= v <= high for v in present):
            raise InverterError(f"{self.where}: implausible grid voltage ({shown} V per phase from "
                                f"{', '.join(names)}); expected {low:g}..{high:g} V on L1 and on each phase after it "
                                "that the inverter reports (a wrong scale, or the inverter is off the grid?)")
        return tuple(float(v) for v in present)

    async def read(self) -> BatteryReading:
        """State of charge, max charge power and reserve, in the map's units (scale factors applied)."""
        if self.base is None:  # not connected yet (the inverter was off at start-up): try now
            await self.connect()
        names = self.map.reading
        values = await self._values(names.values())
        reading = BatteryReading(values[names["soc_pct"]], values[names["max_charge_w"]],
                                 values[names["reserve_pct"]], self.steps[names["soc_pct"]])
        if not (0.0 <= reading.soc_pct <= 100.0 and reading.max_charge_w > 0):
            raise InverterError(f"{self.where}: implausible reading {reading} (garbage registers?)")
        self.last_max_charge_w = reading.max_charge_w
        return reading

    async def apply(self, decision: Decision, revert_s: int, max_charge_w: float) -> None:
        """Write the map's registers for ``decision`` (rate-limited, see the module text), read each back and
        verify. :class:`RefusedCommandError` before anything is written for a command outside the map's ranges;
        :class:`InverterError` when the inverter keeps refusing or reports other values."""
        values = self._command(decision, revert_s, max_charge_w)
        self.last_revert_s, self.last_max_charge_w = int(revert_s), float(max_charge_w)
        await self._write_command(values, revert_s, force=False)

    async def fail_safe(self) -> None:
        """Hand the battery back to the inverter's own self-consumption: the map's MSC mode, written and verified
        even when the rate limit would skip it (the loop calls this when it enters safe mode)."""
        max_charge_w = self.last_max_charge_w or (await self.read()).max_charge_w
        values = self._command(Decision(Mode.MSC), self.last_revert_s, max_charge_w)
        await self._write_command(values, self.last_revert_s, force=True)
        log.warning("%s: handed back to the inverter's own self-consumption", self.where)

    def _command(self, decision: Decision, revert_s: float, max_charge_w: float) -> dict[str, float]:
        try:
            return self.map.command(decision, revert_s, max_charge_w)
        except CommandError as err:
            raise RefusedCommandError(f"{self.where}: {err} (nothing written)") from None


class SunSpecDriver(MapDriver):
    """A SunSpec (model 124) storage inverter at ``host``:``port``: :class:`MapDriver` with ``sunspec_124``. Its grid
    voltage comes from the inverter model next to 124 (101-103 with V_SF, or 111-113 in floats; see the map)."""

    def __init__(self, host: str, port: int = 502, device_id: int = 1, timeout_s: float = 2.0,
                 retries: int = 3, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(load_map("sunspec_124"), host, port, device_id, timeout_s, retries, clock)

    @property
    def storage_start(self) -> int | None:
        """Holding register of model 124's first point (None before connect)."""
        return self.base


def open_driver(inverter: str | Path, host: str, port: int = 502, **options: object) -> MapDriver:
    """The driver for ``inverter``: ``"sunspec"`` (model 124), a built-in map name (``"huawei_sun2000"``, see
    :func:`dwars.runtime.regmap.builtin_maps`) or the path of a map file. ``options`` go to :class:`MapDriver`
    (device_id, timeout_s, retries, clock)."""
    if str(inverter) in ("sunspec", "sunspec_124"):
        return SunSpecDriver(host, port, **options)  # type: ignore[arg-type]
    return MapDriver(inverter, host, port, **options)  # type: ignore[arg-type]
