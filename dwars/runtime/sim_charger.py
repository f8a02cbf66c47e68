"""A simulated EV charger with a car: a real Modbus TCP server that exposes the ``alfen_ng9xx`` registers, read as
an Alfen NG9xx reads them (see ``maps/README.md``), so that :class:`~dwars.runtime.charger.ChargerDriver` talks
to it exactly as to the real charger.

- The car is connected during the given sessions (Mode 3 state ``A`` otherwise). While connected and below full,
  it draws ``min(offered current, the car's max) x phases x voltage`` (``C2``); a full car draws nothing (``B2``),
  and so does a car offered less than the IEC 61851 minimum of 6 A (``B1``: no PWM, the car waits).
- The offered current is what the EMS last wrote to ``max_current``, for ``timeout_s`` (simulated seconds) after
  that write; then, and before any write, the charger's safe current, as the real one falls back when its
  energy manager goes quiet. ``setpoint_accounted`` says which of the two is in force, ``valid_time`` how long the
  written one has left.
- The meter (``real_power``, ``energy_delivered``) counts the AC energy; the car's battery gets it times the
  car's efficiency.
- Writes outside the map's writable registers answer ILLEGAL_ADDRESS, values outside their ``min``..``max``
  ILLEGAL_VALUE; half of a two-word register is refused, as Alfen refuses it.

Time is simulated like the inverter's: :attr:`SimulatedCharger.now` moves only by :meth:`SimulatedCharger.advance`
(or :meth:`SimulatedCharger.follow`, which keeps it up with a :class:`~dwars.runtime.clock.Clock`), so a test or a
dry run decides how fast the car fills up.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pymodbus.constants import ExcCodes
from pymodbus.simulator import SimDevice

from dwars.runtime.chargermap import ChargerMap, load_charger_map
from dwars.runtime.clock import Clock
from dwars.runtime.sim_inverter import map_simdata, map_write, serve

#: Mode 3 states (IEC 61851-1) as the charger shows them: ASCII, two characters per register, zero-terminated.
STATES = ("A", "B1", "B2", "C1", "C2", "D1", "D2", "E", "F")
_STATE_WORDS = 5  # the string's length in registers (1201..1205)


def state_words(state: str) -> list[int]:
    """The registers of a Mode 3 state string (``"C2"`` -> [0x4332, 0, 0, 0, 0])."""
    raw = state.encode("ascii").ljust(2 * _STATE_WORDS, b"\0")
    return [raw[i] << 8 | raw[i + 1] for i in range(0, 2 * _STATE_WORDS, 2)]


@dataclass
class SimulatedCar:
    """A car's battery as the charger sees it.

    Attributes
    ----------
    capacity_kwh : usable energy, kWh.
    energy_kwh : energy in it now, kWh.
    max_current_a : the most its on-board charger draws per phase, A.
    phases : the phases its on-board charger uses (1 or 3).
    efficiency : AC to battery (0..1).
    """

    capacity_kwh: float = 60.0
    energy_kwh: float = 30.0
    max_current_a: float = 16.0
    phases: int = 3
    efficiency: float = 0.9

    @property
    def full(self) -> bool:
        return self.energy_kwh >= self.capacity_kwh - 1e-9


@dataclass
class SimulatedCharger:
    """A charger with a car behind a Modbus TCP server on ``host``:``port`` (0 picks a free port); see the module
    text.

    Parameters
    ----------
    car : the car, connected during ``sessions``.
    sessions : (arrival, departure) pairs, UTC; the car is connected from arrival (inclusive) to departure.
    phases : what the charger charges on (its ``charge_phases`` register).
    voltage_v : phase voltage, V.
    safe_current_a : its fallback current, A.
    timeout_s : how long a written current stays in force (Alfen's validity time), simulated s.
    now : the simulated clock (UTC), moved by :meth:`advance`.
    regmap : the map whose registers it serves (``alfen_ng9xx``), read by that map's register names.
    """

    car: SimulatedCar = field(default_factory=SimulatedCar)
    sessions: list[tuple[pd.Timestamp, pd.Timestamp]] = field(default_factory=list)
    phases: int = 3
    voltage_v: float = 230.0
    safe_current_a: float = 6.0
    timeout_s: float = 60.0
    now: pd.Timestamp = field(default_factory=lambda: pd.Timestamp("2024-01-01", tz="UTC"))
    regmap: ChargerMap = field(default_factory=lambda: load_charger_map("alfen_ng9xx"))
    host: str = "127.0.0.1"
    port: int = 0
    writes: int = 0  # accepted write requests
    meter_kwh: float = 0.0  # the meter's total, AC kWh
    written_a: float | None = None  # the current the EMS last wrote
    last_write: pd.Timestamp | None = None
    _registers: list[int] | None = field(default=None, repr=False)
    _server: Any = field(default=None, repr=False)
    _task: asyncio.Task[Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._by_address = {r.address: r for r in self.regmap.registers.values()}
        self._start = min(self._by_address)
        self.sessions = [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in self.sessions]

    # -- the physics ------------------------------------------------------------------------------

    def plugged(self, when: pd.Timestamp | None = None) -> bool:
        when = self.now if when is None else when
        return any(a <= when < b for a, b in self.sessions)

    def offered_a(self, when: pd.Timestamp | None = None) -> float:
        """The current offered to a car at ``when`` (default now): the written one while valid, else the safe one."""
        return self.written_a if self._valid(when) and self.written_a is not None else self.safe_current_a

    def _valid(self, when: pd.Timestamp | None = None) -> bool:
        when = self.now if when is None else when
        return self.last_write is not None and (when - self.last_write).total_seconds() <= self.timeout_s

    @property
    def power_kw(self) -> float:
        """What the charger delivers now, kW."""
        if not self.plugged() or self.car.full or self.offered_a() < self.regmap.min_current_a:
            return 0.0
        amps = min(self.offered_a(), self.car.max_current_a)
        return amps * min(self.phases, self.car.phases) * self.voltage_v / 1000.0

    @property
    def state(self) -> str:
        """The Mode 3 state now."""
        if not self.plugged():
            return "A"
        if self.offered_a() < self.regmap.min_current_a:
            return "B1"
        return "B2" if self.car.full else "C2"

    def advance(self, minutes: float) -> float:
        """Play ``minutes`` of simulated time; returns the AC energy delivered, kWh. The power changes where a
        session starts or ends, the written current runs out, or the car gets full, and is constant in between."""
        end = self.now + pd.Timedelta(minutes=minutes)
        delivered = 0.0
        while self.now < end:
            events = [end, *(t for a, b in self.sessions for t in (a, b) if self.now < t < end)]
            if self._valid() and self.last_write is not None:
                expiry = self.last_write + pd.Timedelta(seconds=self.timeout_s)
                if self.now <= expiry < end:
                    events.append(expiry + pd.Timedelta(microseconds=1))
            piece_end, fills = min(events), False
            power = self.power_kw
            if power > 0:
                to_full_h = (self.car.capacity_kwh - self.car.energy_kwh) / (power * self.car.efficiency)
                full_at = self.now + pd.Timedelta(hours=to_full_h)
                if full_at < piece_end:
                    piece_end, fills = full_at, True
            energy = power * (piece_end - self.now).total_seconds() / 3600.0
            self.car.energy_kwh = (self.car.capacity_kwh if fills else
                                   min(self.car.energy_kwh + energy * self.car.efficiency, self.car.capacity_kwh))
            self.meter_kwh += energy
            delivered += energy
            self.now = piece_end
        self._publish_state()
        return delivered

    async def follow(self, clock: Clock, until: pd.Timestamp, step_real_s: float = 0.02) -> None:
        """Keep :attr:`now` up with ``clock`` until ``until`` (UTC), playing the time that passed every
        ``step_real_s`` real seconds (for a run on a clock, like :func:`~dwars.runtime.sim_process.serve_on_clock`
        for the inverter)."""
        while self.now < until:
            await asyncio.sleep(step_real_s)
            target = min(clock.now(), until)
            if target > self.now:
                self.advance((target - self.now).total_seconds() / 60.0)

    # -- the registers ----------------------------------------------------------------------------

    def value(self, name: str) -> float:
        """A register's value in its unit (after the server has answered once)."""
        if self._registers is None:
            raise RuntimeError("the server has not answered a request yet")
        reg = self.regmap.registers[name]
        offset = reg.address - self._start
        return reg.decode(self._registers[offset: offset + reg.words])

    def _put_words(self, address: int, words: list[int]) -> None:
        if self._registers is not None:
            offset = address - self._start
            self._registers[offset: offset + len(words)] = words

    def _put(self, name: str, value: float) -> None:
        reg = self.regmap.registers[name]
        self._put_words(reg.address, reg.encode(value))

    def _initial(self) -> dict[str, float]:
        return {"availability": 1, "safe_current": self.safe_current_a, "charge_phases": self.phases,
                "applied_max_current": self.safe_current_a, "mode3_state": state_words(self.state)[0]}

    def _publish_state(self) -> None:
        if self._registers is None:
            return
        self._put_words(self.regmap.registers["mode3_state"].address, state_words(self.state))
        self._put("real_power", self.power_kw)
        self._put("energy_delivered", self.meter_kwh)
        self._put("applied_max_current", self.offered_a())
        left_s = self.timeout_s - (self.now - self.last_write).total_seconds() if self._valid() else 0.0
        self._put("valid_time", max(round(left_s), 0) if self.last_write is not None else 0)
        self._put("setpoint_accounted", 1 if self._valid() else 0)
        self._put("safe_current", self.safe_current_a)
        self._put("charge_phases", self.phases)

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], values: list[int] | list[bool] | None) -> ExcCodes | None:
        self._registers = registers
        if values is None:
            self._publish_state()
            return None
        written = map_write(self._by_address, address, [int(v) for v in values])
        if isinstance(written, ExcCodes):
            return written
        self.writes += 1
        if "max_current" in written:  # every write restarts the validity time, as Alfen's does
            self.written_a, self.last_write = written["max_current"], self.now
        return None

    async def start(self) -> int:
        """Serve on ``host``; returns the port."""
        simdata = map_simdata(self.regmap.registers, self._initial(), self.regmap.max_read_gap)
        device = SimDevice(self.regmap.unit_id, simdata, action=self._action)
        self._server, self._task, self.port = await serve(device, self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
        if self._task is not None:
            self._task.cancel()
