"""Inverter register maps as data: a TOML file says which registers a device has and what to write for each battery
mode, so a new inverter model is a file, not code.

A map file (the shipped ones are in ``dwars/runtime/maps/``, documented in its README)::

    [device]
    name = "Huawei SUN2000 + LUNA2000"
    unit_id = 1                     # Modbus unit (slave) id, 0..255
    word_order = "big"              # 32-bit registers: "big" = high word first (default), "little"
    max_read_gap = 0                # unused registers a single read may span (0: only adjacent ones)
    sunspec_model = 124             # optional: addresses are offsets into this SunSpec model, found at connect
    commit = ["forcible_command"]   # optional: written last, and again whenever another register of a mode was

    [[device.check]]                # optional, any number: what connect() verifies before anything is written
    register = "working_mode"
    one_of = [2]
    hint = "set the battery working mode to Maximise self-consumption"

    [registers]                     # name = {address, type, unit, access, scale | scale_factor, min, max, word_order}
    soc = { address = 37760, type = "uint16", scale = 0.1, unit = "%", access = "r" }
    forcible_command = { address = 47100, type = "uint16", access = "rw", min = 0, max = 2 }

    [reading]                       # which registers give the battery's state (values in the register's unit)
    soc_pct = "soc"
    max_charge_w = "max_charge_power"
    reserve_pct = "backup_soc"
    grid_voltage_l1_v = "phase_a_voltage"   # optional: the grid voltage per phase, V (l2 and l3 after l1)

    [modes.import]                  # msc, hold, import, export: register = constant or expression, written in order
    forcible_charge_power = "power_w"
    forcible_period = "ceil(revert_s / 60)"
    forcible_command = 1

Types are ``uint16``, ``int16``, ``uint32``, ``int32`` and the IEEE 754 ``float32``, ``float64`` (2 and 4 words;
chargers such as Alfen's use them). A register's value in its unit is ``raw x scale`` or, with
``scale_factor`` (the SunSpec way), ``raw x 10^sf`` where sf is the int16 value of the named register. ``min``/``max``
bound what dwars may write (in the register's unit). Only ``rw`` registers that a mode writes are ever written: that
set is the allow-list.

Expressions are a tiny arithmetic language, parsed into a checked tree and evaluated without ``eval``: numbers, the
variables ``power_w`` (the commanded AC power in W, 0 for MSC and Hold), ``revert_s`` (the revert time in s) and
``max_charge_w`` (from the reading), ``+ - * /``, parentheses, and the functions ``min max ceil floor round abs``.

The grid voltage (optional, for ``[voltage] source = "inverter"``): ``grid_voltage_l1_v``, ``grid_voltage_l2_v`` and
``grid_voltage_l3_v`` in ``[reading]`` name the registers (unit ``V``) of the phases the inverter reports: L1 alone
(single phase) or L1 to L3, in order. A key may name a list of registers instead, tried in order: the first whose
SunSpec model the inverter has. A map without them still loads; only reading the voltage is refused.

In a SunSpec map a register may live in another model than ``sunspec_model``: ``model = 103`` (or a list of
alternatives, ``[101, 102, 103]``: the first the inverter has) makes its ``address`` an offset into that model, found
in the same walk of the SunSpec chain. Its scale factor must be in the same model.

``[device] kind`` says what the map drives: ``"inverter"`` (the default; this format) or ``"charger"`` (an EV
charger: :mod:`dwars.runtime.chargermap`, which reuses this module's registers, expressions and checks).
:func:`load_map` loads inverter maps only.

Loading checks everything and reports every problem at once, each naming the file, the key and the value::

    huawei_sun2000.toml: registers.soc.type = "uint8": must be one of uint16, int16, uint32, int32, float32, float64
"""

from __future__ import annotations

import ast
import difflib
import itertools
import math
import struct
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from dwars.config import unknown_key
from dwars.env.modes import Decision, Mode
from dwars.errors import DwarsError

