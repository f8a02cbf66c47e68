"""One reading of the grid connection from the P1 smart meter, and the parser of the meter's telegrams.

A DSMR smart meter (Dutch DSMR 4.x/5.x, the Belgian e-MUCS variant of Fluvius) writes a telegram on its P1 port
every second (DSMR 5) or every ten seconds (DSMR 4): text lines from ``/`` (the header) to ``!`` and a CRC16 of
everything in between, one OBIS-coded value per line (``1-0:1.7.0(00.244*kW)``: power imported now)::

    /ISk5\\2MT382-1000
    <empty line>
    1-3:0.2.8(50)                       DSMR version
    0-0:1.0.0(170102192002W)            meter time, local, S = summer time, W = winter time
    1-0:1.8.1(000004.426*kWh)           energy imported, tariff 1 (1.8.2: tariff 2; 2.8.x: exported)
    1-0:1.7.0(00.244*kW)                power imported now (2.7.0: exported now)
    1-0:21.7.0(00.070*kW)               power imported now on L1 (41.7.0 L2, 61.7.0 L3; 22/42/62: exported)
    1-0:31.7.0(001*A)                   current on L1 (51.7.0 L2, 71.7.0 L3)
    1-0:32.7.0(230.1*V)                 voltage on L1 (52.7.0 L2, 72.7.0 L3)
    0-1:24.1.0(003)                     M-Bus device on channel 1 is a gas meter (007: water)
    0-1:24.2.1(170102161005W)(00000.107*m3)   its last reading
    !6EEE

(DSMR 5.0.2 P1 Companion Standard, Netbeheer Nederland; e-MUCS P1 1.7.1, Fluvius.) :func:`parse_telegram` checks
the CRC, reads the lines with ``dsmr-parser`` and turns them into a :class:`MeterReading`. The meter time is local
time with a flag, so the autumn hour that occurs twice is unambiguous: ``S`` is UTC+2, ``W`` is UTC+1.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Protocol

from dwars.errors import DwarsError

# The DSMR S/W flag gives the meter's offset from UTC; the Netherlands and Belgium both keep CET/CEST.
DSMR_OFFSETS = {"S": timezone(timedelta(hours=2)), "W": timezone(timedelta(hours=1))}

_TIMESTAMP_LINE = re.compile(r"^0-0:1\.0\.0\((\d{12})([SW])\)", re.MULTILINE)
_END = re.compile(r"!([0-9A-Fa-f]{4})?")
_GAS_DEVICE_TYPE = 3  # M-Bus device type of a gas meter (DSMR 5.0.2 table 7; 7 is a water meter)


class MeterError(DwarsError):
    """The smart meter cannot be read, or what it sent is damaged or incomplete (the message says which)."""


@dataclass(frozen=True)
class MeterReading:
    """What the grid connection does at one moment, as the P1 smart meter measured it.

    Attributes
    ----------
    time : when the meter measured it, tz-aware UTC (the meter's own clock for DSMR; the moment of reading for
        the HomeWizard API, which does not pass the meter's time on).
    import_kw, export_kw : power drawn from / fed into the grid now, kW, both >= 0 (a meter nets its phases).
    import_kwh_total, export_kwh_total : the meter's counters, kWh, all tariffs summed.
    phase_power_kw : per phase (1 or 3), net kW: import - export on that phase; None when not reported.
    phase_current_a : per phase, A, magnitude (DSMR 5 meters round to whole amperes); None when not reported.
    phase_voltage_v : per phase, V; None when not reported (most DSMR 4 meters).
    gas_m3_total : the gas meter on the M-Bus, m3; None without one.
    source : where the reading came from (``dsmr``, ``dsmr-tcp 192.168.1.20:2001``, ``homewizard 192.168.1.30``).
    """

    time: datetime
    import_kw: float
    export_kw: float
    import_kwh_total: float
    export_kwh_total: float
    phase_power_kw: tuple[float, ...] | None = None
    phase_current_a: tuple[float, ...] | None = None
    phase_voltage_v: tuple[float, ...] | None = None
    gas_m3_total: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.time.tzinfo is None or self.time.utcoffset() != timedelta(0):
            raise ValueError(f"MeterReading.time = {self.time}: must be timezone-aware UTC")

    @property
    def net_kw(self) -> float:
        """Net grid power, kW: import - export (positive: the home draws from the grid)."""
        return self.import_kw - self.export_kw


class Meter(Protocol):
    """Anything the runtime can read the grid connection from."""

    async def read(self) -> MeterReading:
        """The latest reading (:class:`MeterError` when the meter cannot be read)."""
        ...


def dsmr_time_to_utc(stamp: str) -> datetime:
    """UTC of a DSMR timestamp ``YYMMDDhhmmssX`` (local time; X = ``S`` summer, ``W`` winter).

    >>> dsmr_time_to_utc("241027023000S").isoformat(), dsmr_time_to_utc("241027023000W").isoformat()
    ('2024-10-27T00:30:00+00:00', '2024-10-27T01:30:00+00:00')
    """
    match = re.fullmatch(r"(\d{12})([SW])", stamp)
    if match is None:
        raise MeterError(f"meter time {stamp!r}: expected YYMMDDhhmmss followed by S (summer) or W (winter)")
    digits = match.group(1)
    try:  # YY is 20YY: strptime's %y would put 69..99 in the 1900s
        local = datetime(2000 + int(digits[0:2]), *(int(digits[k:k + 2]) for k in range(2, 12, 2)))
    except ValueError:
        raise MeterError(f"meter time {stamp!r}: not a valid date and time") from None
    return local.replace(tzinfo=DSMR_OFFSETS[match.group(2)]).astimezone(UTC)


@functools.cache
def _parsers() -> dict[str, Any]:
    # Imported on first use: dsmr-parser loads cryptography (for encrypted meters), which the HomeWizard meter
    # and the CLI's start-up do not need.
    from dsmr_parser import telegram_specifications as specs
    from dsmr_parser.parsers import TelegramParser

    return {"dsmr": TelegramParser(specs.V5, apply_checksum_validation=False),
            "e-mucs": TelegramParser(specs.BELGIUM_FLUVIUS, apply_checksum_validation=False),
            "crc16": TelegramParser.crc16}


def _frame(text: str) -> tuple[str, str]:
    """(telegram from ``/`` to ``!`` inclusive, its CRC) or :class:`MeterError` saying what is missing."""
    start = text.find("/")
    if start < 0:
        raise MeterError(f"not a P1 telegram: no '/' header line (it begins {text[:30]!r})")
    end = _END.search(text, start)
    if end is None:
        raise MeterError(f"incomplete telegram: it stops before the closing '!CRC' line (last line "
                         f"{text.rstrip().splitlines()[-1][:40]!r}); the connection dropped mid-telegram")
    if end.group(1) is None:
        raise MeterError("the telegram has no CRC after '!': a DSMR 2 or 3 meter, which dwars does not support "
                         "(it needs DSMR 4 or 5, or e-MUCS)")
    return text[start:end.start() + 1], end.group(1).upper()


def _number(telegram: Any, name: str, obis: str, units: dict[str, float]) -> float | None:
    """A value in dwars' unit: ``units`` maps the units a meter may use to the factor into dwars' unit."""
    obj = getattr(telegram, name, None)
    if obj is None or obj.value is None:
        return None
    unit = obj.unit or ""
    if unit not in units:
        raise MeterError(f"OBIS {obis}: unit {unit!r}, expected {' or '.join(units)}")
    return float(Decimal(obj.value)) * units[unit]


_KW = {"kW": 1.0, "W": 0.001}
_KWH = {"kWh": 1.0, "Wh": 0.001}


def _required(telegram: Any, name: str, obis: str, what: str, units: dict[str, float]) -> float:
    value = _number(telegram, name, obis, units)
    if value is None:
        raise MeterError(f"the telegram lacks OBIS field {obis} ({what})")
    return value


def _counter(telegram: Any, direction: str, code: str) -> float:
    """Energy counter, tariffs 1 + 2 summed (or the total register 1.8.0 / 2.8.0 of meters that only send that)."""
    names = {"import": ("ELECTRICITY_USED_TARIFF_1", "ELECTRICITY_USED_TARIFF_2", "ELECTRICITY_IMPORTED_TOTAL"),
             "export": ("ELECTRICITY_DELIVERED_TARIFF_1", "ELECTRICITY_DELIVERED_TARIFF_2",
                        "ELECTRICITY_EXPORTED_TOTAL")}[direction]
    t1 = _number(telegram, names[0], f"1-0:{code}.8.1", _KWH)
    t2 = _number(telegram, names[1], f"1-0:{code}.8.2", _KWH)
    if t1 is not None and t2 is not None:
        return t1 + t2
    total = _number(telegram, names[2], f"1-0:{code}.8.0", _KWH)
    if total is not None:
        return total
    raise MeterError(f"the telegram lacks OBIS fields 1-0:{code}.8.1 and 1-0:{code}.8.2 (energy {direction}ed, "
                     "tariff 1 and 2)")


def _phases(values: list[float | None]) -> tuple[float, ...] | None:
    """(L1,) for a single-phase meter, (L1, L2, L3) for a three-phase one; None when absent or incomplete."""
    if values[0] is not None and values[1] is None and values[2] is None:
        return (values[0],)
    if all(v is not None for v in values):
        return tuple(v for v in values if v is not None)
    return None


def _phase_power(telegram: Any) -> tuple[float, ...] | None:
    net: list[float | None] = []
    for n, code in enumerate((21, 41, 61), start=1):
        plus = _number(telegram, f"INSTANTANEOUS_ACTIVE_POWER_L{n}_POSITIVE", f"1-0:{code}.7.0", _KW)
        minus = _number(telegram, f"INSTANTANEOUS_ACTIVE_POWER_L{n}_NEGATIVE", f"1-0:{code + 1}.7.0", _KW)
        net.append(None if plus is None and minus is None else (plus or 0.0) - (minus or 0.0))
    return _phases(net)


def _gas_m3(telegram: Any) -> float | None:
    for device in getattr(telegram, "MBUS_DEVICES", []):
        kind = getattr(device, "MBUS_DEVICE_TYPE", None)
        reading = getattr(device, "MBUS_METER_READING", None)
        if kind is not None and kind.value == _GAS_DEVICE_TYPE and reading is not None and reading.value is not None:
            return float(reading.value)
    return None


def parse_telegram(text: str | bytes, source: str = "dsmr") -> MeterReading:
    """A :class:`MeterReading` from one P1 telegram (DSMR 4.x, 5.x or e-MUCS), after checking its CRC.

    Parameters
    ----------
    text : the telegram from ``/`` to ``!CRC``, with its CRLF line ends as the meter sent them (bytes are read
        as Latin-1, byte for byte, so the CRC is computed over exactly what arrived).
    source : put into :attr:`MeterReading.source`.

    Raises
    ------
    MeterError
        for a damaged telegram (bad CRC: the message gives both values), an incomplete one, one without CRC
        (DSMR 2/3), or one that lacks a required OBIS field (the message names it).
    """
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    body, crc = _frame(text)
    parsers = _parsers()
    computed = f"{parsers['crc16'](body):04X}"
    if computed != crc:
        raise MeterError(f"bad CRC: the telegram says {crc}, its contents give {computed}; the data was damaged "
                         "on the way (a loose P1 cable or a noisy serial line)")
    dialect = "e-mucs" if "0-0:96.1.4(" in body else "dsmr"
    try:
        telegram = parsers[dialect].parse(body + crc + "\r\n")
    except Exception as err:  # dsmr-parser raises plain ValueErrors on odd lines; the reading is unusable then
        raise MeterError(f"dsmr-parser could not read the {dialect} telegram ({type(err).__name__}: {err})") from None
    stamp = _TIMESTAMP_LINE.search(body)
    if stamp is None:
        raise MeterError("the telegram lacks OBIS field 0-0:1.0.0 (the meter's time)")
    currents = _phases([_number(telegram, f"INSTANTANEOUS_CURRENT_L{n}", f"1-0:{c}.7.0", {"A": 1.0})
                        for n, c in ((1, 31), (2, 51), (3, 71))])
    voltages = _phases([_number(telegram, f"INSTANTANEOUS_VOLTAGE_L{n}", f"1-0:{c}.7.0", {"V": 1.0})
                        for n, c in ((1, 32), (2, 52), (3, 72))])
    return MeterReading(
        time=dsmr_time_to_utc(stamp.group(1) + stamp.group(2)),
        import_kw=_required(telegram, "CURRENT_ELECTRICITY_USAGE", "1-0:1.7.0", "power imported now", _KW),
        export_kw=_required(telegram, "CURRENT_ELECTRICITY_DELIVERY", "1-0:2.7.0", "power exported now", _KW),
        import_kwh_total=_counter(telegram, "import", "1"),
        export_kwh_total=_counter(telegram, "export", "2"),
        phase_power_kw=_phase_power(telegram),
        phase_current_a=None if currents is None else tuple(abs(a) for a in currents),
        phase_voltage_v=voltages,
        gas_m3_total=_gas_m3(telegram),
        source=source,
    )
