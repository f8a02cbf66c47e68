"""EV charger register maps as data: the inverter map format (:mod:`dwars.runtime.regmap`: registers, types, scales,
ranges, checks, expressions) with ``[device] kind = "charger"`` and what a charger reads and is told instead of
battery modes. The shipped map is ``dwars/runtime/maps/generic_evse.toml`` (documented in the folder's README)::

    [device]
    kind = "charger"
    name = "Alfen NG9xx socket 1"
    unit_id = 1
    timeout_s = 60          # the charger falls back to its own safe current when no write came for this long
    min_current_a = 6       # IEC 61851-1: the least current a car may be offered; less means stop (0 A)
    current_step_a = 1      # currents are whole multiples of this, rounded down

    [registers]             # exactly as in an inverter map; float32 and float64 are common in chargers
    max_current = { address = 1210, type = "float32", unit = "A", access = "rw", min = 0, max = 32 }

    [reading]               # register names; the unit must be the one in the key's name
    plugged = { register = "mode3_state", one_of = [0x4231, 0x4232] }   # a car is connected when the value is one
    charging_kw = "real_power"          # unit "kW" (scale = 0.001 for a register in W)
    energy_kwh = "energy_delivered"     # the meter's total, kWh; or session_kwh = a session counter
    current_a = "applied_max_current"   # the current the charger offers the car now, A per phase
    phases = "charge_phases"            # optional: the phases it charges on
    safe_current_a = "safe_current"     # optional: its own fallback current, A

    [commands.set_current]  # variables: current_a (A per phase, a whole step, >= min_current_a), phases
    max_current = "current_a"
    [commands.stop]         # constants (phases may be used)
    max_current = 0
    [commands.fail_safe]    # variables: safe_current_a (read from the charger), phases
    max_current = "safe_current_a"

The allow-list is every register a command writes; loading reports every problem at once, each naming the file, the
key and the value, as for inverter maps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dwars.runtime.regmap import (
    Check,
    CommandError,
    Expression,
    MapError,
    Register,
    _Parser,
    check_kind,
    load_toml,
    read_map_text,
)

#: What each command's expressions may use.
COMMANDS: dict[str, tuple[str, ...]] = {"set_current": ("current_a", "phases"), "stop": ("phases",),
                                        "fail_safe": ("safe_current_a", "phases")}
#: Reading keys and the unit their register must have ("" = any).
READING_UNITS: dict[str, str] = {"charging_kw": "kW", "current_a": "A", "session_kwh": "kWh", "energy_kwh": "kWh",
                                 "phases": "", "safe_current_a": "A"}
REQUIRED_READING = ("plugged", "charging_kw", "current_a")


@dataclass(frozen=True)
class PluggedRule:
    """A car is connected when ``register`` (its value in its unit) is one of ``one_of``."""

    register: str
    one_of: tuple[float, ...]

    def __call__(self, value: float) -> bool:
        return any(abs(value - v) < 1e-9 for v in self.one_of)


@dataclass(frozen=True)
class ChargerMap:
    """A loaded, validated charger map (see the module text). Build one with :func:`load_charger_map`.

    Attributes
    ----------
    reading : reading key (:data:`READING_UNITS`) -> register name; ``plugged`` is :attr:`plugged`.
    commands : ``set_current``, ``stop``, ``fail_safe`` -> (register, expression) in write order.
    timeout_s : the charger's communication timeout (s): dwars rewrites a command before half of it has passed.
    min_current_a : the least current it may offer a car (IEC 61851-1: 6 A); a lower command stops charging.
    current_step_a : currents are rounded down to a whole number of these.
    """

    source: str
    name: str
    unit_id: int
    registers: Mapping[str, Register]
    reading: Mapping[str, str]
    plugged: PluggedRule
    commands: Mapping[str, tuple[tuple[str, Expression], ...]]
    timeout_s: float
    min_current_a: float = 6.0
    current_step_a: float = 1.0
    checks: tuple[Check, ...] = ()
    max_read_gap: int = 0
    commit: tuple[str, ...] = ()

    @property
    def writable(self) -> frozenset[str]:
        """The allow-list: every register some command writes (each one ``rw``, checked on load)."""
        return frozenset(name for writes in self.commands.values() for name, _ in writes)

    @property
    def max_current_a(self) -> float:
        """The highest current ``set_current`` may write: the smallest ``max`` of the registers it writes with
        ``current_a`` (infinity when none bounds it)."""
        bounds = [self.registers[name].maximum for name, e in self.commands["set_current"] if "current_a" in e.names]
        return min((b for b in bounds if b is not None), default=math.inf)

    def command(self, command: str, variables: Mapping[str, float]) -> dict[str, float]:
        """The values (in each register's unit, in write order) of ``command``, range-checked.

        Raises
        ------
        CommandError
            a value outside a register's ``min``..``max``, or an expression that cannot be computed (a variable
            that is unknown or not a number); nothing has been written then.
        """
        values: dict[str, float] = {}
        for name, expression in self.commands[command]:
            try:
                value = expression(variables)
            except ValueError as err:
                raise CommandError(f"{self.source}: commands.{command}.{name}: {err}") from None
            if not math.isfinite(value):
                raise CommandError(f"{self.source}: commands.{command}.{name} = {expression.text} is {value} "
                                   f"(with {', '.join(f'{k} = {v:g}' for k, v in variables.items())})")
            self.registers[name].check_range(value)
            values[name] = value
        return values


def load_charger_map(name_or_path: str | Path) -> ChargerMap:
    """A charger map by built-in name (``"generic_evse"``) or from a TOML file; :class:`MapError` lists every
    problem."""
    return parse_charger_map(*read_map_text(name_or_path, kind="charger"))


def parse_charger_map(text: str, source: str = "map") -> ChargerMap:
    """A charger map from TOML text (see the module text); :class:`MapError` lists every problem."""
    raw = load_toml(text, source)
    check_kind(raw, "charger", source)
    return _ChargerParser(source).parse_charger(raw)


class _ChargerParser(_Parser):
    """The inverter map parser's checks, for a charger's ``[reading]`` and ``[commands]``."""

    def parse_charger(self, raw: Mapping[str, Any]) -> ChargerMap:
        self.unknown(raw, "", ("device", "registers", "reading", "commands"))
        device = self.table(raw, "device")
        name, unit_id, word_order, max_read_gap = self.header(device, "charger",
                                                              ("timeout_s", "min_current_a", "current_step_a"))
        timeout_s = self.positive(device, "timeout_s", required=True)
        min_current_a = self.positive(device, "min_current_a", default=6.0, allow_zero=True)
        step_a = self.positive(device, "current_step_a", default=1.0)
        registers = self.registers(self.table(raw, "registers"), word_order)
        checks = self.checks(device.get("check", []), registers)
        reading, plugged = self.charger_reading(self.table(raw, "reading"), registers)
        commands = self.commands(self.table(raw, "commands"), registers, reading)
        commit = self.commit(device.get("commit", []), registers, commands)
        if self.problems:
            raise MapError(self.problems, self.source)
        assert unit_id is not None and max_read_gap is not None and plugged is not None and timeout_s is not None
        return ChargerMap(self.source, name, unit_id, registers, reading, plugged, commands, timeout_s,
                          min_current_a or 0.0, step_a or 1.0, checks, max_read_gap, commit)

    def positive(self, table: Mapping[str, Any], key: str, default: float | None = None, required: bool = False,
                 allow_zero: bool = False) -> float | None:
        if required and key not in table:
            self.problems.append(f"device.{key}: missing (a number > 0)")
            return None
        value = self.number(table, key, "device.")
        if value is None:
            return default
        if value < 0 or (value == 0 and not allow_zero):
            self.bad(f"device.{key}", table[key], "must be >= 0" if allow_zero else "must be > 0")
            return default
        return value

    def charger_reading(self, table: Mapping[str, Any],
                        registers: Mapping[str, Register]) -> tuple[dict[str, str], PluggedRule | None]:
        self.unknown(table, "reading.", ("plugged", *READING_UNITS))
        out: dict[str, str] = {}
        for key, unit in READING_UNITS.items():
            name = table.get(key)
            if name is None:
                if key in REQUIRED_READING:
                    self.problems.append(f"reading.{key}: missing (the name of the register that gives it)")
                continue
            if not isinstance(name, str) or name not in registers:
                self.bad(f"reading.{key}", name, "must name a register of this map")
            elif unit and registers[name].unit != unit:
                self.bad(f"reading.{key}", name, f'registers.{name}.unit is "{registers[name].unit}", must be '
                         f'"{unit}" (a scale turns W into kW: 0.001)')
            else:
                out[key] = name
        if ("session_kwh" in table) == ("energy_kwh" in table):
            self.problems.append("reading.session_kwh or reading.energy_kwh: give one of them (a session counter, "
                                 "or the meter's total from which dwars counts each session)")
        return out, self.plugged_rule(table.get("plugged"), registers)

    def plugged_rule(self, spec: Any, registers: Mapping[str, Register]) -> PluggedRule | None:
        if spec is None:
            self.problems.append("reading.plugged: missing (a table {register, one_of}: the values that mean a car "
                                 "is connected)")
            return None
        if not isinstance(spec, Mapping):
            self.bad("reading.plugged", spec, "must be a table {register = ..., one_of = [...]}")
            return None
        self.unknown(spec, "reading.plugged.", ("register", "one_of"))
        register, one_of = spec.get("register"), spec.get("one_of")
        ok = True
        if register not in registers:
            self.bad("reading.plugged.register", register, "must name a register of this map")
            ok = False
        if (not isinstance(one_of, list) or not one_of
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in one_of)):
            self.bad("reading.plugged.one_of", one_of, "must be a list of numbers")
            ok = False
        return PluggedRule(str(register), tuple(float(v) for v in one_of)) if ok else None  # type: ignore[union-attr]

    def commands(self, table: Mapping[str, Any], registers: Mapping[str, Register],
                 reading: Mapping[str, str]) -> dict[str, tuple[tuple[str, Expression], ...]]:
        self.unknown(table, "commands.", tuple(COMMANDS))
        out: dict[str, tuple[tuple[str, Expression], ...]] = {}
        for key, variables in COMMANDS.items():
            writes = table.get(key)
            if not isinstance(writes, Mapping) or not writes:
                self.problems.append(f"commands.{key}: missing (a table of register = value or expression)")
                continue
            out[key] = self.writes(writes, f"commands.{key}", registers, variables)
            for name, expression in out[key]:
                if "safe_current_a" in expression.names and "safe_current_a" not in reading:
                    self.bad(f"commands.{key}.{name}", expression.text, "uses safe_current_a, which needs "
                             "reading.safe_current_a")
        if "set_current" in out and not any("current_a" in e.names for _, e in out["set_current"]):
            self.problems.append("commands.set_current: no register is written with current_a")
        return out