#: Register types: (words, signed).
TYPES: dict[str, tuple[int, bool]] = {"uint16": (1, False), "int16": (1, True), "uint32": (2, False),
                                      "int32": (2, True)}
#: IEEE 754 register types: words, and the struct format of their big-endian bytes.
FLOAT_TYPES: dict[str, tuple[int, str]] = {"float32": (2, ">f"), "float64": (4, ">d")}
REGISTER_TYPES: tuple[str, ...] = (*TYPES, *FLOAT_TYPES)
#: What ``[device] kind`` may say.
KINDS = ("inverter", "charger")
_KIND_KEYS = {"inverter": "runtime.inverter", "charger": "ev.charger_map"}  # where the config names each kind
#: What an expression may refer to.
VARIABLES = ("power_w", "revert_s", "max_charge_w")
FUNCTIONS: dict[str, Callable[..., float]] = {"min": min, "max": max, "ceil": math.ceil, "floor": math.floor,
                                              "round": round, "abs": abs}
MODE_KEYS: dict[str, Mode] = {"msc": Mode.MSC, "hold": Mode.HOLD, "import": Mode.IMPORT, "export": Mode.EXPORT}
READING_KEYS = ("soc_pct", "max_charge_w", "reserve_pct")
#: Optional ``[reading]`` keys: the grid voltage of phase L1, L2, L3 (V), in this order.
VOLTAGE_KEYS = ("grid_voltage_l1_v", "grid_voltage_l2_v", "grid_voltage_l3_v")
MAX_READ_WORDS = 120  # Modbus allows 125 per read; some loggers fewer
_MAX_EXPRESSION_CHARS = 200


class MapError(DwarsError, ValueError):
    """A register map file is invalid; ``problems`` lists each problem (file: key = value: what is allowed)."""

    def __init__(self, problems: list[str], source: str) -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__("\n".join(f"{source}: {p}" for p in self.problems))


class CommandError(DwarsError, ValueError):
    """A command the map does not allow: a value outside a register's range, or a power above the maximum."""


@dataclass(frozen=True)
class Expression:
    """A checked arithmetic expression over :data:`VARIABLES` (see the module text); a constant is one too."""

    text: str
    tree: ast.expr

    @classmethod
    def parse(cls, value: Any, variables: tuple[str, ...] = VARIABLES) -> Expression:
        """An expression from a TOML value (a number or a string) over ``variables``; ValueError says what is
        wrong."""
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError("must be a number or an expression in quotes")
        text = repr(value) if not isinstance(value, str) else value.strip()
        if len(text) > _MAX_EXPRESSION_CHARS:
            raise ValueError(f"longer than {_MAX_EXPRESSION_CHARS} characters")
        try:
            tree = ast.parse(text, mode="eval").body
        except SyntaxError:
            raise ValueError(f"is not an expression (numbers, {', '.join(variables)}, + - * / and "
                             f"{', '.join(FUNCTIONS)})") from None
        _check(tree, variables)
        return cls(text, tree)

    @property
    def names(self) -> frozenset[str]:
        """The variables it uses (:meth:`parse` let only known ones through)."""
        return frozenset(n.id for n in ast.walk(self.tree) if isinstance(n, ast.Name) and n.id not in FUNCTIONS)

    def __call__(self, variables: Mapping[str, float]) -> float:
        """The value for these variables (ValueError for a division by zero or a missing variable)."""
        return float(_evaluate(self.tree, variables, self.text))


