"""A simulated P1 smart meter: DSMR 5 telegrams as a real meter writes them, streamed by a TCP server like ser2net.

:func:`build_telegram` writes one DSMR 5.0 telegram (the line set, order and number formats of an Iskra AM550 /
the DSMR 5.0.2 P1 Companion Standard example, as in dsmr-parser's test telegram ``TELEGRAM_V5``) with a correct
CRC16. :class:`SimulatedP1Server` streams one every ``interval_s`` to every TCP client on 127.0.0.1, from per-phase
powers that the caller sets or a function of time gives, and lets its energy counters run up as a real meter's
do. It needs nothing but the standard library: the dry run, ``make run`` and the tests use it; the runtime reads
it with :class:`~dwars.runtime.meter.dsmr.DsmrTcpMeter` exactly as it reads a P1 cable behind ser2net::

    async with simulated_p1_server(lambda now: (load_kw(now) - pv_kw(now),), interval_s=1.0) as p1:
        meter = DsmrTcpMeter("127.0.0.1", p1.port)
        reading = await meter.read()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)

METER_TZ = ZoneInfo("Europe/Amsterdam")
HEADER = "/ISk5\\2MT382-1000"  # the header of dsmr-parser's DSMR 5 test telegram (an Iskra meter)
EQUIPMENT_ID = "4B384547303034303436333935353037"  # hex of the equipment number, as in that telegram
GAS_ID = "3232323241424344313233343536373839"


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(text: str) -> int:
    """CRC16 of a telegram from ``/`` to ``!`` inclusive: polynomial x^16+x^15+x^2+1 (0xA001 reflected), start 0,
    over the bytes (DSMR 5.0.2 section 6.12)."""
    crc = 0
    for byte in text.encode("latin-1"):
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def dsmr_timestamp(when: datetime) -> str:
    """``YYMMDDhhmmssX``: the meter's local time with S (summer time) or W (winter time)."""
    if when.tzinfo is None:
        raise ValueError(f"when = {when}: must be timezone-aware")
    local = when.astimezone(METER_TZ)
    return local.strftime("%y%m%d%H%M%S") + ("S" if local.dst() else "W")


def _fixed(value: float, integer_digits: int, decimals: int, what: str) -> str:
    """A DSMR fixed-width number, e.g. F5(3) for kW: 2 integer digits, 3 decimals -> ``01.193``."""
    width = integer_digits + (decimals + 1 if decimals else 0)
    if value == 0:
        value = 0.0  # no "-0.000" from a rounded tiny negative
    text = f"{value:0{width}.{decimals}f}" if math.isfinite(value) else "nan"
    if not math.isfinite(value) or value < 0 or len(text) > width:
        raise ValueError(f"{what} = {value}: outside what the meter can show (0 .. {10 ** integer_digits - 1})")
    return text


@dataclass(frozen=True)
class Totals:
    """The meter's counters: kWh per tariff (1 = low/night, 2 = normal/day) and the gas meter's m3."""

    import_t1_kwh: float = 1234.567
    import_t2_kwh: float = 2345.678
    export_t1_kwh: float = 345.678
    export_t2_kwh: float = 987.654
    gas_m3: float | None = 1456.789


def build_telegram(when: datetime, phase_net_kw: Sequence[float], totals: Totals = Totals(),
                   phase_voltage_v: Sequence[float] | None = None, tariff: int = 2) -> str:
    """One DSMR 5.0 telegram, CRLF line ends and CRC16 included.

    Parameters
    ----------
    when : the meter's time (tz-aware; written as local time with the S/W flag, to the second).
    phase_net_kw : net power per phase, kW, + import / - export: 1 value (single-phase) or 3.
    totals : the counters (kWh, m3; no gas meter when ``gas_m3`` is None).
    phase_voltage_v : per phase, V (default 230.0 each).
    tariff : the active tariff (1 or 2).

    The meter nets its phases: 1.7.0 / 2.7.0 carry the positive / negative part of their sum. Currents are
    |power| / voltage, rounded to whole amperes as DSMR 5 meters do. Powers have W resolution (F5(3) kW),
    counters Wh (F9(3) kWh), gas dm3 (F8(3) m3).
    """
    phases = [float(p) for p in phase_net_kw]
    if len(phases) not in (1, 3):
        raise ValueError(f"phase_net_kw has {len(phases)} values: a meter has 1 or 3 phases")
    volts = [230.0] * len(phases) if phase_voltage_v is None else [float(v) for v in phase_voltage_v]
    if len(volts) != len(phases):
        raise ValueError(f"phase_voltage_v has {len(volts)} values for {len(phases)} phases")
    # Round per phase first, as the meter shows them, so the shown total equals the sum of the shown phases.
    shown = [round(p, 3) for p in phases]
    net = round(sum(shown), 3)
    kw = [_fixed(max(net, 0.0), 2, 3, "import_kw"), _fixed(max(-net, 0.0), 2, 3, "export_kw")]
    lines = [
        HEADER, "",
        "1-3:0.2.8(50)",
        f"0-0:1.0.0({dsmr_timestamp(when)})",
        f"0-0:96.1.1({EQUIPMENT_ID})",
        f"1-0:1.8.1({_fixed(totals.import_t1_kwh, 6, 3, 'import_t1_kwh')}*kWh)",
        f"1-0:1.8.2({_fixed(totals.import_t2_kwh, 6, 3, 'import_t2_kwh')}*kWh)",
        f"1-0:2.8.1({_fixed(totals.export_t1_kwh, 6, 3, 'export_t1_kwh')}*kWh)",
        f"1-0:2.8.2({_fixed(totals.export_t2_kwh, 6, 3, 'export_t2_kwh')}*kWh)",
        f"0-0:96.14.0({tariff:04d})",
        f"1-0:1.7.0({kw[0]}*kW)",
        f"1-0:2.7.0({kw[1]}*kW)",
        "0-0:96.7.21(00004)",
        "0-0:96.7.9(00002)",
        "1-0:99.97.0(0)(0-0:96.7.19)",
    ]
    names = ("L1", "L2", "L3")[:len(phases)]
    sags = {"L1": "32", "L2": "52", "L3": "72"}
    lines += [f"1-0:{sags[n]}.32.0(00000)" for n in names] + [f"1-0:{sags[n]}.36.0(00000)" for n in names]
    lines.append("0-0:96.13.0()")
    lines += [f"1-0:{c}.7.0({_fixed(v, 3, 1, 'voltage_v')}*V)" for c, v in zip(("32", "52", "72"), volts, strict=False)]
    lines += [f"1-0:{c}.7.0({_fixed(round(abs(p) * 1000.0 / v), 3, 0, 'current_a')}*A)"
              for c, p, v in zip(("31", "51", "71"), shown, volts, strict=False)]
    lines += [f"1-0:{c}.7.0({_fixed(max(p, 0.0), 2, 3, 'phase import_kw')}*kW)"
              for c, p in zip(("21", "41", "61"), shown, strict=False)]
    lines += [f"1-0:{c}.7.0({_fixed(max(-p, 0.0), 2, 3, 'phase export_kw')}*kW)"
              for c, p in zip(("22", "42", "62"), shown, strict=False)]
    if totals.gas_m3 is not None:
        # The gas meter reports every 5 minutes; its timestamp is the last whole 5 minutes.
        gas_time = when.astimezone(UTC).replace(minute=when.astimezone(UTC).minute // 5 * 5, second=0, microsecond=0)
        lines += ["0-1:24.1.0(003)", f"0-1:96.1.0({GAS_ID})",
                  f"0-1:24.2.1({dsmr_timestamp(gas_time)})({_fixed(totals.gas_m3, 5, 3, 'gas_m3')}*m3)"]
    body = "\r\n".join(lines) + "\r\n!"
    return f"{body}{crc16(body):04X}\r\n"


PowerSource = Callable[[datetime], Sequence[float]]
VoltageSource = Callable[[datetime, Sequence[float]], Sequence[float]]


class SimulatedP1Server:
    """A TCP server on 127.0.0.1 that streams DSMR 5 telegrams to every client, as ser2net does for a P1 cable.

    Parameters
    ----------
    phase_net_kw : per-phase net power, kW (+ import / - export), or a function of the time (UTC) giving it.
    interval_s : seconds between telegrams (a DSMR 5 meter: 1).
    totals : the counters at the start; they run up with the powers.
    port : 0 picks a free port (see :attr:`port` after :meth:`start`).
    chunk_size : write each telegram in pieces of this many bytes, ``chunk_delay_s`` apart (a slow serial line;
        the tests use it to split telegrams across TCP reads). None writes it whole.
    clock : the meter's clock (default: the system clock, UTC).
    phase_voltage_v : per-phase voltage, V, or a function of the time (UTC) and the phases' net powers (kW) giving
        it (a street whose voltage the home's own power moves); None: 230 V on each phase.
    """

    def __init__(self, phase_net_kw: Sequence[float] | PowerSource = (0.5,), interval_s: float = 1.0,
                 totals: Totals = Totals(), port: int = 0, chunk_size: int | None = None,
                 chunk_delay_s: float = 0.0, clock: Callable[[], datetime] | None = None,
                 phase_voltage_v: Sequence[float] | VoltageSource | None = None) -> None:
        self.power: Sequence[float] | PowerSource = phase_net_kw
        self.voltage = phase_voltage_v
        self.interval_s = float(interval_s)
        self.totals = totals
        self.chunk_size = chunk_size
        self.chunk_delay_s = float(chunk_delay_s)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.telegrams_sent = 0
        self._port = port
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._last: datetime | None = None

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        if self._server is None:
            raise RuntimeError("the simulated P1 meter is not started")
        return int(self._server.sockets[0].getsockname()[1])

    def set_power(self, phase_net_kw: Sequence[float] | PowerSource) -> None:
        """Change the powers the next telegrams show."""
        self.power = phase_net_kw

    def next_telegram(self) -> str:
        """The telegram for now, with the counters advanced by the energy since the previous one."""
        now = self.clock()
        phases = list(self.power(now) if callable(self.power) else self.power)
        if self._last is not None:
            hours = max((now - self._last).total_seconds(), 0.0) / 3600.0
            net = sum(round(p, 3) for p in phases)
            t = self.totals
            self.totals = Totals(t.import_t1_kwh, t.import_t2_kwh + max(net, 0.0) * hours, t.export_t1_kwh,
                                 t.export_t2_kwh + max(-net, 0.0) * hours, t.gas_m3)
        self._last = now
        volts = self.voltage(now, phases) if callable(self.voltage) else self.voltage
        return build_telegram(now, phases, self.totals, volts)

    async def start(self) -> SimulatedP1Server:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", self._port)
        self._ticker = asyncio.create_task(self._tick())
        return self

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for writer in list(self._clients):
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> SimulatedP1Server:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            await reader.read()  # a P1 port only talks; this returns when the client hangs up
        except ConnectionError:
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    async def _tick(self) -> None:
        while True:
            if self._clients:
                data = self.next_telegram().encode("latin-1")
                self.telegrams_sent += 1
                await asyncio.gather(*(self._send(w, data) for w in list(self._clients)))
            await asyncio.sleep(self.interval_s)

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        step = self.chunk_size or len(data)
        try:
            for i in range(0, len(data), step):
                writer.write(data[i:i + step])
                await writer.drain()
                if self.chunk_delay_s and i + step < len(data):
                    await asyncio.sleep(self.chunk_delay_s)
        except (ConnectionError, RuntimeError):  # the client went away mid-telegram: a real meter does not care
            self._clients.discard(writer)
            writer.close()


@contextlib.asynccontextmanager
async def simulated_p1_server(phase_net_kw: Sequence[float] | PowerSource = (0.5,), interval_s: float = 1.0,
                              **kwargs: object) -> AsyncIterator[SimulatedP1Server]:
    """``async with simulated_p1_server((1.2, 0.3, -2.0)) as meter:`` a started :class:`SimulatedP1Server`
    (``meter.port``), closed on exit. Keyword arguments go to the class."""
    server = SimulatedP1Server(phase_net_kw, interval_s, **kwargs)  # type: ignore[arg-type]
    await server.start()
    try:
        yield server
    finally:
        await server.close()