def _check(node: ast.expr, variables: tuple[str, ...] = VARIABLES) -> None:
    """Refuse every node but numbers, known variables, + - * /, unary +/- and calls of the known functions."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ValueError(f"{node.value!r} is not a number")
    elif isinstance(node, ast.Name):
        if node.id not in variables:
            raise ValueError(f"unknown name {node.id!r}; known: {', '.join(variables)}")
    elif isinstance(node, ast.BinOp):
        if not isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
            raise ValueError("only + - * / are allowed")
        _check(node.left, variables)
        _check(node.right, variables)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, ast.UAdd | ast.USub):
            raise ValueError("only unary + and - are allowed")
        _check(node.operand, variables)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords or not node.args:
            raise ValueError(f"only calls of {', '.join(FUNCTIONS)} with plain arguments are allowed")
        for arg in node.args:
            _check(arg, variables)
    else:
        raise ValueError(f"{type(node).__name__} is not allowed")


def _evaluate(node: ast.expr, variables: Mapping[str, float], text: str) -> float:
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        if node.id not in variables:
            raise ValueError(f"{text}: {node.id} is not known here")
        return float(variables[node.id])
    if isinstance(node, ast.UnaryOp):
        value = _evaluate(node.operand, variables, text)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left, variables, text), _evaluate(node.right, variables, text)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if right == 0:
            raise ValueError(f"{text}: division by zero")
        return left / right
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)  # _check allowed nothing else
    return float(FUNCTIONS[node.func.id](*(_evaluate(a, variables, text) for a in node.args)))


@dataclass(frozen=True)
class Register:
    """One register of a map: where it is, how its words become a value in ``unit``, and what dwars may write.

    Attributes
    ----------
    address : holding register (for a SunSpec map: offset from the model's first data register).
    type : one of :data:`REGISTER_TYPES` (integers, or IEEE 754 floats).
    scale : value = raw x scale (x 10^sf with ``scale_factor``).
    scale_factor : name of the int16 register holding the power-of-ten exponent sf, or None.
    minimum, maximum : what dwars may write, in ``unit`` (writable registers only).
    model : SunSpec models (alternatives, the first the device has) whose first data register ``address`` counts
        from; empty: the map's ``sunspec_model`` (or absolute addresses in a map without one).
    """

    name: str
    address: int
    type: str = "uint16"
    unit: str = ""
    access: str = "r"
    scale: float = 1.0
    scale_factor: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    word_order: str = "big"
    model: tuple[int, ...] = ()

    @property
    def words(self) -> int:
        return TYPES[self.type][0] if self.type in TYPES else FLOAT_TYPES[self.type][0]

    @property
    def is_float(self) -> bool:
        return self.type in FLOAT_TYPES

    @property
    def writable(self) -> bool:
        return self.access == "rw"

    def step(self, sf: int = 0) -> float:
        """The value of one raw count, in ``unit``."""
        return self.scale * 10.0 ** sf

    def decode(self, words: list[int], sf: int = 0) -> float:
        """The value (in ``unit``) of this register's words."""
        return self.raw(words) * self.step(sf)

    def raw(self, words: list[int]) -> float:
        """The register's number: its integer (signed for int types), or for a float type its IEEE 754 value
        (NaN where a device marks a value unavailable)."""
        if len(words) != self.words:
            raise ValueError(f"{self.name}: {len(words)} word(s), expected {self.words}")
        ordered = list(words) if self.word_order == "big" else list(reversed(words))
        value = 0
        for w in ordered:
            value = value << 16 | (int(w) & 0xFFFF)
        bits = 16 * self.words
        if self.is_float:
            return float(struct.unpack(FLOAT_TYPES[self.type][1], value.to_bytes(bits // 8, "big"))[0])
        if TYPES[self.type][1] and value >= 1 << (bits - 1):
            value -= 1 << bits
        return value

    def unavailable(self, words: list[int]) -> bool:
        """The words mark the value "not implemented" (SunSpec; Huawei's "invalid" is the same for unsigned types):
        all bits set for an unsigned type, the lowest number for a signed one, NaN for a float."""
        raw = self.raw(words)
        if self.is_float:
            return math.isnan(raw)
        bits = 16 * self.words
        return raw == (-(1 << (bits - 1)) if TYPES[self.type][1] else (1 << bits) - 1)

    def encode(self, value: float, sf: int = 0) -> list[int]:
        """The words that carry ``value`` (in ``unit``); :class:`CommandError` when it does not fit the type."""
        bits = 16 * self.words
        shown = f"{self.name} = {value:g} {self.unit}".rstrip() + f": does not fit {self.type}"
        if not math.isfinite(value):
            raise CommandError(shown)
        if self.is_float:
            try:
                packed = struct.pack(FLOAT_TYPES[self.type][1], value / self.scale * 10.0 ** -sf)
            except OverflowError:
                raise CommandError(shown) from None
            raw = int.from_bytes(packed, "big")
        else:
            raw = round(value / self.scale * 10.0 ** -sf)
            low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if TYPES[self.type][1] else (0, (1 << bits) - 1)
            if not low <= raw <= high:
                raise CommandError(shown)
            raw &= (1 << bits) - 1
        words = [(raw >> (16 * k)) & 0xFFFF for k in reversed(range(self.words))]
        return words if self.word_order == "big" else list(reversed(words))

    def check_range(self, value: float) -> None:
        """:class:`CommandError` unless ``minimum <= value <= maximum``."""
        tolerance = 1e-9 * max(1.0, abs(value))
        if ((self.minimum is not None and value < self.minimum - tolerance)
                or (self.maximum is not None and value > self.maximum + tolerance)):
            unit = f" {self.unit}" if self.unit else ""
            raise CommandError(f"{self.name} = {value:g}{unit}: must be {self.minimum:g}..{self.maximum:g}{unit}")


@dataclass(frozen=True)
class Check:
    """A register whose value (in its unit) must be one of ``one_of`` before dwars takes control."""

    register: str
    one_of: tuple[float, ...]
    hint: str = ""


@dataclass(frozen=True)
class RegisterMap:
    """A loaded, validated map (see the module text). Build one with :func:`load_map`.

    Attributes
    ----------
    source : the file name, for messages.
    modes : per mode, (register, expression) in the order they are written.
    reading : ``soc_pct``, ``max_charge_w``, ``reserve_pct`` -> register name.
    grid_voltage : per phase the map names (L1, or L1 to L3), the registers that give its voltage in V, to try in
        order (empty: the map has no voltage).
    """

    source: str
    name: str
    unit_id: int
    registers: Mapping[str, Register]
    modes: Mapping[Mode, tuple[tuple[str, Expression], ...]]
    reading: Mapping[str, str]
    checks: tuple[Check, ...] = ()
    sunspec_model: int | None = None
    max_read_gap: int = 0
    commit: tuple[str, ...] = ()
    grid_voltage: tuple[tuple[str, ...], ...] = ()

    @property
    def writable(self) -> frozenset[str]:
        """The allow-list: every register some mode writes (each one ``rw``, checked on load)."""
        return frozenset(name for writes in self.modes.values() for name, _ in writes)

    def command(self, decision: Decision, revert_s: float, max_charge_w: float) -> dict[str, float]:
        """The values (in each register's unit, in write order) that carry out ``decision``, range-checked.

        Raises
        ------
        CommandError
            for a non-positive max charge power, an Import/Export power above it, or a value outside a register's
            ``min``..``max`` (nothing has been written then).
        """
        if not max_charge_w > 0:
            raise CommandError(f"{self.reading['max_charge_w']} = {max_charge_w:g} W: must be > 0")
        power_w = decision.power_kw * 1000.0 if decision.mode in (Mode.IMPORT, Mode.EXPORT) else 0.0
        if not 0.0 <= power_w <= max_charge_w * (1 + 1e-9):
            raise CommandError(f"power_kw = {decision.power_kw}: above {self.reading['max_charge_w']} "
                               f"({max_charge_w / 1000:.2f} kW)" if power_w > 0 else
                               f"power_kw = {decision.power_kw}: must be >= 0")
        variables = {"power_w": power_w, "revert_s": float(revert_s), "max_charge_w": float(max_charge_w)}
        values: dict[str, float] = {}
        for name, expression in self.modes[decision.mode]:
            try:
                value = expression(variables)
            except ValueError as err:
                raise CommandError(f"{self.source}: modes.{decision.mode.name.lower()}.{name}: {err}") from None
            reg = self.registers[name]
            reg.check_range(value)
            # Within the check's rounding tolerance: land on the limit itself (what a device accepts).
            if reg.minimum is not None:
                value = max(value, reg.minimum)
            if reg.maximum is not None:
                value = min(value, reg.maximum)
            values[name] = value
        return values


def map_kind(text: str) -> str | None:
    """What a map's TOML text says under ``[device] kind`` (``"inverter"`` when it says nothing; None when the text
    is not a TOML document with a ``[device]`` table)."""
    try:
        device = tomllib.loads(text).get("device")
    except tomllib.TOMLDecodeError:
        return None
    return str(device.get("kind", "inverter")) if isinstance(device, Mapping) else None


def builtin_maps(kind: str = "inverter") -> list[str]:
    """Names of the maps of ``kind`` shipped in ``dwars/runtime/maps/`` (without ``.toml``)."""
    folder = resources.files("dwars.runtime") / "maps"
    return sorted(p.name[:-5] for p in folder.iterdir()
                  if p.name.endswith(".toml") and map_kind(p.read_text(encoding="utf-8")) == kind)


def read_map_text(name_or_path: str | Path, kind: str = "inverter") -> tuple[str, str]:
    """(TOML text, file name for messages) of a map of ``kind``: a built-in name or the path of a file."""
    path = Path(name_or_path)
    if not path.suffix and path.name == str(name_or_path):  # a bare name: a shipped map
        if path.name not in builtin_maps(kind):
            raise MapError([f"no built-in {'' if kind == 'inverter' else kind + ' '}map {path.name!r}; built in: "
                            f"{', '.join(builtin_maps(kind))}, or give the path of a .toml file"], str(name_or_path))
        text = (resources.files("dwars.runtime") / "maps" / f"{path.name}.toml").read_text(encoding="utf-8")
        return text, f"{path.name}.toml"
    try:
        return path.read_text(encoding="utf-8"), path.name
    except OSError as err:
        raise MapError([f"cannot read the map: {err.strerror}"], str(path)) from None


def load_map(name_or_path: str | Path) -> RegisterMap:
    """A map by built-in name (``"huawei_sun2000"``) or from a TOML file; :class:`MapError` lists every problem."""
    return parse_map(*read_map_text(name_or_path))


def load_toml(text: str, source: str) -> dict[str, Any]:
    """A map file's TOML; :class:`MapError` when it is not valid TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise MapError([f"not valid TOML: {err}"], source) from None


def check_kind(raw: Mapping[str, Any], kind: str, source: str) -> None:
    """:class:`MapError` for a map of another kind than ``kind`` (alone: its other keys would only add noise)."""
    device = raw.get("device")
    if not isinstance(device, Mapping):
        return  # the parser says what is wrong with it
    found = device.get("kind", "inverter")
    if "kind" not in device and kind != "inverter":
        raise MapError([f'device.kind: missing (a {kind} map says kind = "{kind}")'], source)
    if found not in KINDS:
        raise MapError([f"device.kind = {_show(found)}: must be one of {', '.join(KINDS)}"], source)
    if found != kind:
        raise MapError([f"device.kind = {_show(found)}: {'an' if kind[0] in 'aeiou' else 'a'} {kind} map is "
                        f"needed here; {found} maps belong in {_KIND_KEYS[found]}"], source)


def parse_map(text: str, source: str = "map") -> RegisterMap:
    """A map from TOML text (see the module text); :class:`MapError` lists every problem."""
    raw = load_toml(text, source)
    check_kind(raw, "inverter", source)
    return _Parser(source).parse(raw)


def _show(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


class _Parser:
    """Collects every problem of one file instead of stopping at the first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def bad(self, key: str, value: Any, why: str) -> None:
        self.problems.append(f"{key} = {_show(value)}: {why}")

    def unknown(self, table: Mapping[str, Any], prefix: str, allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                self.problems.append(unknown_key(prefix, key, allowed))

    def table(self, raw: Mapping[str, Any], key: str, prefix: str = "") -> Mapping[str, Any]:
        value = raw.get(key, {})
        if not isinstance(value, Mapping):
            self.bad(prefix + key, value, "must be a table")
            return {}
        return value

    def integer(self, raw: Mapping[str, Any], key: str, prefix: str, low: int, high: int,
                default: int | None = None) -> int | None:
        value = raw.get(key, default)
        if value is None:
            self.problems.append(f"{prefix}{key}: missing (an integer {low}..{high})")
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.bad(prefix + key, value, f"must be an integer {low}..{high}")
            return None
        return value

    def number(self, raw: Mapping[str, Any], key: str, prefix: str) -> float | None:
        value = raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.bad(prefix + key, value, "must be a number")
            return None
        return float(value)

    def header(self, device: Mapping[str, Any], kind: str, keys: tuple[str, ...]) -> tuple[str, int | None, str,
                                                                                       int | None]:
        """The ``[device]`` keys every map has (name, unit_id, word_order, max_read_gap, kind) besides ``keys``:
        (name, unit id, word order, max read gap)."""
        self.unknown(device, "device.", ("kind", "name", "unit_id", "word_order", "max_read_gap", "commit", "check",
                                         *keys))
        name = device.get("name", self.source)
        if not isinstance(name, str) or not name.strip():
            self.bad("device.name", name, "must be a text")
        unit_id = self.integer(device, "unit_id", "device.", 0, 255)
        word_order = device.get("word_order", "big")
        if word_order not in ("big", "little"):
            self.bad("device.word_order", word_order, 'must be "big" (high word first) or "little"')
            word_order = "big"
        max_read_gap = self.integer(device, "max_read_gap", "device.", 0, MAX_READ_WORDS, default=0)
        return str(name), unit_id, word_order, max_read_gap

    def parse(self, raw: Mapping[str, Any]) -> RegisterMap:
        self.unknown(raw, "", ("device", "registers", "reading", "modes"))
        device = self.table(raw, "device")
        name, unit_id, word_order, max_read_gap = self.header(device, "inverter", ("sunspec_model",))
        sunspec_model = device.get("sunspec_model")
        if sunspec_model is not None:
            sunspec_model = self.integer(device, "sunspec_model", "device.", 1, 0xFFFE)
        registers = self.registers(self.table(raw, "registers"), word_order, sunspec_model is not None)
        checks = self.checks(device.get("check", []), registers)
        reading = self.reading(self.table(raw, "reading"), registers)
        grid_voltage = self.grid_voltage(self.table(raw, "reading"), registers)
        modes = self.modes(self.table(raw, "modes"), registers)
        commit = self.commit(device.get("commit", []), registers, modes)
        if self.problems:
            raise MapError(self.problems, self.source)
        assert unit_id is not None and max_read_gap is not None
        return RegisterMap(self.source, name, unit_id, registers, modes, reading, checks, sunspec_model,
                           max_read_gap, commit, grid_voltage)

    def registers(self, table: Mapping[str, Any], word_order: str, sunspec: bool = False) -> dict[str, Register]:
        """``[registers]``; ``sunspec``: the map has a ``sunspec_model``, so a register may name its own ``model``."""
        if not table:
            self.problems.append("registers: missing (a table of name = {address, type, ...})")
        out: dict[str, Register] = {}
        for name, spec in table.items():
            prefix = f"registers.{name}."
            if not isinstance(spec, Mapping):
                self.bad(f"registers.{name}", spec, "must be a table {address = ..., type = ..., ...}")
                continue
            self.unknown(spec, prefix, ("address", "type", "unit", "access", "scale", "scale_factor", "min", "max",
                                        "word_order", *(("model",) if sunspec else ())))
            address = self.integer(spec, "address", prefix, 0, 0xFFFF)
            kind = spec.get("type", "uint16")
            if kind not in REGISTER_TYPES:
                self.bad(prefix + "type", kind, f"must be one of {', '.join(REGISTER_TYPES)}")
                kind = "uint16"
            access = spec.get("access", "r")
            if access not in ("r", "rw"):
                self.bad(prefix + "access", access, 'must be "r" (read only) or "rw"')
                access = "r"
            unit = spec.get("unit", "")
            if not isinstance(unit, str):
                self.bad(prefix + "unit", unit, "must be a text")
                unit = ""
            scale = self.number(spec, "scale", prefix)
            if scale is not None and scale == 0:
                self.bad(prefix + "scale", scale, "must not be 0")
            scale_factor = spec.get("scale_factor")
            if scale_factor is not None and scale is not None:
                self.problems.append(f"{prefix}scale and {prefix}scale_factor: give one of them, not both")
            if scale_factor is not None and (not isinstance(scale_factor, str) or scale_factor not in table):
                self.bad(prefix + "scale_factor", scale_factor, "must name another register of this map")
                scale_factor = None
            low, high = self.number(spec, "min", prefix), self.number(spec, "max", prefix)
            if access == "rw" and (low is None or high is None):
                self.problems.append(f"{prefix}min and {prefix}max: required for a writable register")
            if low is not None and high is not None and low > high:
                self.bad(prefix + "min", low, f"must be <= max ({high:g})")
            order = spec.get("word_order", word_order)
            if order not in ("big", "little"):
                self.bad(prefix + "word_order", order, 'must be "big" or "little"')
                order = word_order
            model = self.model(spec.get("model"), prefix)
            if address is None:
                continue
            out[name] = Register(name, address, kind, unit, access, scale if scale else 1.0, scale_factor, low,
                                 high, order, model)
        for name, reg in out.items():  # a scale factor is one signed word, in the same SunSpec model
            if reg.scale_factor in out and out[reg.scale_factor].type != "int16":
                self.bad(f"registers.{reg.scale_factor}.type", out[reg.scale_factor].type,
                         f"must be int16 (it is the scale factor of {name})")
            if reg.scale_factor in out and out[reg.scale_factor].model != reg.model:
                self.bad(f"registers.{reg.scale_factor}.model", list(out[reg.scale_factor].model),
                         f"must be the model of registers.{name} ({list(reg.model)}): a scale factor is read from "
                         "the same model")
        # Registers overlap only within one address space: the map's own, or one SunSpec model's.
        spans = sorted((reg.model, reg.address, reg.address + reg.words, name) for name, reg in out.items())
        for (model_a, _, end, first), (model_b, start, _, second) in itertools.pairwise(spans):
            if model_a == model_b and start < end:
                self.problems.append(f"registers.{second}.address = {start}: overlaps registers.{first}")
        return out

    def model(self, value: Any, prefix: str) -> tuple[int, ...]:
        """A register's ``model``: a SunSpec model id or a list of alternatives (None: the map's own)."""
        if value is None:
            return ()
        models = value if isinstance(value, list) else [value]
        if not models or not all(isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= 0xFFFE
                                 for m in models):
            self.bad(prefix + "model", value, "must be a SunSpec model id 1..65534 or a list of them")
            return ()
        return tuple(models)

    def checks(self, raw: Any, registers: Mapping[str, Register]) -> tuple[Check, ...]:
        if not isinstance(raw, list):
            self.bad("device.check", raw, "must be a list of tables ([[device.check]])")
            return ()
        out = []
        for k, spec in enumerate(raw):
            prefix = f"device.check[{k}]."
            if not isinstance(spec, Mapping):
                self.bad(f"device.check[{k}]", spec, "must be a table {register, one_of, hint}")
                continue
            self.unknown(spec, prefix, ("register", "one_of", "hint"))
            register, one_of, hint = spec.get("register"), spec.get("one_of"), spec.get("hint", "")
            if register not in registers:
                self.bad(prefix + "register", register, "must name a register of this map")
            if (not isinstance(one_of, list) or not one_of
                    or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in one_of)):
                self.bad(prefix + "one_of", one_of, "must be a list of numbers")
                continue
            if not isinstance(hint, str):
                self.bad(prefix + "hint", hint, "must be a text")
                hint = ""
            out.append(Check(str(register), tuple(float(v) for v in one_of), hint))
        return tuple(out)

    def reading(self, table: Mapping[str, Any], registers: Mapping[str, Register]) -> dict[str, str]:
        self.unknown(table, "reading.", (*READING_KEYS, *VOLTAGE_KEYS))
        out = {}
        for key in READING_KEYS:
            name = table.get(key)
            if name is None:
                self.problems.append(f"reading.{key}: missing (the name of the register that gives it)")
            elif name not in registers:
                self.bad(f"reading.{key}", name, "must name a register of this map")
            else:
                out[key] = str(name)
        return out

    def grid_voltage(self, table: Mapping[str, Any], registers: Mapping[str, Register]) -> tuple[tuple[str, ...], ...]:
        """The optional voltage keys of ``[reading]``: per phase, the registers (unit V) to try in order."""
        given = [key for key in VOLTAGE_KEYS if key in table]
        if given != list(VOLTAGE_KEYS[:len(given)]):  # L1 alone, L1 and L2, or all three: no phase left out
            self.problems.append(f"reading.{', reading.'.join(given)}: give {VOLTAGE_KEYS[0]} alone (one phase) or "
                                 f"{', '.join(VOLTAGE_KEYS)} (three), in phase order")
        out = []
        for key in given:
            value = table[key]
            names = value if isinstance(value, list) else [value]
            if not names or not all(isinstance(n, str) and n in registers for n in names):
                self.bad(f"reading.{key}", value, "must name a register of this map (or a list of them, tried in "
                         "order)")
                continue
            wrong = [n for n in names if registers[n].unit != "V"]
            if wrong:
                self.bad(f"reading.{key}", value, f'registers.{wrong[0]}.unit is "{registers[wrong[0]].unit}", must '
                         'be "V" (a scale turns tenths of a volt into volts: 0.1)')
                continue
            out.append(tuple(names))
        return tuple(out)

    def modes(self, table: Mapping[str, Any],
              registers: Mapping[str, Register]) -> dict[Mode, tuple[tuple[str, Expression], ...]]:
        self.unknown(table, "modes.", tuple(MODE_KEYS))
        out: dict[Mode, tuple[tuple[str, Expression], ...]] = {}
        for key, mode in MODE_KEYS.items():
            writes = table.get(key)
            if not isinstance(writes, Mapping) or not writes:
                self.problems.append(f"modes.{key}: missing (a table of register = value or expression)")
                continue
            out[mode] = self.writes(writes, f"modes.{key}", registers)
        return out

    def writes(self, writes: Mapping[str, Any], prefix: str, registers: Mapping[str, Register],
               variables: tuple[str, ...] = VARIABLES) -> tuple[tuple[str, Expression], ...]:
        """``register = value or expression`` entries of one table: writable registers, checked expressions, and
        constants within their register's range."""
        entries = []
        for name, value in writes.items():
            where = f"{prefix}.{name}"
            reg = registers.get(name)
            if reg is None:
                self.problems.append(f"{where}: unknown register"
                                     + "".join(f"; did you mean {m}?" for m in
                                               difflib.get_close_matches(name, list(registers), n=1)))
                continue
            if not reg.writable:
                self.problems.append(f'{where}: registers.{name} is read only (access = "r")')
                continue
            try:
                expression = Expression.parse(value, variables)
            except ValueError as err:
                self.bad(where, value, str(err))
                continue
            if not expression.names:  # a constant: its range is known now
                try:
                    reg.check_range(expression({}))
                except CommandError as err:
                    self.bad(where, value, str(err).split(": ", 1)[1])
                    continue
            entries.append((name, expression))
        return tuple(entries)

    def commit(self, raw: Any, registers: Mapping[str, Register],
               modes: Mapping[Any, tuple[tuple[str, Expression], ...]]) -> tuple[str, ...]:
        if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
            self.bad("device.commit", raw, "must be a list of register names")
            return ()
        written = {name for writes in modes.values() for name, _ in writes}
        for name in raw:
            if name not in registers or name not in written:
                self.bad("device.commit", raw, f"{name} must be a register that a mode writes")
        return tuple(raw)
